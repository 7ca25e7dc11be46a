package bundle

import (
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// Size limits that [Parse] checks before any cryptography.
const (
	MaxManifestBytes  = 1 << 20
	MaxSealedKeyBytes = 4 << 10
	MaxStdinBytes     = 4 << 20
	// MaxCiphertextBytes covers the largest archive and stdin plus the
	// framing, nonce and tag.
	MaxCiphertextBytes = MaxArchiveBytes + MaxStdinBytes + 64
)

// Domain-separation labels, so a signature or key made for a bundle can never
// be taken for one made for an envelope or another NodeX purpose.
const (
	signatureLabel = "nodex/v1/bundle/signature\x00"
	codeAADLabel   = "nodex/v1/bundle/code\x00"
	keyInfoLabel   = "nodex/v1/bundle/key\x00"
)

var bundleMagic = []byte("NXB1")

// Bundle is a sealed bundle as stored and sent. The fields are exact bytes:
// Manifest is never re-encoded after signing.
type Bundle struct {
	// Manifest is the JSON encoding of [Manifest] that Signature covers.
	Manifest []byte
	// SealedKey is the HPKE encapsulated key followed by the sealed
	// 32-byte content key.
	SealedKey []byte
	// Ciphertext is the 12-byte AES-GCM nonce followed by the encrypted
	// payload and its tag.
	Ciphertext []byte
	// Signature is the Ed25519 signature over the three fields above.
	Signature []byte
}

// Contents are the plaintext parts of a bundle.
type Contents struct {
	Files []File
	Stdin []byte
}

// Marshal returns the wire encoding of b that [Parse] reads.
func (b *Bundle) Marshal() []byte {
	out := make([]byte, 0, 4+4*4+len(b.Manifest)+len(b.SealedKey)+
		len(b.Ciphertext)+len(b.Signature))
	out = append(out, bundleMagic...)
	for _, field := range [][]byte{b.Manifest, b.SealedKey, b.Ciphertext, b.Signature} {
		out = binary.BigEndian.AppendUint32(out, uint32(len(field)))
		out = append(out, field...)
	}

	return out
}

// Parse reads the wire encoding of a bundle and checks the size of each
// field. It checks no signature: call [Verify] next.
func Parse(data []byte) (*Bundle, error) {
	r := reader{buf: data}
	if magic := r.next(len(bundleMagic)); string(magic) != string(bundleMagic) {
		return nil, fmt.Errorf("%w: bundle magic", ErrMalformed)
	}

	limits := []int{MaxManifestBytes, MaxSealedKeyBytes, MaxCiphertextBytes, ed25519.SignatureSize}
	fields := make([][]byte, len(limits))
	for i, limit := range limits {
		n := r.uint32()
		if r.err != nil || n > uint32(limit) {
			return nil, fmt.Errorf("%w: bundle field %d of %d bytes, limit %d",
				ErrMalformed, i, n, limit)
		}
		fields[i] = r.next(int(n))
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: bundle truncated", ErrMalformed)
	}
	if len(r.buf) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes after bundle", ErrMalformed, len(r.buf))
	}

	return &Bundle{
		Manifest:   fields[0],
		SealedKey:  fields[1],
		Ciphertext: fields[2],
		Signature:  fields[3],
	}, nil
}

// signedMessage returns the bytes the Ed25519 signature covers: a label, the
// manifest and sealed key with their lengths, and the SHA-256 of the
// ciphertext.
func signedMessage(b *Bundle) []byte {
	ctDigest := sha256.Sum256(b.Ciphertext)
	msg := make([]byte, 0, len(signatureLabel)+8+len(b.Manifest)+len(b.SealedKey)+len(ctDigest))
	msg = append(msg, signatureLabel...)
	msg = binary.BigEndian.AppendUint32(msg, uint32(len(b.Manifest)))
	msg = append(msg, b.Manifest...)
	msg = binary.BigEndian.AppendUint32(msg, uint32(len(b.SealedKey)))
	msg = append(msg, b.SealedKey...)

	return append(msg, ctDigest[:]...)
}

// keyInfo is the HPKE info string: it binds the sealed content key to one
// bundle id and one recipient key.
func keyInfo(bundleID, recipientKeyID string) []byte {
	return []byte(keyInfoLabel + bundleID + "\x00" + recipientKeyID)
}

// RecipientKeyID returns the lowercase hex SHA-256 of an HPKE public key, as
// stored in [Manifest.RecipientKeyID].
func RecipientKeyID(pub hpke.PublicKey) string {
	sum := sha256.Sum256(pub.Bytes())

	return hex.EncodeToString(sum[:])
}

// RecipientKEM returns the only KEM bundles use: MLKEM768-X25519. Go 1.26's
// crypto/hpke offers base mode only, and no classical fallback is accepted,
// because it would be a downgrade path.
func RecipientKEM() hpke.KEM { return hpke.MLKEM768X25519() }

// GenerateRecipientKey returns a new sandbox-runner encryption key pair.
func GenerateRecipientKey() (hpke.PrivateKey, error) {
	key, err := RecipientKEM().GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("generating MLKEM768-X25519 key: %w", err)
	}

	return key, nil
}

// ParseRecipientPublicKey decodes a sandbox-runner encryption public key from
// its serialized form (hpke.PublicKey.Bytes).
func ParseRecipientPublicKey(data []byte) (hpke.PublicKey, error) {
	pub, err := RecipientKEM().NewPublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("%w: decoding MLKEM768-X25519 public key: %v", ErrInvalidInput, err)
	}

	return pub, nil
}

func sha256Hex(data []byte) string {
	sum := sha256.Sum256(data)

	return hex.EncodeToString(sum[:])
}
