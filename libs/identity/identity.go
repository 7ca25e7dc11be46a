// Package identity holds NodeX identities: their public records in a
// registry signed by the operator root key, their private keys in
// credentials files, and a verified, watched view of the registry.
//
// An identity has three kinds of keys with separate jobs: Ed25519 keys sign
// envelopes, HPKE (MLKEM768-X25519) keys receive content keys, and a NATS
// nkey signs only the NATS server's connection nonce. A hostile NATS server
// chooses that nonce, so it must never be signed with an envelope key.
package identity

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Kind is the type of party an identity belongs to.
type Kind string

// The kinds of identity.
const (
	KindService  Kind = "service"
	KindAgent    Kind = "agent"
	KindOperator Kind = "operator"
)

// Status is the lifecycle state of an identity. Only an active identity may
// connect to NATS or send messages.
type Status string

// The statuses, from least to most restrictive.
const (
	StatusActive    Status = "active"
	StatusSuspended Status = "suspended"
	StatusRevoked   Status = "revoked"
)

// rank orders statuses by restriction, so that a downgrade is a rise in rank.
func (s Status) rank() int {
	switch s {
	case StatusActive:
		return 0
	case StatusSuspended:
		return 1
	case StatusRevoked:
		return 2
	}

	return -1
}

// Role names used by NodeX itself. Service roles are "service:" plus the
// service's subject token; key readers are "key-reader:" plus a provider.
const (
	RoleAgent    = "agent"
	RoleOperator = "operator"
)

// ServiceRole returns the role of the service whose subject token is svc,
// for example "service:codesec".
func ServiceRole(svc string) string { return "service:" + svc }

// Services lists the subject tokens of the six NodeX services, each of which
// gets an identity with the same id.
var Services = []string{"codesec", "sandbox", "keyvault", "policy", "monitor", "incident"}

// Errors that callers branch on.
var (
	ErrInvalidID      = errors.New("identity: invalid identity id")
	ErrInvalidRole    = errors.New("identity: invalid role")
	ErrNotFound       = errors.New("identity: identity not found")
	ErrExists         = errors.New("identity: identity already exists")
	ErrNotActive      = errors.New("identity: identity not active")
	ErrUnknownKey     = errors.New("identity: unknown key version")
	ErrKeyRetired     = errors.New("identity: key version retired")
	ErrKeyCompromised = errors.New("identity: key version revoked as compromised")
)

var (
	idPattern   = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
	rolePattern = regexp.MustCompile(`^[a-z][a-z0-9-]*(:[a-z0-9][a-z0-9_-]*)?$`)
)

// ReservedIDPrefix starts the names of the broker's own NATS users
// (nodex-admin, nodex-auth, nodex-sys). The broker distinguishes those
// users from registry identities by name, so no identity may carry the
// prefix.
const ReservedIDPrefix = "nodex-"

// ValidateID checks that id is a lowercase token: a letter, then up to 62
// letters, digits or dashes, not starting with [ReservedIDPrefix]. Ids
// appear in NATS subjects and KV keys, so dots, wildcards and upper case
// are rejected.
func ValidateID(id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("%w: %q must match %s", ErrInvalidID, id, idPattern)
	}
	if strings.HasPrefix(id, ReservedIDPrefix) {
		return fmt.Errorf("%w: %q starts with %q, which is reserved for the broker's own "+
			"users; choose another id", ErrInvalidID, id, ReservedIDPrefix)
	}

	return nil
}

// ValidateRole checks that role is "name" or "name:qualifier" in lowercase
// letters, digits, dashes and underscores.
func ValidateRole(role string) error {
	if len(role) > 128 || !rolePattern.MatchString(role) {
		return fmt.Errorf("%w: %q must match %s", ErrInvalidRole, role, rolePattern)
	}

	return nil
}

// PublicKey is one version of a public key of an identity.
type PublicKey struct {
	// Version rises by one with every rotation, starting at 1.
	Version int `json:"version"`
	// Key is the raw public key: 32 bytes for Ed25519, the serialized HPKE
	// public key for MLKEM768-X25519.
	Key []byte `json:"key"`
	// NotAfter is when a rotated-out key stops being accepted. The zero time
	// means the key is current.
	NotAfter time.Time `json:"not_after,omitzero"`
	// Compromise is set when the key was revoked as compromised.
	Compromise *Compromise `json:"compromise,omitempty"`
}

// Compromise records the revocation of a compromised key, which takes effect
// at once with no overlap.
type Compromise struct {
	// At is when the key was revoked.
	At time.Time `json:"at"`
	// StreamSeqs maps each JetStream stream name to its last sequence at
	// revocation: stream messages signed by the key are accepted only at or
	// below that sequence.
	StreamSeqs map[string]uint64 `json:"stream_seqs,omitempty"`
}

// Identity is the public record of a party, as the registry stores it.
type Identity struct {
	ID     string   `json:"id"`
	Kind   Kind     `json:"kind"`
	Roles  []string `json:"roles"`
	Status Status   `json:"status"`
	// Created is when the identity was issued; Rotated is its last key
	// rotation (zero if never rotated).
	Created time.Time `json:"created"`
	Rotated time.Time `json:"rotated,omitzero"`
	// NATSKey is the public user nkey ("U...") that signs the NATS
	// connection nonce.
	NATSKey string `json:"nats_key"`
	// SigningKeys are the Ed25519 envelope signing keys, oldest first.
	SigningKeys []PublicKey `json:"signing_keys"`
	// HPKEKeys are the MLKEM768-X25519 encryption keys, oldest first.
	HPKEKeys []PublicKey `json:"hpke_keys"`
}

// HasRole reports whether the identity holds role.
func (id *Identity) HasRole(role string) bool { return slices.Contains(id.Roles, role) }

// Active reports whether the identity may connect and send.
func (id *Identity) Active() bool { return id.Status == StatusActive }

// SigningKey returns signing key version v if it is usable at time now: it
// exists, is not compromised and has not passed its NotAfter.
func (id *Identity) SigningKey(v int, now time.Time) (PublicKey, error) {
	return usableKey(id.SigningKeys, v, now)
}

// HPKEKey returns HPKE key version v if it is usable at time now.
func (id *Identity) HPKEKey(v int, now time.Time) (PublicKey, error) {
	return usableKey(id.HPKEKeys, v, now)
}

// CurrentHPKEKey returns the newest HPKE key, the one senders encrypt to.
func (id *Identity) CurrentHPKEKey() (PublicKey, error) {
	if len(id.HPKEKeys) == 0 {
		return PublicKey{}, fmt.Errorf("%w: %q has no HPKE key", ErrUnknownKey, id.ID)
	}

	return id.HPKEKeys[len(id.HPKEKeys)-1], nil
}

func usableKey(keys []PublicKey, v int, now time.Time) (PublicKey, error) {
	for _, k := range keys {
		if k.Version != v {
			continue
		}
		if k.Compromise != nil {
			return k, fmt.Errorf("%w: version %d", ErrKeyCompromised, v)
		}
		if !k.NotAfter.IsZero() && !now.Before(k.NotAfter) {
			return k, fmt.Errorf("%w: version %d after %s", ErrKeyRetired, v, k.NotAfter)
		}

		return k, nil
	}

	return PublicKey{}, fmt.Errorf("%w: version %d", ErrUnknownKey, v)
}

// Validate checks the fields of a record before it is signed or after it is
// read.
func (id *Identity) Validate() error {
	if err := ValidateID(id.ID); err != nil {
		return err
	}
	switch id.Kind {
	case KindService, KindAgent, KindOperator:
	default:
		return fmt.Errorf("identity %q: invalid kind %q: use service, agent or operator",
			id.ID, id.Kind)
	}
	if id.Status.rank() < 0 {
		return fmt.Errorf("identity %q: invalid status %q", id.ID, id.Status)
	}
	for _, r := range id.Roles {
		if err := ValidateRole(r); err != nil {
			return fmt.Errorf("identity %q: %w", id.ID, err)
		}
	}
	if len(id.SigningKeys) == 0 || len(id.HPKEKeys) == 0 || id.NATSKey == "" {
		return fmt.Errorf("identity %q: missing public keys", id.ID)
	}

	return nil
}
