package identity

import (
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Admin performs registry writes signed by the operator root key: issuing,
// listing, suspending, unsuspending and revoking identities, rotating keys
// and starting role epochs. The `nodex agent` commands call it.
type Admin struct {
	kv   jetstream.KeyValue
	root Signer
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// NewAdmin returns an Admin writing to the registry bucket kv.
func NewAdmin(kv jetstream.KeyValue, root Signer) *Admin {
	if kv == nil || root.Key == nil {
		panic("identity: NewAdmin needs a KV bucket and a root key")
	}

	return &Admin{kv: kv, root: root}
}

func (a *Admin) now() time.Time {
	if a.Now != nil {
		return a.Now().UTC()
	}

	return time.Now().UTC()
}

// verifier returns a verifier loaded with the current authority, if any.
func (a *Admin) verifier(ctx context.Context) (*Verifier, error) {
	v := &Verifier{Root: a.root.Public()}
	e, err := a.kv.Get(ctx, KeyAuthority)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return v, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", KeyAuthority, err)
	}
	entry, err := ParseEntry(e.Value())
	if err != nil {
		return nil, err
	}
	if _, err := v.SetAuthority(entry); err != nil {
		return nil, err
	}

	return v, nil
}

// current reads and verifies the record under key. It returns a nil
// record and revision 0 if the key is missing.
func (a *Admin) current(ctx context.Context, key string) (*Record, uint64, error) {
	e, err := a.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("reading registry key %q: %w", key, err)
	}
	v, err := a.verifier(ctx)
	if err != nil {
		return nil, 0, err
	}
	entry, err := ParseEntry(e.Value())
	if err != nil {
		return nil, 0, err
	}
	rec, err := v.Open(key, entry, a.now())
	if err != nil {
		return nil, 0, fmt.Errorf("verifying registry key %q: %w", key, err)
	}

	return rec, e.Revision(), nil
}

// write signs rec with the root key, giving it the version after prev, and
// stores it with a compare-and-set on revision rev, so two admins never
// overwrite each other's change silently.
func (a *Admin) write(ctx context.Context, rec *Record, prev *Record, rev uint64) error {
	// Readers reject an invalid record, so writing one would only make the
	// identity disappear from every view.
	if rec.Identity != nil {
		if err := rec.Identity.Validate(); err != nil {
			return err
		}
	}
	rec.Version = 1
	if prev != nil {
		rec.Version = prev.Version + 1
	}
	rec.IssuedAt = a.now()
	e, err := a.root.Sign(rec)
	if err != nil {
		return err
	}
	if rev == 0 {
		_, err = a.kv.Create(ctx, rec.Key, e.Marshal())
	} else {
		_, err = a.kv.Update(ctx, rec.Key, e.Marshal(), rev)
	}
	if err != nil {
		return fmt.Errorf("writing registry key %q: %w", rec.Key, err)
	}

	return nil
}

// PublishAuthority delegates the authority key pub until notAfter.
func (a *Admin) PublishAuthority(ctx context.Context, pub ed25519.PublicKey,
	notAfter time.Time,
) error {
	prev, rev, err := a.current(ctx, KeyAuthority)
	if err != nil {
		return err
	}
	rec := &Record{Key: KeyAuthority, Authority: &Authority{Key: pub, NotAfter: notAfter.UTC()}}

	return a.write(ctx, rec, prev, rev)
}

// Register publishes a new identity record. It fails with ErrExists if the
// id is taken, revoked ids included.
func (a *Admin) Register(ctx context.Context, ident *Identity) error {
	if err := ident.Validate(); err != nil {
		return err
	}
	prev, rev, err := a.current(ctx, IdentityKey(ident.ID))
	if err != nil {
		return err
	}
	if prev != nil {
		return fmt.Errorf("%w: %q", ErrExists, ident.ID)
	}

	return a.write(ctx, &Record{Key: IdentityKey(ident.ID), Identity: ident}, nil, rev)
}

// Create issues a new identity with fresh keys and the given roles, and
// publishes its record. The caller writes the returned credentials with
// [WriteCreds] and hands them to the party.
func (a *Admin) Create(ctx context.Context, id string, kind Kind, roles []string,
) (*Credentials, error) {
	c, err := NewCredentials(id, kind, a.root.Public())
	if err != nil {
		return nil, err
	}
	ident, err := c.Public(roles, a.now())
	if err != nil {
		return nil, err
	}
	if err := a.Register(ctx, ident); err != nil {
		return nil, err
	}

	return c, nil
}

// Get returns the verified record of identity id.
func (a *Admin) Get(ctx context.Context, id string) (*Identity, error) {
	rec, _, err := a.current(ctx, IdentityKey(id))
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}

	return rec.Identity, nil
}

// List returns every identity in the registry, verified, sorted by id.
func (a *Admin) List(ctx context.Context) ([]*Identity, error) {
	lister, err := a.kv.ListKeysFiltered(ctx, "id.*")
	if err != nil {
		return nil, fmt.Errorf("listing registry keys: %w", err)
	}
	var out []*Identity
	for key := range lister.Keys() {
		rec, _, err := a.current(ctx, key)
		if err != nil {
			return nil, err
		}
		if rec != nil {
			out = append(out, rec.Identity)
		}
	}

	return out, nil
}

// update applies fn to the current record of identity id and writes it.
func (a *Admin) update(ctx context.Context, id string, fn func(*Identity) error) error {
	key := IdentityKey(id)
	prev, rev, err := a.current(ctx, key)
	if err != nil {
		return err
	}
	if prev == nil {
		return fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	next := *prev.Identity
	next.Roles = append([]string(nil), prev.Identity.Roles...)
	next.SigningKeys = append([]PublicKey(nil), prev.Identity.SigningKeys...)
	next.HPKEKeys = append([]PublicKey(nil), prev.Identity.HPKEKeys...)
	if err := fn(&next); err != nil {
		return err
	}

	return a.write(ctx, &Record{Key: key, Identity: &next}, prev, rev)
}

// Suspend suspends identity id: it can no longer connect or send.
func (a *Admin) Suspend(ctx context.Context, id string) error {
	return a.setStatus(ctx, id, StatusSuspended)
}

// Unsuspend makes a suspended identity active again. A revoked identity
// stays revoked.
func (a *Admin) Unsuspend(ctx context.Context, id string) error {
	return a.setStatus(ctx, id, StatusActive)
}

// Revoke revokes identity id for good.
func (a *Admin) Revoke(ctx context.Context, id string) error {
	return a.setStatus(ctx, id, StatusRevoked)
}

func (a *Admin) setStatus(ctx context.Context, id string, s Status) error {
	return a.update(ctx, id, func(ident *Identity) error {
		if ident.Status == StatusRevoked && s != StatusRevoked {
			return fmt.Errorf("%w: %q is revoked; issue a new identity instead", ErrNotActive, id)
		}
		ident.Status = s

		return nil
	})
}

// SetRoles replaces the roles of identity id.
func (a *Admin) SetRoles(ctx context.Context, id string, roles []string) error {
	return a.update(ctx, id, func(ident *Identity) error {
		ident.Roles = roles

		return nil
	})
}

// Rotate adds a new signing key and HPKE key version to c and publishes
// them. The previous versions stay valid for overlap, so messages in flight
// still verify and open.
func (a *Admin) Rotate(ctx context.Context, c *Credentials, overlap time.Duration) error {
	now := a.now()
	next := c.CurrentSigningKey().Version + 1
	if err := c.addKeys(next); err != nil {
		return err
	}
	pub, err := c.Public(nil, now)
	if err != nil {
		return err
	}

	return a.update(ctx, c.ID, func(ident *Identity) error {
		retireKeys(ident.SigningKeys, now.Add(overlap))
		retireKeys(ident.HPKEKeys, now.Add(overlap))
		ident.SigningKeys = append(ident.SigningKeys, pub.SigningKeys[len(pub.SigningKeys)-1])
		ident.HPKEKeys = append(ident.HPKEKeys, pub.HPKEKeys[len(pub.HPKEKeys)-1])
		ident.Rotated = now

		return nil
	})
}

func retireKeys(keys []PublicKey, notAfter time.Time) {
	for i := range keys {
		if keys[i].NotAfter.IsZero() || keys[i].NotAfter.After(notAfter) {
			keys[i].NotAfter = notAfter
		}
	}
}

// RevokeCompromised replaces every key of c after a compromise, with no
// overlap. The old versions are marked compromised at once, together with
// the last sequence of each stream in streamSeqs (see [StreamSeqs]). Stream
// messages they signed are then accepted only up to that sequence. The
// private keys of the old versions are dropped from c.
func (a *Admin) RevokeCompromised(ctx context.Context, c *Credentials,
	streamSeqs map[string]uint64,
) error {
	now := a.now()
	if err := a.Rotate(ctx, c, 0); err != nil {
		return err
	}
	c.SigningKeys = c.SigningKeys[len(c.SigningKeys)-1:]
	c.HPKEKeys = c.HPKEKeys[len(c.HPKEKeys)-1:]
	comp := &Compromise{At: now, StreamSeqs: streamSeqs}

	return a.update(ctx, c.ID, func(ident *Identity) error {
		for i := range ident.SigningKeys[:len(ident.SigningKeys)-1] {
			ident.SigningKeys[i].Compromise = comp
		}
		for i := range ident.HPKEKeys[:len(ident.HPKEKeys)-1] {
			ident.HPKEKeys[i].Compromise = comp
		}

		return nil
	})
}

// StreamSeqs returns the last sequence of every stream in js, the values
// [Admin.RevokeCompromised] records.
func StreamSeqs(ctx context.Context, js jetstream.JetStream) (map[string]uint64, error) {
	out := map[string]uint64{}
	streams := js.ListStreams(ctx)
	for info := range streams.Info() {
		out[info.Config.Name] = info.State.LastSeq
	}
	if err := streams.Err(); err != nil {
		return nil, fmt.Errorf("listing streams: %w", err)
	}

	return out, nil
}

// Role returns the current epoch of role, or nil if it has none.
func (a *Admin) Role(ctx context.Context, role string) (*RoleEpoch, error) {
	rec, _, err := a.current(ctx, RoleKey(role))
	if err != nil || rec == nil {
		return nil, err
	}

	return rec.Role, nil
}

// StartRoleEpoch publishes a new epoch of role for the given members,
// chaining the previous epoch. Chaining needs the previous private key, so
// opener (the operator, in practice) must be a member of the previous
// epoch. The opener is added to the new epoch so the next change can chain.
func (a *Admin) StartRoleEpoch(ctx context.Context, role string, opener *Credentials,
	members []*Identity,
) (*RoleEpoch, error) {
	key := RoleKey(role)
	prev, rev, err := a.current(ctx, key)
	if err != nil {
		return nil, err
	}
	var prevEpoch *RoleEpoch
	var prevPriv hpke.PrivateKey
	if prev != nil {
		prevEpoch = prev.Role
		if prevPriv, err = prevEpoch.OpenPrivate(opener); err != nil {
			return nil, err
		}
	}
	members, err = a.withOpener(ctx, members, opener.ID)
	if err != nil {
		return nil, err
	}
	epoch, _, err := NewRoleEpoch(role, prevEpoch, prevPriv, members, a.now())
	if err != nil {
		return nil, err
	}
	if err := a.write(ctx, &Record{Key: key, Role: epoch}, prev, rev); err != nil {
		return nil, err
	}

	return epoch, nil
}

func (a *Admin) withOpener(ctx context.Context, members []*Identity, opener string,
) ([]*Identity, error) {
	for _, m := range members {
		if m.ID == opener {
			return members, nil
		}
	}
	op, err := a.Get(ctx, opener)
	if err != nil {
		return nil, err
	}

	return append(members, op), nil
}

// RemoveFromRoles starts a new epoch, without id, of every role whose
// current epoch lists id as a member. Call it after revoking an identity
// or its compromised keys: until then the identity can still open
// messages sealed to those roles. opener chains the epochs, as in
// [Admin.StartRoleEpoch]. It returns the roles that were rekeyed.
func (a *Admin) RemoveFromRoles(ctx context.Context, id string, opener *Credentials,
) ([]string, error) {
	lister, err := a.kv.ListKeysFiltered(ctx, "role.*")
	if err != nil {
		return nil, fmt.Errorf("listing role keys: %w", err)
	}
	var rekeyed []string
	for key := range lister.Keys() {
		rec, _, err := a.current(ctx, key)
		if err != nil {
			return rekeyed, err
		}
		if rec == nil || !rec.Role.HasMember(id) {
			continue
		}
		members, err := a.membersExcept(ctx, rec.Role, id)
		if err != nil {
			return rekeyed, err
		}
		if _, err := a.StartRoleEpoch(ctx, rec.Role.Role, opener, members); err != nil {
			return rekeyed, err
		}
		rekeyed = append(rekeyed, rec.Role.Role)
	}

	return rekeyed, nil
}

// membersExcept returns the current records of e's members other than id,
// leaving out revoked members too. Suspended members stay, since a
// suspension is lifted without new keys.
func (a *Admin) membersExcept(ctx context.Context, e *RoleEpoch, id string,
) ([]*Identity, error) {
	var out []*Identity
	for _, m := range e.Members {
		if m.ID == id {
			continue
		}
		ident, err := a.Get(ctx, m.ID)
		if err != nil {
			return nil, err
		}
		if ident.Status != StatusRevoked {
			out = append(out, ident)
		}
	}

	return out, nil
}
