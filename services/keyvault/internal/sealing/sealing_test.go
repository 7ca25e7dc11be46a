package sealing_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/nodexsec/nodex/services/keyvault/internal/domain"
	"github.com/nodexsec/nodex/services/keyvault/internal/kek"
	"github.com/nodexsec/nodex/services/keyvault/internal/sealing"
)

func newRing(t *testing.T) *kek.Keyring {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kek")
	if err := kek.GenerateFile(path); err != nil {
		t.Fatal(err)
	}
	ring, err := kek.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	return ring
}

func TestSealOpenRoundTrip(t *testing.T) {
	ctx := context.Background()
	ring := newRing(t)
	b := sealing.Binding{Name: "prod-openai", Provider: "openai", Version: 1}
	value := []byte("gsk_FAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKE")

	s, err := sealing.Seal(ctx, ring, b, value)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(s.Ciphertext, value) || bytes.Contains(s.WrappedDEK, value) {
		t.Fatal("sealed form contains the plaintext")
	}
	got, err := sealing.Open(ctx, ring, b, s)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if !bytes.Equal(got, value) {
		t.Error("opened value differs from the sealed one")
	}
}

func TestSwappedCiphertextFailsToOpen(t *testing.T) {
	ctx := context.Background()
	ring := newRing(t)
	a := sealing.Binding{Name: "alpha", Provider: "groq", Version: 1}
	b := sealing.Binding{Name: "beta", Provider: "groq", Version: 1}
	sa, err := sealing.Seal(ctx, ring, a, []byte("value-a"))
	if err != nil {
		t.Fatal(err)
	}
	sb, err := sealing.Seal(ctx, ring, b, []byte("value-b"))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		b    sealing.Binding
		s    *domain.Sealed
	}{
		{"whole record moved", b, sa},
		{"ciphertext only", b, &domain.Sealed{WrappedDEK: sb.WrappedDEK,
			KEKVersion: sb.KEKVersion, Ciphertext: sa.Ciphertext}},
		{"other version", sealing.Binding{Name: "alpha", Provider: "groq", Version: 2}, sa},
		{"other provider", sealing.Binding{Name: "alpha", Provider: "openai", Version: 1}, sa},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sealing.Open(ctx, ring, tt.b, tt.s)
			if !errors.Is(err, sealing.ErrOpen) {
				t.Errorf("Open error = %v, want ErrOpen", err)
			}
		})
	}
}

func TestRewrapUsesCurrentKEK(t *testing.T) {
	ctx := context.Background()
	ring := newRing(t)
	b := sealing.Binding{Name: "k", Provider: "google", Version: 3}
	s, err := sealing.Seal(ctx, ring, b, []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ring.Rotate(); err != nil {
		t.Fatal(err)
	}
	r, err := sealing.Rewrap(ctx, ring, b, s)
	if err != nil {
		t.Fatalf("Rewrap: %v", err)
	}
	if r.KEKVersion != ring.CurrentVersion() {
		t.Errorf("rewrapped KEK version = %d, want %d", r.KEKVersion, ring.CurrentVersion())
	}
	got, err := sealing.Open(ctx, ring, b, r)
	if err != nil || string(got) != "v" {
		t.Errorf("Open after rewrap = %q, %v; want \"v\", nil", got, err)
	}
}
