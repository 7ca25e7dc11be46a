// Package api holds the request and reply bodies of the keyvault's subjects,
// for the service and for its clients such as `nodex keys`. Their JSON
// Schemas are in schemas/keyvault/.
package api

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/nodexsec/nodex/services/keyvault/internal/domain"
)

// Request subjects. The role "service:keyvault" serves each of them in the
// queue group [QueueGroup].
const (
	SubjectStore          = "nodex.v1.keyvault.store"
	SubjectRetrieve       = "nodex.v1.keyvault.retrieve"
	SubjectRotate         = "nodex.v1.keyvault.rotate"
	SubjectList           = "nodex.v1.keyvault.list"
	SubjectDelete         = "nodex.v1.keyvault.delete"
	SubjectRotateKEK      = "nodex.v1.keyvault.rotate_kek"
	SubjectDisable        = "nodex.v1.keyvault.disable"
	SubjectFingerprintKey = "nodex.v1.keyvault.fingerprint_key"

	// QueueGroup spreads requests over keyvault replicas.
	QueueGroup = "keyvault"
	// Role is the role that must reply to every keyvault request.
	Role = "service:keyvault"
)

// FingerprintBucket is the JetStream KV bucket holding an HMAC-SHA256 of
// every active key version, so other services can find an exact leak of a
// stored key without holding it. See [Fingerprint].
const FingerprintBucket = "NODEX_KEY_FINGERPRINTS"

// Secret is a key value in a request. It prints, logs and marshals as
// "[REDACTED]"; decoding a JSON string sets it.
type Secret = domain.Secret

// NewSecret returns a Secret holding a copy of value.
func NewSecret(value []byte) Secret { return domain.NewSecret(value) }

// Plaintext is a secret in a reply. Unlike [Secret] it marshals to its
// value, because the reply must carry it; printing and logging redact it.
type Plaintext string

// LogValue implements [slog.LogValuer].
func (Plaintext) LogValue() slog.Value { return slog.StringValue(domain.Redacted) }

// String implements [fmt.Stringer].
func (Plaintext) String() string { return domain.Redacted }

// GoString implements [fmt.GoStringer].
func (Plaintext) GoString() string { return domain.Redacted }

// Format implements [fmt.Formatter], so every verb redacts.
func (Plaintext) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(domain.Redacted)) }

// StoreRequest stores the first version of a new key.
type StoreRequest struct {
	Provider string            `json:"provider"`
	Name     string            `json:"name"`
	Value    Secret            `json:"value"`
	Labels   map[string]string `json:"labels,omitempty"`
}

// StoreReply names the version that a store or rotate created.
type StoreReply struct {
	Name     string    `json:"name"`
	Provider string    `json:"provider"`
	Version  int       `json:"version"`
	Created  time.Time `json:"created"`
}

// RetrieveRequest requests a key value. Version 0 means the latest active
// version. Purpose is free text passed to the policy and the audit event.
type RetrieveRequest struct {
	Name    string `json:"name"`
	Version int    `json:"version,omitempty"`
	Purpose string `json:"purpose,omitempty"`
}

// RetrieveReply carries a key value inside the reply envelope.
type RetrieveReply struct {
	Name     string    `json:"name"`
	Provider string    `json:"provider"`
	Version  int       `json:"version"`
	Value    Plaintext `json:"value"`
}

// LogValue implements [slog.LogValuer] without the value.
func (r RetrieveReply) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", r.Name), slog.String("provider", r.Provider),
		slog.Int("version", r.Version))
}

// RotateRequest stores a new version of an existing key. The previous
// active version stays retrievable for the service's grace period.
type RotateRequest struct {
	Name  string `json:"name"`
	Value Secret `json:"value"`
}

// ListRequest lists keys, all of them or those of one provider.
type ListRequest struct {
	Provider string `json:"provider,omitempty"`
}

// ListReply lists key metadata; it never carries values.
type ListReply struct {
	Keys []KeyInfo `json:"keys"`
}

// KeyInfo is a key's metadata.
type KeyInfo struct {
	Name     string            `json:"name"`
	Provider string            `json:"provider"`
	Labels   map[string]string `json:"labels,omitempty"`
	Created  time.Time         `json:"created"`
	// LastUsed is the time of the last successful retrieve, zero if none.
	LastUsed time.Time     `json:"last_used,omitzero"`
	Versions []VersionInfo `json:"versions"`
}

// VersionInfo is one version's metadata.
type VersionInfo struct {
	Number int    `json:"number"`
	State  string `json:"state"`
	// RetireAt is set for versions in their grace period.
	RetireAt   time.Time `json:"retire_at,omitzero"`
	Created    time.Time `json:"created"`
	KEKVersion int       `json:"kek_version,omitempty"`
}

// DeleteRequest destroys a key and every version's data key.
type DeleteRequest struct {
	Name string `json:"name"`
}

// DeleteReply reports how many versions were destroyed.
type DeleteReply struct {
	Name              string `json:"name"`
	VersionsDestroyed int    `json:"versions_destroyed"`
}

// RotateKEKRequest adds a key encryption key version when the keyring can
// be written, then re-wraps every data key under the newest version.
type RotateKEKRequest struct{}

// RotateKEKReply reports the KEK version now in use and the work done.
type RotateKEKReply struct {
	KEKVersion int `json:"kek_version"`
	Rewrapped  int `json:"rewrapped"`
	Keys       int `json:"keys"`
}

// DisableRequest stops retrieval of one version (Version > 0) or of every
// retrievable version of a key (Version 0), keeping the sealed data for
// investigation. Incident containment sends it for a leaked key.
type DisableRequest struct {
	Name    string `json:"name"`
	Version int    `json:"version,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// DisableReply lists the versions now disabled.
type DisableReply struct {
	Name     string `json:"name"`
	Disabled []int  `json:"disabled"`
}

// FingerprintKeyRequest requests the HMAC key of the fingerprint bucket.
type FingerprintKeyRequest struct{}

// FingerprintKeyReply carries the fingerprint HMAC key inside the reply
// envelope; Key is standard base64 of 32 bytes.
type FingerprintKeyReply struct {
	Algorithm string    `json:"algorithm"`
	Key       Plaintext `json:"key"`
}

// Fingerprint is one entry of [FingerprintBucket], stored under
// "fp.<name with '.' written as '='>.<version>". HMAC is lower-case hex of
// HMAC-SHA256(fingerprint key, value). A scanner HMACs each candidate token
// of Length bytes and compares.
type Fingerprint struct {
	Name     string `json:"name"`
	Provider string `json:"provider"`
	Version  int    `json:"version"`
	Length   int    `json:"length"`
	HMAC     string `json:"hmac"`
}
