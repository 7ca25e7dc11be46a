package bundle

import "errors"

// Sentinel errors that callers branch on with [errors.Is]. Every rejection by
// [Parse], [Verify] or [Open] wraps one of them.
var (
	// ErrMalformed means the bytes are not a well-formed bundle, manifest or
	// archive.
	ErrMalformed = errors.New("bundle: malformed")
	// ErrUntrustedSigner means the manifest names a signer other than the
	// trusted codesec identity, or its key could not be resolved.
	ErrUntrustedSigner = errors.New("bundle: untrusted signer")
	// ErrBadSignature means the Ed25519 signature does not cover these bytes.
	ErrBadSignature = errors.New("bundle: bad signature")
	// ErrExpired means the bundle's expiry time has passed, or its creation
	// time lies in the future.
	ErrExpired = errors.New("bundle: expired")
	// ErrRevoked means the bundle id is on the revocation list.
	ErrRevoked = errors.New("bundle: revoked")
	// ErrRevocationUnknown means the revocation state could not be read; a
	// verifier treats it as revoked.
	ErrRevocationUnknown = errors.New("bundle: revocation state unknown")
	// ErrDecrypt means the content key or the code could not be decrypted.
	ErrDecrypt = errors.New("bundle: decryption failed")
	// ErrDigestMismatch means the decrypted code or stdin does not match the
	// digest in the manifest.
	ErrDigestMismatch = errors.New("bundle: digest mismatch")
	// ErrInvalidInput means a caller passed an unusable argument to [Seal].
	ErrInvalidInput = errors.New("bundle: invalid input")
)
