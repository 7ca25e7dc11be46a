package bundle

import (
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// DefaultClockSkew is how far in the future a manifest's creation time may
// lie before [Verify] rejects it, when [VerifyOptions.ClockSkew] is zero.
const DefaultClockSkew = 30 * time.Second

// KeyResolver returns the public signing key of an identity. The
// sandbox-runner backs it with the identity registry.
type KeyResolver interface {
	// SigningKey returns the Ed25519 public key with the given version of
	// identityID. It returns an error when the identity is unknown, not
	// active, or the version is retired.
	SigningKey(ctx context.Context, identityID string, keyVersion int) (ed25519.PublicKey, error)
}

// RevocationChecker reports whether a bundle id has been revoked.
// [RevocationWatcher] implements it.
type RevocationChecker interface {
	// Revoked returns true for a revoked id, and an error when the state is
	// unknown (which [Verify] treats as revoked).
	Revoked(ctx context.Context, bundleID string) (bool, error)
}

// VerifyOptions are the trusted signer and the key and revocation sources
// that [Verify] uses. Signer, Keys and Revocations are required.
type VerifyOptions struct {
	// Signer is the identity id of codesec: the only identity whose
	// signature is accepted.
	Signer string
	// Keys resolves Signer's public key.
	Keys KeyResolver
	// Revocations is consulted after the signature and expiry checks.
	Revocations RevocationChecker
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// ClockSkew is how far in the future Created may be; zero means
	// [DefaultClockSkew].
	ClockSkew time.Duration
}

// Verified is a bundle whose signature, signer, expiry and revocation state
// [Verify] has checked. Only [Verify] creates one.
type Verified struct {
	// Manifest is the signed manifest, decoded.
	Manifest *Manifest
	bundle   *Bundle
}

// Verify checks, in order: the manifest decodes, it names opts.Signer as
// signer, the signature by that identity's key covers manifest, sealed key
// and ciphertext, the current time lies within [Created-ClockSkew, Expires),
// and the bundle id is not revoked. Any failure, a missing option included,
// rejects the bundle. The code digest is checked by [Open], which has the
// plaintext.
func Verify(ctx context.Context, b *Bundle, opts VerifyOptions) (*Verified, error) {
	if b == nil || opts.Signer == "" || opts.Keys == nil || opts.Revocations == nil {
		return nil, fmt.Errorf("%w: verify needs a bundle, a signer id, keys and revocations",
			ErrInvalidInput)
	}
	m, err := decodeManifest(b.Manifest)
	if err != nil {
		return nil, err
	}
	if m.Signer != opts.Signer {
		return nil, fmt.Errorf("%w: bundle %q signed by %q, want %q",
			ErrUntrustedSigner, m.ID, m.Signer, opts.Signer)
	}

	pub, err := opts.Keys.SigningKey(ctx, m.Signer, m.SignerKeyVersion)
	if err != nil {
		return nil, fmt.Errorf("%w: resolving key %d of %q: %v",
			ErrUntrustedSigner, m.SignerKeyVersion, m.Signer, err)
	}
	if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, signedMessage(b), b.Signature) {
		return nil, fmt.Errorf("%w: bundle %q", ErrBadSignature, m.ID)
	}

	if err := checkTime(m, opts); err != nil {
		return nil, err
	}
	if err := checkRevoked(ctx, m.ID, opts.Revocations); err != nil {
		return nil, err
	}

	return &Verified{Manifest: m, bundle: b}, nil
}

func checkTime(m *Manifest, opts VerifyOptions) error {
	now := time.Now()
	if opts.Now != nil {
		now = opts.Now()
	}
	skew := opts.ClockSkew
	if skew == 0 {
		skew = DefaultClockSkew
	}

	if !now.Before(m.Expires) {
		return fmt.Errorf("%w: bundle %q expired at %s", ErrExpired, m.ID, m.Expires.UTC())
	}
	if m.Created.After(now.Add(skew)) {
		return fmt.Errorf("%w: bundle %q created in the future at %s",
			ErrExpired, m.ID, m.Created.UTC())
	}

	return nil
}

func checkRevoked(ctx context.Context, id string, rc RevocationChecker) error {
	revoked, err := rc.Revoked(ctx, id)
	if err != nil {
		return fmt.Errorf("%w: bundle %q: %w", ErrRevocationUnknown, id, err)
	}
	if revoked {
		return fmt.Errorf("%w: bundle %q", ErrRevoked, id)
	}

	return nil
}

// Open decrypts a verified bundle with the sandbox-runner's private key and
// checks the code and stdin against the digests in the manifest. The files it
// returns have names that passed [CheckFileName], and one of them is the
// entrypoint.
func Open(v *Verified, key hpke.PrivateKey) (*Contents, error) {
	if v == nil || v.bundle == nil || v.Manifest == nil || key == nil {
		return nil, fmt.Errorf("%w: open needs a bundle returned by Verify and a key", ErrInvalidInput)
	}
	m, b := v.Manifest, v.bundle
	keyID := RecipientKeyID(key.PublicKey())
	if subtle.ConstantTimeCompare([]byte(keyID), []byte(m.RecipientKeyID)) != 1 {
		return nil, fmt.Errorf("%w: bundle %q is sealed to key %s, not %s",
			ErrDecrypt, m.ID, m.RecipientKeyID, keyID)
	}

	plaintext, err := decrypt(b, m, key)
	if err != nil {
		return nil, err
	}
	archive, stdin, err := splitPayload(plaintext)
	if err != nil {
		return nil, err
	}
	if sha256Hex(archive) != m.CodeSHA256 || sha256Hex(stdin) != m.StdinSHA256 {
		return nil, fmt.Errorf("%w: bundle %q", ErrDigestMismatch, m.ID)
	}

	files, err := DecodeFiles(archive)
	if err != nil {
		return nil, err
	}
	if !hasFile(files, m.Entrypoint) {
		return nil, fmt.Errorf("%w: entrypoint %q missing from bundle %q",
			ErrMalformed, m.Entrypoint, m.ID)
	}

	return &Contents{Files: files, Stdin: stdin}, nil
}

// decrypt opens the content key and the payload. Library errors are wrapped
// with %v on purpose: a caller needs only [ErrDecrypt], not the crypto
// package's internals.
func decrypt(b *Bundle, m *Manifest, key hpke.PrivateKey) ([]byte, error) {
	contentKey, err := hpke.Open(key, hpke.HKDFSHA256(), hpke.AES256GCM(),
		keyInfo(m.ID, m.RecipientKeyID), b.SealedKey)
	if err != nil {
		return nil, fmt.Errorf("%w: opening content key of bundle %q: %v", ErrDecrypt, m.ID, err)
	}
	defer clear(contentKey)
	if len(contentKey) != contentKeySize {
		return nil, fmt.Errorf("%w: content key of %d bytes", ErrDecrypt, len(contentKey))
	}

	gcm, err := newGCM(contentKey)
	if err != nil {
		return nil, errors.Join(ErrDecrypt, err)
	}
	if len(b.Ciphertext) < gcm.NonceSize()+gcm.Overhead() {
		return nil, fmt.Errorf("%w: ciphertext of %d bytes is too short", ErrDecrypt, len(b.Ciphertext))
	}
	nonce, sealed := b.Ciphertext[:gcm.NonceSize()], b.Ciphertext[gcm.NonceSize():]
	plaintext, err := gcm.Open(nil, nonce, sealed, codeAAD(b.Manifest))
	if err != nil {
		return nil, fmt.Errorf("%w: decrypting code of bundle %q: %v", ErrDecrypt, m.ID, err)
	}

	return plaintext, nil
}

func splitPayload(plaintext []byte) (archive, stdin []byte, err error) {
	if len(plaintext) < 4 {
		return nil, nil, fmt.Errorf("%w: payload of %d bytes", ErrMalformed, len(plaintext))
	}
	n := binary.BigEndian.Uint32(plaintext)
	rest := plaintext[4:]
	if uint64(n) > uint64(len(rest)) {
		return nil, nil, fmt.Errorf("%w: archive length %d exceeds payload", ErrMalformed, n)
	}

	return rest[:n], rest[n:], nil
}

func hasFile(files []File, name string) bool {
	for _, f := range files {
		if f.Name == name {
			return true
		}
	}

	return false
}

// StaticKey is a [KeyResolver] that trusts one fixed key: for tests and for a
// single-process deployment where codesec's public key is known at start.
type StaticKey struct {
	ID      string
	Version int
	Key     ed25519.PublicKey
}

var _ KeyResolver = StaticKey{}

// SigningKey returns k.Key when identityID and keyVersion match, and an error
// otherwise.
func (k StaticKey) SigningKey(_ context.Context, identityID string, keyVersion int) (ed25519.PublicKey, error) {
	if identityID != k.ID || keyVersion != k.Version {
		return nil, fmt.Errorf("no key %d for identity %q", keyVersion, identityID)
	}

	return k.Key, nil
}
