package identity

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Identities that Bootstrap creates besides the services.
const (
	DemoAgentID = "agent-demo"
	OperatorID  = "operator"
)

// AuthorityValidity is how long a delegation of the authority key lasts.
// Publish and [Admin.RenewAuthority] renew it when less than
// DefaultRenewBefore remains.
const AuthorityValidity = 90 * 24 * time.Hour

// Setup is the local state of a development or single-host deployment: the
// root and authority keys and the credentials of the built-in identities,
// all kept as 0600 files under Dir.
type Setup struct {
	Dir       string
	Root      Signer
	Authority Signer
	// Creds maps each built-in identity id to its credentials.
	Creds map[string]*Credentials
	// Roles maps each built-in identity id to its roles.
	Roles map[string][]string
}

// builtins returns the built-in identities with their kinds and roles.
func builtins() map[string]struct {
	kind  Kind
	roles []string
} {
	out := map[string]struct {
		kind  Kind
		roles []string
	}{
		DemoAgentID: {KindAgent, []string{RoleAgent}},
		OperatorID:  {KindOperator, []string{RoleOperator}},
	}
	for _, svc := range Services {
		out[svc] = struct {
			kind  Kind
			roles []string
		}{KindService, []string{ServiceRole(svc)}}
	}

	return out
}

// Bootstrap loads the deployment state under dir, creating on first start
// the root key (dir/root.key), the authority key (dir/authority.key) and
// credentials for the six services, the demo agent and the operator
// (dir/creds/ID.creds). It touches no network; [Setup.Publish] writes the
// registry.
func Bootstrap(dir string) (*Setup, error) {
	s := &Setup{Dir: dir, Creds: map[string]*Credentials{}, Roles: map[string][]string{}}
	var err error
	if s.Root, err = loadOrCreateSigner(filepath.Join(dir, "root.key"), SignerRoot); err != nil {
		return nil, err
	}
	authPath := filepath.Join(dir, "authority.key")
	if s.Authority, err = loadOrCreateSigner(authPath, SignerAuthority); err != nil {
		return nil, err
	}
	for id, b := range builtins() {
		c, err := loadOrCreateCreds(s.CredsPath(id), id, b.kind, s.Root.Public())
		if err != nil {
			return nil, err
		}
		s.Creds[id] = c
		s.Roles[id] = b.roles
	}

	return s, nil
}

// CredsPath returns the credentials file path of identity id.
func (s *Setup) CredsPath(id string) string {
	return filepath.Join(s.Dir, "creds", id+".creds")
}

func loadOrCreateCreds(path, id string, kind Kind, root ed25519.PublicKey,
) (*Credentials, error) {
	c, err := LoadCreds(path)
	if err == nil {
		if !c.RootKey.Equal(root) {
			return nil, fmt.Errorf("credentials %s pin another root key: remove them to reissue",
				path)
		}

		return c, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if c, err = NewCredentials(id, kind, root); err != nil {
		return nil, err
	}

	return c, WriteCreds(path, c)
}

// signerFile is the JSON layout of root.key and authority.key.
type signerFile struct {
	Name string `json:"name"`
	Seed []byte `json:"seed"`
}

func loadOrCreateSigner(path, name string) (Signer, error) {
	s, err := LoadSigner(path, name)
	if !errors.Is(err, os.ErrNotExist) {
		return s, err
	}
	if s, err = NewSigner(name); err != nil {
		return Signer{}, err
	}
	b, _ := json.Marshal(signerFile{Name: name, Seed: s.Key.Seed()})

	return s, writeSecretFile(path, b)
}

// LoadSigner reads the signer called name (SignerRoot or SignerAuthority)
// from the key file at path, as [Bootstrap] and `nodex init` write it. It
// never creates a key: a missing file is an error wrapping os.ErrNotExist.
// Like [LoadCreds] it rejects a file that its group or others may read.
// A service that signs with the authority key loads it this way, so it
// holds no root key.
func LoadSigner(path, name string) (Signer, error) {
	data, err := readSecretFile(path)
	if err != nil {
		return Signer{}, err
	}
	var f signerFile
	if err := json.Unmarshal(data, &f); err != nil {
		return Signer{}, fmt.Errorf("decoding key file %s: %w", path, err)
	}
	if f.Name != name || len(f.Seed) != ed25519.SeedSize {
		return Signer{}, fmt.Errorf("key file %s does not hold a %s key", path, name)
	}

	return Signer{Name: name, Key: ed25519.NewKeyFromSeed(f.Seed)}, nil
}

// Publish writes the setup into the registry bucket kv: the authority
// delegation (renewed when a third of its validity remains), every
// built-in identity that is missing, and a first heartbeat. An identity
// already registered with other keys is an error, since its credentials
// file and the registry disagree.
func (s *Setup) Publish(ctx context.Context, kv jetstream.KeyValue) error {
	admin := NewAdmin(kv, s.Root)
	if err := s.publishAuthority(ctx, admin); err != nil {
		return err
	}
	ids := make([]string, 0, len(s.Creds))
	for id := range s.Creds {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if err := s.publishIdentity(ctx, admin, id); err != nil {
			return err
		}
	}

	return NewAuthorityWriter(kv, s.Authority).Heartbeat(ctx)
}

func (s *Setup) publishAuthority(ctx context.Context, admin *Admin) error {
	_, _, err := admin.RenewAuthority(ctx, s.Authority.Public(), AuthorityValidity,
		DefaultRenewBefore)

	return err
}

func (s *Setup) publishIdentity(ctx context.Context, admin *Admin, id string) error {
	c := s.Creds[id]
	cur, err := admin.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		ident, err := c.Public(s.Roles[id], admin.now())
		if err != nil {
			return err
		}

		return admin.Register(ctx, ident)
	}
	if err != nil {
		return err
	}
	kp, err := c.NATSKeyPair()
	if err != nil {
		return err
	}
	pub, _ := kp.PublicKey()
	if cur.NATSKey != pub {
		return fmt.Errorf("identity %q is registered with other keys than %s: "+
			"restore that file or revoke the identity", id, s.CredsPath(id))
	}

	return nil
}
