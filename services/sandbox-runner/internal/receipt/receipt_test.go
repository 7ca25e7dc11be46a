package receipt

import (
	"crypto/ed25519"
	"errors"
	"testing"
)

func TestSignVerifyRoundTrip(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	s, err := Sign(&Receipt{RunID: "r1", BundleID: "b1", Reason: "exited"}, priv)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Verify(s, pub)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if r.RunID != "r1" || r.BundleID != "b1" {
		t.Errorf("got %+v, want run r1 bundle b1", r)
	}
}

func TestVerifyRejectsTamperedBody(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	s, _ := Sign(&Receipt{RunID: "r1", ExitCode: 1}, priv)
	s.Body = []byte(`{"run_id":"r1","exit_code":0}`)
	if _, err := Verify(s, pub); !errors.Is(err, ErrBadSignature) {
		t.Errorf("got %v, want ErrBadSignature", err)
	}
}
