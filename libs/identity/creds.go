package identity

import (
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nkeys"
)

// CredsFormat is the value of the "format" field of a credentials file.
const CredsFormat = "nodex-creds/v1"

// ErrCredsMode reports a credentials file that group or others can read.
var ErrCredsMode = errors.New("identity: credentials file readable by group or others")

// KEM returns the HPKE KEM of every NodeX encryption key: MLKEM768-X25519.
func KEM() hpke.KEM { return hpke.MLKEM768X25519() }

// SigningKey is one version of an identity's private Ed25519 signing key.
type SigningKey struct {
	Version int
	Key     ed25519.PrivateKey
}

// HPKEKey is one version of an identity's private HPKE key.
type HPKEKey struct {
	Version int
	Key     hpke.PrivateKey
}

// Credentials are the private keys of one identity, as its credentials file
// stores them. A Credentials value must not be logged: LogValue redacts it.
type Credentials struct {
	ID   string
	Kind Kind
	// RootKey is the operator root public key this party trusts. It is
	// pinned here so that every party verifies the registry against it.
	RootKey ed25519.PublicKey
	// NATSSeed is the nkeys user seed ("SU...") used only to sign the NATS
	// server's connection nonce.
	NATSSeed []byte
	// SigningKeys and HPKEKeys hold every version still in use, oldest
	// first; the last one is current.
	SigningKeys []SigningKey
	HPKEKeys    []HPKEKey
}

// LogValue implements slog.LogValuer so that keys never reach a log.
func (c *Credentials) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", c.ID), slog.String("kind", string(c.Kind)))
}

// NewCredentials generates fresh keys (version 1 of each) for identity id.
func NewCredentials(id string, kind Kind, root ed25519.PublicKey) (*Credentials, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	ukp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("generating nkey for %q: %w", id, err)
	}
	seed, err := ukp.Seed()
	if err != nil {
		return nil, fmt.Errorf("reading nkey seed for %q: %w", id, err)
	}
	c := &Credentials{ID: id, Kind: kind, RootKey: root, NATSSeed: seed}
	if err := c.addKeys(1); err != nil {
		return nil, err
	}

	return c, nil
}

// addKeys appends a new signing key and a new HPKE key with version v.
func (c *Credentials) addKeys(v int) error {
	_, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("generating signing key for %q: %w", c.ID, err)
	}
	hk, err := KEM().GenerateKey()
	if err != nil {
		return fmt.Errorf("generating HPKE key for %q: %w", c.ID, err)
	}
	c.SigningKeys = append(c.SigningKeys, SigningKey{Version: v, Key: sk})
	c.HPKEKeys = append(c.HPKEKeys, HPKEKey{Version: v, Key: hk})

	return nil
}

// CurrentSigningKey returns the newest signing key, the one to sign with.
func (c *Credentials) CurrentSigningKey() SigningKey {
	return c.SigningKeys[len(c.SigningKeys)-1]
}

// CurrentHPKEKey returns the newest HPKE key.
func (c *Credentials) CurrentHPKEKey() HPKEKey { return c.HPKEKeys[len(c.HPKEKeys)-1] }

// HPKEKeyVersion returns HPKE private key version v, or ErrUnknownKey.
func (c *Credentials) HPKEKeyVersion(v int) (HPKEKey, error) {
	for _, k := range c.HPKEKeys {
		if k.Version == v {
			return k, nil
		}
	}

	return HPKEKey{}, fmt.Errorf("%w: HPKE version %d of %q", ErrUnknownKey, v, c.ID)
}

// NATSKeyPair returns the nkey that signs the NATS connection nonce.
func (c *Credentials) NATSKeyPair() (nkeys.KeyPair, error) {
	kp, err := nkeys.FromSeed(c.NATSSeed)
	if err != nil {
		return nil, fmt.Errorf("decoding nkey seed of %q: %w", c.ID, err)
	}

	return kp, nil
}

// Public returns the registry record for these keys with the given roles,
// active and created at now.
func (c *Credentials) Public(roles []string, now time.Time) (*Identity, error) {
	kp, err := c.NATSKeyPair()
	if err != nil {
		return nil, err
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("reading nkey public key of %q: %w", c.ID, err)
	}
	id := &Identity{
		ID: c.ID, Kind: c.Kind, Roles: roles, Status: StatusActive,
		Created: now.UTC(), NATSKey: pub,
	}
	for _, k := range c.SigningKeys {
		id.SigningKeys = append(id.SigningKeys, PublicKey{
			Version: k.Version, Key: k.Key.Public().(ed25519.PublicKey),
		})
	}
	for _, k := range c.HPKEKeys {
		id.HPKEKeys = append(id.HPKEKeys, PublicKey{
			Version: k.Version, Key: k.Key.PublicKey().Bytes(),
		})
	}

	return id, nil
}

// credsFile is the JSON layout of a credentials file.
type credsFile struct {
	Format      string        `json:"format"`
	ID          string        `json:"id"`
	Kind        Kind          `json:"kind"`
	RootKey     []byte        `json:"root_key"`
	NATSSeed    string        `json:"nats_seed"`
	SigningKeys []versionedKV `json:"signing_keys"`
	HPKEKeys    []versionedKV `json:"hpke_keys"`
}

// versionedKV is one private key in a credentials file: an Ed25519 seed or a
// serialized HPKE private key.
type versionedKV struct {
	Version int    `json:"version"`
	Private []byte `json:"private"`
}

// MarshalJSON encodes the credentials in the credentials file format.
func (c *Credentials) MarshalJSON() ([]byte, error) {
	f := credsFile{
		Format: CredsFormat, ID: c.ID, Kind: c.Kind, RootKey: c.RootKey,
		NATSSeed: string(c.NATSSeed),
	}
	for _, k := range c.SigningKeys {
		f.SigningKeys = append(f.SigningKeys, versionedKV{k.Version, k.Key.Seed()})
	}
	for _, k := range c.HPKEKeys {
		b, err := k.Key.Bytes()
		if err != nil {
			return nil, fmt.Errorf("serializing HPKE key %d of %q: %w", k.Version, c.ID, err)
		}
		f.HPKEKeys = append(f.HPKEKeys, versionedKV{k.Version, b})
	}

	return json.MarshalIndent(f, "", "  ")
}

// UnmarshalJSON decodes the credentials file format.
func (c *Credentials) UnmarshalJSON(data []byte) error {
	var f credsFile
	if err := json.Unmarshal(data, &f); err != nil {
		return err
	}
	if f.Format != CredsFormat {
		return fmt.Errorf("unsupported credentials format %q, want %q", f.Format, CredsFormat)
	}
	if err := ValidateID(f.ID); err != nil {
		return err
	}
	if len(f.RootKey) != ed25519.PublicKeySize || len(f.SigningKeys) == 0 ||
		len(f.HPKEKeys) == 0 {
		return fmt.Errorf("credentials of %q: missing root key, signing key or HPKE key", f.ID)
	}
	*c = Credentials{ID: f.ID, Kind: f.Kind, RootKey: f.RootKey, NATSSeed: []byte(f.NATSSeed)}
	for _, k := range f.SigningKeys {
		if len(k.Private) != ed25519.SeedSize {
			return fmt.Errorf("credentials of %q: signing key %d has wrong size", f.ID, k.Version)
		}
		c.SigningKeys = append(c.SigningKeys,
			SigningKey{k.Version, ed25519.NewKeyFromSeed(k.Private)})
	}
	for _, k := range f.HPKEKeys {
		hk, err := KEM().NewPrivateKey(k.Private)
		if err != nil {
			return fmt.Errorf("credentials of %q: decoding HPKE key %d: %w", f.ID, k.Version, err)
		}
		c.HPKEKeys = append(c.HPKEKeys, HPKEKey{k.Version, hk})
	}
	if _, err := c.NATSKeyPair(); err != nil {
		return err
	}

	return nil
}

// WriteCreds writes c to path with mode 0600, replacing any existing file
// atomically (write to a temporary file in the same directory, fsync,
// rename), so a crash never leaves half a key behind.
func WriteCreds(path string, c *Credentials) error {
	data, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encoding credentials of %q: %w", c.ID, err)
	}

	return writeSecretFile(path, data)
}

// LoadCreds reads the credentials file at path. A file that group or others
// can read is rejected with ErrCredsMode, and the message contains the fix,
// "chmod 600 PATH".
func LoadCreds(path string) (*Credentials, error) {
	data, err := readSecretFile(path)
	if err != nil {
		return nil, err
	}
	var c Credentials
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("decoding credentials file %s: %w", path, err)
	}

	return &c, nil
}

// writeSecretFile writes data to path with mode 0600 through a temporary
// file and a rename.
func writeSecretFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating directory %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("creating temporary file in %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name())

	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("setting mode of %s: %w", tmp.Name(), err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("syncing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("renaming %s to %s: %w", tmp.Name(), path, err)
	}

	return nil
}

// readSecretFile reads path after checking that only its owner can read it.
func readSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	defer f.Close()

	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading mode of %s: %w", path, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o: run chmod 600 %s",
			ErrCredsMode, path, st.Mode().Perm(), path)
	}
	data := make([]byte, st.Size())
	if _, err := f.ReadAt(data, 0); err != nil && st.Size() > 0 {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}

	return data, nil
}
