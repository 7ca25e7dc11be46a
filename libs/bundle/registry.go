package bundle

import (
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"fmt"
	"time"

	"github.com/nodexsec/nodex/libs/identity"
)

// RegistryKeys is a [KeyResolver] over the identity registry: the key must
// belong to an active identity and be a version the registry still
// accepts.
type RegistryKeys struct {
	View *identity.View
	// Now is the clock for key expiry; nil means time.Now.
	Now func() time.Time
}

var _ KeyResolver = RegistryKeys{}

// SigningKey returns version keyVersion of identityID's Ed25519 key.
func (k RegistryKeys) SigningKey(_ context.Context, identityID string, keyVersion int) (ed25519.PublicKey, error) {
	ident, err := k.View.Active(identityID)
	if err != nil {
		return nil, fmt.Errorf("looking up signer %q: %w", identityID, err)
	}
	now := time.Now()
	if k.Now != nil {
		now = k.Now()
	}
	pub, err := ident.SigningKey(keyVersion, now)
	if err != nil {
		return nil, fmt.Errorf("looking up key %d of %q: %w", keyVersion, identityID, err)
	}
	if len(pub.Key) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("key %d of %q has %d bytes, want %d", keyVersion, identityID,
			len(pub.Key), ed25519.PublicKeySize)
	}

	return ed25519.PublicKey(pub.Key), nil
}

// RecipientSource returns the HPKE public key that bundles are sealed to.
type RecipientSource interface {
	Recipient(ctx context.Context) (hpke.PublicKey, error)
}

// StaticRecipient is a [RecipientSource] with one fixed key.
type StaticRecipient struct{ Key hpke.PublicKey }

// Recipient returns r.Key.
func (r StaticRecipient) Recipient(context.Context) (hpke.PublicKey, error) {
	if r.Key == nil {
		return nil, fmt.Errorf("%w: no recipient key", ErrInvalidInput)
	}

	return r.Key, nil
}

// RegistryRecipient is a [RecipientSource] that reads the current HPKE key
// of an identity (the sandbox-runner's) from the registry on every call, so
// a key rotation takes effect without a restart.
type RegistryRecipient struct {
	View *identity.View
	// ID is the identity whose key is used, such as "sandbox".
	ID string
}

// Recipient returns the current HPKE key of r.ID.
func (r RegistryRecipient) Recipient(context.Context) (hpke.PublicKey, error) {
	ident, err := r.View.Active(r.ID)
	if err != nil {
		return nil, fmt.Errorf("looking up recipient %q: %w", r.ID, err)
	}
	pub, err := ident.CurrentHPKEKey()
	if err != nil {
		return nil, fmt.Errorf("looking up the HPKE key of %q: %w", r.ID, err)
	}

	return ParseRecipientPublicKey(pub.Key)
}

// SignerFromCreds returns the bundle [Signer] for an identity's current
// Ed25519 signing key. The labels in the signed message keep a bundle
// signature from ever being taken for an envelope signature by the same
// key.
func SignerFromCreds(c *identity.Credentials) Signer {
	key := c.CurrentSigningKey()

	return Signer{ID: c.ID, KeyVersion: key.Version, Key: key.Key}
}
