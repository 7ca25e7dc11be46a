package bundle

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// ManifestVersion is the manifest format that this package writes and accepts.
const ManifestVersion = 1

// Manifest describes a sealed bundle. codesec fills it and signs it; the
// sandbox-runner reads it only after [Verify] has checked the signature.
type Manifest struct {
	// Version is the manifest format, always [ManifestVersion].
	Version int `json:"version"`
	// ID is the bundle id, a UUID chosen by codesec.
	ID string `json:"id"`
	// CodeSHA256 is the lowercase hex SHA-256 of the code archive (the
	// encoding that [EncodeFiles] returns). [Seal] sets it.
	CodeSHA256 string `json:"code_sha256"`
	// StdinSHA256 is the lowercase hex SHA-256 of the stdin bytes, empty
	// input included. [Seal] sets it.
	StdinSHA256 string `json:"stdin_sha256"`
	// Language is the runtime: "python", "javascript" or "sh".
	Language string `json:"language"`
	// Entrypoint is the archive file name that the runtime starts.
	Entrypoint string `json:"entrypoint"`
	// Modules lists the modules the policy allows the code to import.
	Modules []string `json:"modules"`
	// Args are the command-line arguments passed after the entrypoint.
	Args []string `json:"args"`
	// Limits are the resource limits the sandbox enforces.
	Limits Limits `json:"limits"`
	// Author is the identity id of the agent that submitted the code.
	Author string `json:"author"`
	// Created and Expires bound the time in which the bundle may run.
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	// Findings are the static-analysis results the policy decided on.
	Findings []Finding `json:"findings"`
	// DecisionID identifies the policy decision that allowed the bundle.
	DecisionID string `json:"decision_id"`
	// Signer is the identity id of the codesec instance that signed, and
	// SignerKeyVersion the version of its Ed25519 signing key. [Seal] sets
	// both.
	Signer           string `json:"signer"`
	SignerKeyVersion int    `json:"signer_key_version"`
	// RecipientKeyID is the lowercase hex SHA-256 of the HPKE public key that
	// the content key is sealed to. A runner with several keys during a
	// rotation uses it to pick the one that opens the bundle. [Seal] sets it.
	RecipientKeyID string `json:"recipient_key_id"`
}

// Limits are the resource limits requested for a run. Zero means the
// sandbox-runner's default.
type Limits struct {
	WallTimeMillis int64 `json:"wall_time_ms"`
	CPUTimeMillis  int64 `json:"cpu_time_ms"`
	MemoryBytes    int64 `json:"memory_bytes"`
	MaxProcesses   int64 `json:"max_processes"`
	MaxOutputBytes int64 `json:"max_output_bytes"`
}

// Finding is one static-analysis result.
type Finding struct {
	RuleID   string `json:"rule_id"`
	Severity string `json:"severity"`
	File     string `json:"file"`
	Line     int    `json:"line"`
	Message  string `json:"message"`
}

// encodeManifest returns the canonical bytes of m that get signed.
func encodeManifest(m *Manifest) ([]byte, error) {
	data, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding manifest %q: %w", m.ID, err)
	}

	return data, nil
}

// decodeManifest parses signed manifest bytes strictly: unknown fields and
// trailing data are rejected so that two readers cannot see different
// manifests in the same bytes.
func decodeManifest(data []byte) (*Manifest, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()

	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: decoding manifest: %v", ErrMalformed, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after manifest", ErrMalformed)
	}
	if m.Version != ManifestVersion {
		return nil, fmt.Errorf("%w: manifest version %d, want %d",
			ErrMalformed, m.Version, ManifestVersion)
	}

	return &m, nil
}
