// Package sealing encrypts key values with envelope encryption: each value
// under its own random AES-256-GCM data key, and that data key wrapped by a
// key encryption key (KEK). The key name, provider and version number are
// bound into both layers as associated data, so a ciphertext or wrapped data
// key moved to another name or version fails to open.
package sealing

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/nodexsec/nodex/services/keyvault/internal/domain"
)

// KEK wraps and unwraps data keys. A file or environment keyring implements
// it today; a KMS or HSM can implement it later without other changes.
type KEK interface {
	// Wrap encrypts dek under the current KEK version, bound to aad, and
	// returns the wrapped key and the KEK version used.
	Wrap(ctx context.Context, dek, aad []byte) (wrapped []byte, version int, err error)
	// Unwrap decrypts a data key wrapped under the given KEK version.
	Unwrap(ctx context.Context, version int, wrapped, aad []byte) ([]byte, error)
	// CurrentVersion returns the KEK version that Wrap uses now.
	CurrentVersion() int
}

// ErrOpen is returned when a sealed value fails authentication: it was
// tampered with, moved to another name or version, or wrapped under a KEK
// that is not in the keyring.
var ErrOpen = errors.New("keyvault: sealed value failed to open")

// Binding is the identity of a sealed value: key name, provider and version.
type Binding struct {
	Name     string
	Provider string
	Version  int
}

// associatedData encodes the binding with length prefixes, so that no two
// bindings share an encoding, plus a label naming the layer.
func (b Binding) associatedData(layer string) []byte {
	out := make([]byte, 0, 64)
	out = append(out, "nodex/v1/keyvault/"+layer+"\x00"...)
	for _, s := range []string{b.Name, b.Provider} {
		out = binary.BigEndian.AppendUint16(out, uint16(len(s)))
		out = append(out, s...)
	}

	return binary.BigEndian.AppendUint64(out, uint64(b.Version))
}

// Seal encrypts value under a fresh data key and wraps the data key with kek.
func Seal(ctx context.Context, kek KEK, b Binding, value []byte) (*domain.Sealed, error) {
	dek := make([]byte, 32)
	if _, err := rand.Read(dek); err != nil {
		return nil, fmt.Errorf("drawing data key: %w", err)
	}
	defer clear(dek)

	ct, err := gcmSeal(dek, value, b.associatedData("value"))
	if err != nil {
		return nil, err
	}
	wrapped, kv, err := kek.Wrap(ctx, dek, b.associatedData("dek"))
	if err != nil {
		return nil, fmt.Errorf("wrapping data key of %q version %d: %w", b.Name, b.Version, err)
	}

	return &domain.Sealed{WrappedDEK: wrapped, KEKVersion: kv, Ciphertext: ct}, nil
}

// Open unwraps the data key and decrypts the value. Any failure to
// authenticate returns an error wrapping [ErrOpen].
func Open(ctx context.Context, kek KEK, b Binding, s *domain.Sealed) ([]byte, error) {
	dek, err := kek.Unwrap(ctx, s.KEKVersion, s.WrappedDEK, b.associatedData("dek"))
	if err != nil {
		return nil, fmt.Errorf("unwrapping data key of %q version %d: %w", b.Name, b.Version, err)
	}
	defer clear(dek)

	value, err := gcmOpen(dek, s.Ciphertext, b.associatedData("value"))
	if err != nil {
		return nil, fmt.Errorf("opening %q version %d: %w", b.Name, b.Version, err)
	}

	return value, nil
}

// Rewrap unwraps the data key and wraps it again under the current KEK
// version. The value ciphertext is unchanged.
func Rewrap(ctx context.Context, kek KEK, b Binding, s *domain.Sealed) (*domain.Sealed, error) {
	aad := b.associatedData("dek")
	dek, err := kek.Unwrap(ctx, s.KEKVersion, s.WrappedDEK, aad)
	if err != nil {
		return nil, fmt.Errorf("unwrapping data key of %q version %d: %w", b.Name, b.Version, err)
	}
	defer clear(dek)

	wrapped, kv, err := kek.Wrap(ctx, dek, aad)
	if err != nil {
		return nil, fmt.Errorf("wrapping data key of %q version %d: %w", b.Name, b.Version, err)
	}

	return &domain.Sealed{WrappedDEK: wrapped, KEKVersion: kv, Ciphertext: s.Ciphertext}, nil
}

// GCMSeal encrypts plaintext under a 32-byte key with a random nonce and
// returns nonce || ciphertext. KEK implementations share it.
func GCMSeal(key, plaintext, aad []byte) ([]byte, error) { return gcmSeal(key, plaintext, aad) }

// GCMOpen reverses [GCMSeal]; an authentication failure wraps [ErrOpen].
func GCMOpen(key, sealed, aad []byte) ([]byte, error) { return gcmOpen(key, sealed, aad) }

func gcmSeal(key, plaintext, aad []byte) ([]byte, error) {
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("drawing nonce: %w", err)
	}

	return aead.Seal(nonce, nonce, plaintext, aad), nil
}

func gcmOpen(key, sealed, aad []byte) ([]byte, error) {
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return nil, fmt.Errorf("%w: ciphertext too short", ErrOpen)
	}
	n := aead.NonceSize()
	pt, err := aead.Open(nil, sealed[:n], sealed[n:], aad)
	if err != nil {
		// The GCM error carries no detail worth keeping.
		return nil, ErrOpen
	}

	return pt, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("creating AES cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("creating GCM: %w", err)
	}

	return aead, nil
}
