package identity

import (
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"errors"
	"fmt"
	"sync"

	"github.com/nodexsec/nodex/libs/envelope"
)

// Compile-time checks that the adapters implement the envelope interfaces.
var (
	_ envelope.Directory = (*Directory)(nil)
	_ envelope.Keys      = (*Keyring)(nil)
)

// Directory adapts a [View] to [envelope.Directory].
type Directory struct {
	View *View
}

// mapErr converts registry errors to the envelope sentinels, keeping the
// original error in the chain.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrStale):
		return fmt.Errorf("%w: %w", envelope.ErrStale, err)
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrUnknownKey):
		return fmt.Errorf("%w: %w", envelope.ErrNotFound, err)
	}

	return err
}

// Party implements [envelope.Directory].
func (d *Directory) Party(_ context.Context, id string) (envelope.Party, error) {
	ident, err := d.View.Identity(id)
	if err != nil {
		return envelope.Party{}, mapErr(err)
	}

	return envelope.Party{
		ID: ident.ID, Kind: string(ident.Kind), Status: string(ident.Status),
		Roles: append([]string(nil), ident.Roles...),
	}, nil
}

// SigningKey implements [envelope.Directory]. A key whose overlap window has
// passed is returned with Retired set.
func (d *Directory) SigningKey(_ context.Context, id string, version uint32,
) (envelope.SigningKey, error) {
	ident, err := d.View.Identity(id)
	if err != nil {
		return envelope.SigningKey{}, mapErr(err)
	}
	for _, k := range ident.SigningKeys {
		if uint32(k.Version) != version {
			continue
		}
		out := envelope.SigningKey{Version: version, Public: ed25519.PublicKey(k.Key)}
		out.Retired = !k.NotAfter.IsZero() && !d.View.opts.Now().Before(k.NotAfter)
		if k.Compromise != nil {
			// A compromised key also ends its overlap at once, but the
			// stream-sequence bound decides what it still verifies, so it
			// is reported as compromised and not as retired.
			out.Retired = false
			out.Compromised = true
			out.RevokedAtSeq = compromiseSeqs(k.Compromise)
		}

		return out, nil
	}

	return envelope.SigningKey{}, fmt.Errorf("%w: signing key %d of %q",
		envelope.ErrNotFound, version, id)
}

// compromiseSeqs converts "last sequence at revocation" to the envelope's
// "first sequence no longer accepted".
func compromiseSeqs(c *Compromise) map[string]uint64 {
	out := make(map[string]uint64, len(c.StreamSeqs))
	for stream, last := range c.StreamSeqs {
		out[stream] = last + 1
	}

	return out
}

// RecipientKey implements [envelope.Directory].
func (d *Directory) RecipientKey(_ context.Context, id string) (envelope.RecipientKey, error) {
	ident, err := d.View.Identity(id)
	if err != nil {
		return envelope.RecipientKey{}, mapErr(err)
	}
	k, err := ident.CurrentHPKEKey()
	if err != nil {
		return envelope.RecipientKey{}, mapErr(err)
	}
	pub, err := KEM().NewPublicKey(k.Key)
	if err != nil {
		return envelope.RecipientKey{}, fmt.Errorf("decoding HPKE key %d of %q: %w",
			k.Version, id, err)
	}

	return envelope.RecipientKey{ID: id, Version: uint32(k.Version), Public: pub}, nil
}

// RoleEpoch implements [envelope.Directory].
func (d *Directory) RoleEpoch(_ context.Context, role string) (envelope.RoleEpoch, error) {
	e, err := d.View.Role(role)
	if err != nil {
		return envelope.RoleEpoch{}, mapErr(err)
	}
	pub, err := KEM().NewPublicKey(e.PublicKey)
	if err != nil {
		return envelope.RoleEpoch{}, fmt.Errorf("decoding key of role %q: %w", role, err)
	}
	out := envelope.RoleEpoch{Role: role, Epoch: uint32(e.Epoch), Public: pub}
	for _, m := range e.Members {
		out.Members = append(out.Members, m.ID)
	}

	return out, nil
}

// Fresh implements [envelope.Directory].
func (d *Directory) Fresh(context.Context) error { return mapErr(d.View.Fresh()) }

// Keyring adapts [Credentials] and a [View] to [envelope.Keys]. A role key
// is opened from the member's wrap in the current epoch, and older epochs
// are reached along the epoch chain. Opened keys are cached.
type Keyring struct {
	Creds *Credentials
	View  *View

	mu    sync.Mutex
	roles map[string]map[uint32]hpke.PrivateKey
}

// ID implements [envelope.Keys].
func (k *Keyring) ID() string { return k.Creds.ID }

// SigningKey implements [envelope.Keys].
func (k *Keyring) SigningKey() (uint32, ed25519.PrivateKey) {
	sk := k.Creds.CurrentSigningKey()

	return uint32(sk.Version), sk.Key
}

// HPKEKey implements [envelope.Keys].
func (k *Keyring) HPKEKey(version uint32) (hpke.PrivateKey, error) {
	hk, err := k.Creds.HPKEKeyVersion(int(version))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", envelope.ErrNotFound, err)
	}

	return hk.Key, nil
}

// RoleKey implements [envelope.Keys].
func (k *Keyring) RoleKey(role string, epoch uint32) (hpke.PrivateKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()

	if priv, ok := k.roles[role][epoch]; ok {
		return priv, nil
	}
	cur, err := k.View.Role(role)
	if err != nil {
		return nil, mapErr(err)
	}
	if uint32(cur.Epoch) < epoch || !cur.HasMember(k.Creds.ID) {
		return nil, fmt.Errorf("%w: %q is not a member of role %q epoch %d",
			envelope.ErrNotFound, k.Creds.ID, role, epoch)
	}
	priv, err := cur.OpenPrivate(k.Creds)
	if err != nil {
		return nil, err
	}
	k.cacheLocked(role, uint32(cur.Epoch), priv)

	// Follow the chain back: the record of epoch n carries epoch n-1's
	// private key sealed to epoch n.
	for n := cur.Epoch; uint32(n) > epoch; n-- {
		rec, err := k.View.RoleEpochAt(role, n)
		if err != nil {
			return nil, mapErr(err)
		}
		if priv, err = rec.OpenPrevious(priv); err != nil {
			return nil, err
		}
		k.cacheLocked(role, uint32(n-1), priv)
	}

	return priv, nil
}

func (k *Keyring) cacheLocked(role string, epoch uint32, priv hpke.PrivateKey) {
	if k.roles == nil {
		k.roles = map[string]map[uint32]hpke.PrivateKey{}
	}
	if k.roles[role] == nil {
		k.roles[role] = map[uint32]hpke.PrivateKey{}
	}
	k.roles[role][epoch] = priv
}
