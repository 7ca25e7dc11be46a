package envelope

import (
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"errors"
)

// Identity statuses as the registry records them. Only [StatusActive] may send.
const (
	StatusActive    = "active"
	StatusSuspended = "suspended"
	StatusRevoked   = "revoked"
)

// Errors a [Directory] or [Keys] implementation returns, so the open path can
// map them to its ordered rejection reasons.
var (
	// ErrNotFound reports an identity, key version, role or wrap that does not exist.
	ErrNotFound = errors.New("envelope: not found")
	// ErrStale reports a registry view older than its staleness bound. Every
	// seal and open fails closed while it holds.
	ErrStale = errors.New("envelope: registry view is stale")
)

// Party is the part of an identity's registry record that the envelope
// layer needs: its id, kind, status and roles.
type Party struct {
	ID     string   // identity id, as in the header's sender field
	Kind   string   // "service", "agent" or "operator"
	Status string   // StatusActive, StatusSuspended or StatusRevoked
	Roles  []string // e.g. "service:codesec"
}

// SigningKey is one version of an identity's Ed25519 envelope signing key.
// Retired and compromised keys stay in the registry so that the open path can
// name the reason it rejects them.
type SigningKey struct {
	Version uint32
	Public  ed25519.PublicKey
	// Retired is set once the rotation overlap window has passed: a retired
	// key verifies nothing.
	Retired bool
	// Compromised is set when the key was revoked because it leaked. Request
	// and reply messages signed by it are rejected at once; stream messages
	// are accepted only when their stream sequence is below RevokedAtSeq.
	Compromised bool
	// RevokedAtSeq is the first stream sequence, per stream, at which a
	// compromised key stops being accepted. A stream missing from the map
	// accepts nothing signed by a compromised key.
	RevokedAtSeq map[string]uint64
}

// RecipientKey is an identity's current HPKE public key (suite
// MLKEM768-X25519, HKDF-SHA256, AES-256-GCM) and its version.
type RecipientKey struct {
	ID      string
	Version uint32
	Public  hpke.PublicKey
}

// RoleEpoch is the current epoch of a role key: messages encrypted to the
// role are wrapped to Public, which every member can open.
type RoleEpoch struct {
	Role    string
	Epoch   uint32
	Public  hpke.PublicKey
	Members []string // identity ids holding the role in this epoch
}

// Directory is the envelope layer's read-only view of the identity registry.
// Every record it returns must have been verified against the operator root
// key. Implementations must be safe for concurrent use and cheap to call:
// the open and seal paths call them for every message, so they serve from a
// watched in-memory copy of the registry.
type Directory interface {
	// Party returns the identity id, or ErrNotFound.
	Party(ctx context.Context, id string) (Party, error)
	// SigningKey returns version of id's envelope signing key, or ErrNotFound.
	SigningKey(ctx context.Context, id string, version uint32) (SigningKey, error)
	// RecipientKey returns id's current HPKE public key, or ErrNotFound.
	RecipientKey(ctx context.Context, id string) (RecipientKey, error)
	// RoleEpoch returns the current epoch of role, or ErrNotFound.
	RoleEpoch(ctx context.Context, role string) (RoleEpoch, error)
	// Fresh returns nil while the registry view is within its staleness bound
	// (the signed heartbeat is recent enough), and an error wrapping ErrStale
	// otherwise.
	Fresh(ctx context.Context) error
}

// Keys is the local party's private key material. Implementations must be
// safe for concurrent use. The Ed25519 key returned by SigningKey must never
// be the key that signs the NATS connection challenge.
type Keys interface {
	// ID returns the local identity id.
	ID() string
	// SigningKey returns the current envelope signing key and its version.
	SigningKey() (version uint32, key ed25519.PrivateKey)
	// HPKEKey returns the local HPKE private key of version, or ErrNotFound.
	HPKEKey(version uint32) (hpke.PrivateKey, error)
	// RoleKey returns the private key of role at epoch, or ErrNotFound when
	// the local party was never a member in that epoch.
	RoleKey(role string, epoch uint32) (hpke.PrivateKey, error)
}

// WrapKey names one wrap record: the content key of epoch KID drawn by
// Sender, wrapped to Recipient.
type WrapKey struct {
	Sender    string    // identity id of the sender that drew the content key
	KID       [32]byte  // key commitment: SHA-256("nodex/v1/kc" || K)
	Recipient Recipient // the identity or role epoch the key is wrapped to
}

// WrapStore stores wrap records. The store is not trusted: the open path
// checks every wrap it reads (HPKE open with bound info, then the key
// commitment), so a store can only withhold or swap records, never forge one.
type WrapStore interface {
	// Create stores wrap under key if no record exists there yet, and returns
	// after the store acknowledged the write. It returns an error wrapping
	// ErrWrapExists when a record is already present.
	Create(ctx context.Context, key WrapKey, wrap []byte) error
	// Get returns the wrap stored under key, or an error wrapping ErrNotFound.
	Get(ctx context.Context, key WrapKey) ([]byte, error)
}

// ErrWrapExists reports a create-only wrap write to a key that already holds a record.
var ErrWrapExists = errors.New("envelope: wrap record already exists")
