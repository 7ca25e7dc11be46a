// Package receipt defines the signed execution receipt that ends every
// sandbox run, and its signing and verification.
package receipt

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ErrBadSignature reports a receipt whose signature does not verify.
var ErrBadSignature = errors.New("receipt: bad signature")

// Receipt records one run. Digests are lowercase hex SHA-256; the outputs
// digested are the ones returned to the caller, after redaction.
type Receipt struct {
	RunID        string    `json:"run_id"`
	BundleID     string    `json:"bundle_id"`
	CodeSHA256   string    `json:"code_sha256"`
	Agent        string    `json:"agent"`
	Author       string    `json:"author"`
	Runtime      string    `json:"runtime"`
	Limits       Limits    `json:"limits"`
	StdoutSHA256 string    `json:"stdout_sha256"`
	StderrSHA256 string    `json:"stderr_sha256"`
	Reason       string    `json:"reason"`
	ExitCode     int       `json:"exit_code"`
	Signal       int       `json:"signal"`
	CPUTimeMs    int64     `json:"cpu_time_ms"`
	WallTimeMs   int64     `json:"wall_time_ms"`
	PeakMemory   int64     `json:"peak_memory_bytes"`
	Violations   int       `json:"violations"`
	Redactions   int       `json:"redactions"`
	Insecure     bool      `json:"insecure,omitempty"`
	Started      time.Time `json:"started"`
	Finished     time.Time `json:"finished"`
	// Signer is the runner's identity id; KeyVersion its signing key version.
	Signer     string `json:"signer"`
	KeyVersion int    `json:"key_version"`
}

// Limits are the limits applied to the run, after clamping.
type Limits struct {
	WallTimeMs  int64 `json:"wall_time_ms"`
	CPUTimeMs   int64 `json:"cpu_time_ms"`
	MemoryBytes int64 `json:"memory_bytes"`
	Pids        int64 `json:"pids"`
	OutputBytes int64 `json:"output_bytes"`
}

// Signed is a receipt with an Ed25519 signature over the exact bytes of Body.
type Signed struct {
	Body      json.RawMessage `json:"body"`
	Signature string          `json:"signature"` // standard base64
}

// Digest returns the lowercase hex SHA-256 of b.
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Sign encodes r and signs the encoding.
func Sign(r *Receipt, key ed25519.PrivateKey) (*Signed, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encoding receipt %q: %w", r.RunID, err)
	}
	sig := ed25519.Sign(key, body)
	return &Signed{Body: body, Signature: base64.StdEncoding.EncodeToString(sig)}, nil
}

// Verify checks the signature with pub and returns the decoded receipt.
func Verify(s *Signed, pub ed25519.PublicKey) (*Receipt, error) {
	sig, err := base64.StdEncoding.DecodeString(s.Signature)
	if err != nil || len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, s.Body, sig) {
		return nil, ErrBadSignature
	}
	var r Receipt
	if err := json.Unmarshal(s.Body, &r); err != nil {
		return nil, fmt.Errorf("decoding receipt: %w", err)
	}
	return &r, nil
}
