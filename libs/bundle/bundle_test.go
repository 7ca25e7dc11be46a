package bundle

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hpke"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var testNow = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

type fixture struct {
	signer    Signer
	keys      StaticKey
	recipient hpke.PrivateKey
}

func newFixture(t testing.TB) fixture {
	t.Helper()

	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	recipient, err := GenerateRecipientKey()
	if err != nil {
		t.Fatal(err)
	}

	return fixture{
		signer:    Signer{ID: "svc-codesec", KeyVersion: 1, Key: priv},
		keys:      StaticKey{ID: "svc-codesec", Version: 1, Key: pub},
		recipient: recipient,
	}
}

// setRevocations is a RevocationChecker over a fixed set.
type setRevocations map[string]bool

func (s setRevocations) Revoked(_ context.Context, id string) (bool, error) {
	return s[id], nil
}

type failingRevocations struct{}

func (failingRevocations) Revoked(context.Context, string) (bool, error) {
	return false, errors.New("revocation list not synced")
}

func (f fixture) options() VerifyOptions {
	return VerifyOptions{
		Signer:      f.signer.ID,
		Keys:        f.keys,
		Revocations: setRevocations{},
		Now:         func() time.Time { return testNow },
	}
}

func testManifest(id string) Manifest {
	return Manifest{
		ID:         id,
		Language:   "python",
		Entrypoint: "main.py",
		Modules:    []string{"json"},
		Args:       []string{"--n", "3"},
		Limits:     Limits{WallTimeMillis: 5000, MemoryBytes: 64 << 20},
		Author:     "agent-demo",
		Created:    testNow.Add(-time.Minute),
		Expires:    testNow.Add(time.Hour),
		Findings:   []Finding{{RuleID: "PY-ENV-001", Severity: "low", File: "main.py", Line: 2}},
		DecisionID: "decision-1",
	}
}

func testContents() Contents {
	return Contents{
		Files: []File{
			{Name: "main.py", Data: []byte("import lib\nprint(lib.double(21))\n")},
			{Name: "lib.py", Data: []byte("def double(x):\n    return 2 * x\n")},
		},
		Stdin: []byte("input line\n"),
	}
}

func (f fixture) seal(t testing.TB, m Manifest) *Bundle {
	t.Helper()

	b, _, err := Seal(m, testContents(), f.signer, f.recipient.PublicKey())
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}

	return b
}

func TestSealVerifyOpenRoundTrip(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	b, signed, err := Seal(testManifest("b-1"), testContents(), f.signer, f.recipient.PublicKey())
	if err != nil {
		t.Fatal(err)
	}

	parsed, err := Parse(b.Marshal())
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	v, err := Verify(context.Background(), parsed, f.options())
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if diff := cmp.Diff(signed, v.Manifest); diff != "" {
		t.Errorf("verified manifest differs (-sealed +verified):\n%s", diff)
	}

	got, err := Open(v, f.recipient)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	want := testContents()
	want.Files[0], want.Files[1] = want.Files[1], want.Files[0] // archives sort by name
	if diff := cmp.Diff(&want, got); diff != "" {
		t.Errorf("opened contents differ (-want +got):\n%s", diff)
	}
}

func TestTamperEveryByteDetected(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	wire := f.seal(t, testManifest("b-tamper")).Marshal()

	for i := range wire {
		for _, mask := range []byte{0x01, 0x80} {
			tampered := bytes.Clone(wire)
			tampered[i] ^= mask
			if err := parseVerifyOpen(tampered, f); err == nil {
				t.Errorf("byte %d of %d xor %#x: bundle accepted, want rejected", i, len(wire), mask)
			}
		}
	}
}

func parseVerifyOpen(wire []byte, f fixture) error {
	b, err := Parse(wire)
	if err != nil {
		return err
	}
	v, err := Verify(context.Background(), b, f.options())
	if err != nil {
		return err
	}
	_, err = Open(v, f.recipient)

	return err
}

func TestVerifyRejections(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	other := newFixture(t)
	other.signer.ID = f.signer.ID // same identity id, key not in the registry

	expired := testManifest("b-expired")
	expired.Created = testNow.Add(-2 * time.Hour)
	expired.Expires = testNow.Add(-time.Hour)
	future := testManifest("b-future")
	future.Created = testNow.Add(time.Hour)
	future.Expires = testNow.Add(2 * time.Hour)
	impostor := newFixture(t)
	impostor.signer.ID = "agent-mallory"

	tests := []struct {
		name   string
		bundle *Bundle
		opts   func(VerifyOptions) VerifyOptions
		want   error
	}{
		{"expired", f.seal(t, expired), nil, ErrExpired},
		{"created in future", f.seal(t, future), nil, ErrExpired},
		{"expiry boundary", f.seal(t, testManifest("b-edge")), func(o VerifyOptions) VerifyOptions {
			o.Now = func() time.Time { return testNow.Add(time.Hour) }
			return o
		}, ErrExpired},
		{"revoked", f.seal(t, testManifest("b-revoked")), func(o VerifyOptions) VerifyOptions {
			o.Revocations = setRevocations{"b-revoked": true}
			return o
		}, ErrRevoked},
		{"revocation unknown", f.seal(t, testManifest("b-unk")), func(o VerifyOptions) VerifyOptions {
			o.Revocations = failingRevocations{}
			return o
		}, ErrRevocationUnknown},
		{"other identity", impostor.seal(t, testManifest("b-imp")), nil, ErrUntrustedSigner},
		{"codesec id with other key", other.seal(t, testManifest("b-key")), nil, ErrBadSignature},
		{"unknown key version", f.seal(t, testManifest("b-ver")), func(o VerifyOptions) VerifyOptions {
			o.Keys = StaticKey{ID: f.keys.ID, Version: 2, Key: f.keys.Key}
			return o
		}, ErrUntrustedSigner},
		{"missing revocations", f.seal(t, testManifest("b-norc")), func(o VerifyOptions) VerifyOptions {
			o.Revocations = nil
			return o
		}, ErrInvalidInput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := f.options()
			if tt.opts != nil {
				opts = tt.opts(opts)
			}
			_, err := Verify(context.Background(), tt.bundle, opts)
			if !errors.Is(err, tt.want) {
				t.Errorf("Verify error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestOpenWrongRecipientKey(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	v, err := Verify(context.Background(), f.seal(t, testManifest("b-rk")), f.options())
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := GenerateRecipientKey()
	if err != nil {
		t.Fatal(err)
	}

	if _, err := Open(v, otherKey); !errors.Is(err, ErrDecrypt) {
		t.Errorf("Open with another key: error = %v, want %v", err, ErrDecrypt)
	}
	if _, err := Open(&Verified{}, f.recipient); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("Open of an unverified value: error = %v, want %v", err, ErrInvalidInput)
	}
}

func TestSealRejectsBadInput(t *testing.T) {
	t.Parallel()
	f := newFixture(t)

	tests := []struct {
		name   string
		change func(*Manifest, *Contents)
	}{
		{"no id", func(m *Manifest, _ *Contents) { m.ID = "" }},
		{"missing entrypoint", func(m *Manifest, _ *Contents) { m.Entrypoint = "absent.py" }},
		{"expires before created", func(m *Manifest, _ *Contents) { m.Expires = m.Created }},
		{"dot-dot name", func(_ *Manifest, c *Contents) { c.Files[1].Name = "../lib.py" }},
		{"duplicate name", func(_ *Manifest, c *Contents) { c.Files[1].Name = "main.py" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, c := testManifest("b-bad"), testContents()
			tt.change(&m, &c)
			if _, _, err := Seal(m, c, f.signer, f.recipient.PublicKey()); !errors.Is(err, ErrInvalidInput) {
				t.Errorf("Seal error = %v, want %v", err, ErrInvalidInput)
			}
		})
	}
}

func TestSealRejectsClassicalRecipient(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	classical, err := hpke.DHKEM(ecdh.X25519()).GenerateKey()
	if err != nil {
		t.Fatal(err)
	}

	_, _, err = Seal(testManifest("b-x25519"), testContents(), f.signer, classical.PublicKey())
	if !errors.Is(err, ErrInvalidInput) {
		t.Errorf("Seal to an X25519-only key: error = %v, want %v", err, ErrInvalidInput)
	}
}

func TestCheckFileName(t *testing.T) {
	t.Parallel()
	bad := []string{"", "/etc/passwd", "a/../b", "..", "./a", "a//b", "a\\b", "a\x00b",
		"a\nb", "\xff", string(bytes.Repeat([]byte("a"), MaxFileNameBytes+1))}
	for _, name := range bad {
		if err := CheckFileName(name); err == nil {
			t.Errorf("CheckFileName(%q) = nil, want an error", name)
		}
	}
	for _, name := range []string{"main.py", "pkg/mod.py", "a..b", ".hidden"} {
		if err := CheckFileName(name); err != nil {
			t.Errorf("CheckFileName(%q) = %v, want nil", name, err)
		}
	}
}

func ExampleSeal() {
	_, signingKey, _ := ed25519.GenerateKey(nil)
	runnerKey, _ := GenerateRecipientKey()
	m := Manifest{
		ID: "example", Language: "python", Entrypoint: "main.py", Author: "agent-demo",
		Created: time.Now(), Expires: time.Now().Add(time.Hour),
	}
	files := Contents{Files: []File{{Name: "main.py", Data: []byte("print(1)\n")}}}

	b, _, err := Seal(m, files, Signer{ID: "svc-codesec", KeyVersion: 1, Key: signingKey},
		runnerKey.PublicKey())
	fmt.Println(err == nil, len(b.Signature))
	// Output: true 64
}

func ExampleVerify() {
	pub, signingKey, _ := ed25519.GenerateKey(nil)
	runnerKey, _ := GenerateRecipientKey()
	now := time.Now()
	m := Manifest{ID: "example", Language: "sh", Entrypoint: "run.sh", Author: "agent-demo",
		Created: now, Expires: now.Add(time.Hour)}
	files := Contents{Files: []File{{Name: "run.sh", Data: []byte("echo hi\n")}}}
	sealed, _, _ := Seal(m, files, Signer{ID: "codesec", KeyVersion: 1, Key: signingKey},
		runnerKey.PublicKey())

	// The sandbox-runner's side: parse, verify, then open.
	b, _ := Parse(sealed.Marshal())
	v, err := Verify(context.Background(), b, VerifyOptions{
		Signer:      "codesec",
		Keys:        StaticKey{ID: "codesec", Version: 1, Key: pub},
		Revocations: setRevocations{},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	contents, err := Open(v, runnerKey)
	fmt.Println(err, v.Manifest.Entrypoint, string(contents.Files[0].Data))
	// Output: <nil> run.sh echo hi
}
