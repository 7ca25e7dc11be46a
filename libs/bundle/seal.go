package bundle

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"slices"
)

const contentKeySize = 32

// Signer is the codesec identity that signs bundles.
type Signer struct {
	// ID is the codesec identity id, copied into [Manifest.Signer].
	ID string
	// KeyVersion is the version of Key in the identity registry.
	KeyVersion int
	// Key signs; its public key must be an ed25519.PublicKey. An
	// ed25519.PrivateKey satisfies it.
	Key crypto.Signer
}

// Seal encrypts contents under a fresh random key, seals that key to the
// sandbox-runner's HPKE public key, and signs the manifest with s.
//
// Seal sets m's digests, signer fields and RecipientKeyID, and returns the
// manifest as signed along with the bundle. The caller fills the rest of m:
// ID, Language, Entrypoint (which must name one of the files), Author,
// Created and Expires (after Created) are required.
func Seal(m Manifest, contents Contents, s Signer, recipient hpke.PublicKey) (*Bundle, *Manifest, error) {
	if err := checkSealInput(&m, contents, s, recipient); err != nil {
		return nil, nil, err
	}
	archive, err := EncodeFiles(contents.Files)
	if err != nil {
		return nil, nil, err
	}

	m.Version = ManifestVersion
	m.CodeSHA256 = sha256Hex(archive)
	m.StdinSHA256 = sha256Hex(contents.Stdin)
	m.Signer = s.ID
	m.SignerKeyVersion = s.KeyVersion
	m.RecipientKeyID = RecipientKeyID(recipient)
	m.Modules = nonNil(m.Modules)
	m.Args = nonNil(m.Args)
	m.Findings = nonNil(m.Findings)
	manifest, err := encodeManifest(&m)
	if err != nil {
		return nil, nil, err
	}

	b, err := encrypt(manifest, archive, contents.Stdin, &m, recipient)
	if err != nil {
		return nil, nil, err
	}
	b.Signature, err = s.Key.Sign(rand.Reader, signedMessage(b), crypto.Hash(0))
	if err != nil {
		return nil, nil, fmt.Errorf("signing bundle %q: %w", m.ID, err)
	}

	return b, &m, nil
}

func checkSealInput(m *Manifest, contents Contents, s Signer, recipient hpke.PublicKey) error {
	switch {
	case m.ID == "":
		return fmt.Errorf("%w: manifest has no bundle id", ErrInvalidInput)
	case m.Language == "" || m.Author == "":
		return fmt.Errorf("%w: manifest %q needs language and author", ErrInvalidInput, m.ID)
	case !m.Expires.After(m.Created):
		return fmt.Errorf("%w: manifest %q expires at %s, not after its creation at %s",
			ErrInvalidInput, m.ID, m.Expires, m.Created)
	case len(contents.Stdin) > MaxStdinBytes:
		return fmt.Errorf("%w: stdin of %d bytes exceeds %d",
			ErrInvalidInput, len(contents.Stdin), MaxStdinBytes)
	case s.ID == "" || s.Key == nil:
		return fmt.Errorf("%w: signer needs an identity id and a key", ErrInvalidInput)
	case recipient == nil || recipient.KEM().ID() != RecipientKEM().ID():
		return fmt.Errorf("%w: recipient key must be MLKEM768-X25519", ErrInvalidInput)
	}
	if _, ok := s.Key.Public().(ed25519.PublicKey); !ok {
		return fmt.Errorf("%w: signer key of type %T is not Ed25519", ErrInvalidInput, s.Key.Public())
	}
	if !slices.ContainsFunc(contents.Files, func(f File) bool { return f.Name == m.Entrypoint }) {
		return fmt.Errorf("%w: entrypoint %q is not one of the files", ErrInvalidInput, m.Entrypoint)
	}

	return nil
}

// encrypt draws the content key, encrypts the payload with the manifest as
// associated data, and seals the key to recipient.
func encrypt(manifest, archive, stdin []byte, m *Manifest, recipient hpke.PublicKey) (*Bundle, error) {
	key := make([]byte, contentKeySize)
	rand.Read(key)
	defer clear(key)

	gcm, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	// A fresh key per bundle means one nonce per key, so a random nonce
	// cannot repeat under the same key.
	nonce := make([]byte, gcm.NonceSize(), gcm.NonceSize()+len(archive)+len(stdin)+64)
	rand.Read(nonce)

	plaintext := make([]byte, 0, 4+len(archive)+len(stdin))
	plaintext = binary.BigEndian.AppendUint32(plaintext, uint32(len(archive)))
	plaintext = append(plaintext, archive...)
	plaintext = append(plaintext, stdin...)
	ciphertext := gcm.Seal(nonce, nonce, plaintext, codeAAD(manifest))

	sealedKey, err := hpke.Seal(recipient, hpke.HKDFSHA256(), hpke.AES256GCM(),
		keyInfo(m.ID, m.RecipientKeyID), key)
	if err != nil {
		return nil, fmt.Errorf("sealing content key of bundle %q: %w", m.ID, err)
	}

	return &Bundle{Manifest: manifest, SealedKey: sealedKey, Ciphertext: ciphertext}, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("creating AES cipher: %w", err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("creating AES-GCM: %w", err)
	}

	return gcm, nil
}

func codeAAD(manifest []byte) []byte {
	return append([]byte(codeAADLabel), manifest...)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}

	return s
}
