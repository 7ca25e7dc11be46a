package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Signer names used in registry entries.
const (
	SignerRoot      = "root"
	SignerAuthority = "authority"
)

// Registry keys that are not identities or roles.
const (
	KeyAuthority = "authority"
	KeyHeartbeat = "heartbeat"
)

// recordContext prefixes every signed registry payload, so a registry
// signature can never be replayed as an envelope or nonce signature.
const recordContext = "nodex/v1/registry\x00"

// Errors returned when a registry entry fails verification.
var (
	ErrBadSignature = errors.New("identity: bad registry signature")
	ErrBadRecord    = errors.New("identity: invalid registry record")
	ErrRollback     = errors.New("identity: registry record version did not rise")
	ErrNoAuthority  = errors.New("identity: no valid authority delegation")
	ErrStale        = errors.New("identity: registry view is stale")
)

// IdentityKey returns the registry key of identity id.
func IdentityKey(id string) string { return "id." + id }

// RoleKey returns the registry key of role's epoch record. KV keys cannot
// contain ':', so it becomes '='.
func RoleKey(role string) string { return "role." + strings.ReplaceAll(role, ":", "=") }

// Entry is a signed registry record as the KV bucket stores it. The payload
// is kept as the exact signed bytes and never re-encoded.
type Entry struct {
	Signer  string `json:"signer"`
	Payload []byte `json:"payload"`
	Sig     []byte `json:"sig"`
}

// Record is the signed content of a registry entry. Exactly one of its
// optional body fields is set, except for heartbeats, which carry at most
// a digest.
type Record struct {
	// Key is the KV key the record belongs to; a record read under another
	// key is rejected, so the server cannot move records around.
	Key string `json:"key"`
	// Version rises with every write of Key; readers reject a lower or
	// equal version than one they have seen.
	Version  uint64    `json:"version"`
	IssuedAt time.Time `json:"issued_at"`

	// Digest is set on heartbeats only: the writer's [View.Digest].
	Digest []byte `json:"digest,omitempty"`

	Identity  *Identity  `json:"identity,omitempty"`
	Role      *RoleEpoch `json:"role,omitempty"`
	Authority *Authority `json:"authority,omitempty"`
	Downgrade *Downgrade `json:"downgrade,omitempty"`
}

// Authority is the root's delegation of a narrow signing key that may sign
// heartbeats and status downgrades (suspend, revoke) but nothing else, so
// the root key can stay offline with the operator while automatic
// containment still works.
type Authority struct {
	Key      ed25519.PublicKey `json:"key"`
	NotAfter time.Time         `json:"not_after"`
}

// Downgrade is an authority-signed status change. It embeds the
// root-signed identity entry it applies to, so a reader can verify it with
// no history, and it may only make the status more restrictive.
type Downgrade struct {
	Status Status `json:"status"`
	Base   Entry  `json:"base"`
}

// Signer signs registry records with one Ed25519 key.
type Signer struct {
	// Name is SignerRoot or SignerAuthority.
	Name string
	Key  ed25519.PrivateKey
}

// NewSigner generates a fresh key for a signer named name.
func NewSigner(name string) (Signer, error) {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Signer{}, fmt.Errorf("generating %s key: %w", name, err)
	}

	return Signer{Name: name, Key: k}, nil
}

// Public returns the signer's public key.
func (s Signer) Public() ed25519.PublicKey { return s.Key.Public().(ed25519.PublicKey) }

// Sign encodes rec and signs it.
func (s Signer) Sign(rec *Record) (Entry, error) {
	payload, err := json.Marshal(rec)
	if err != nil {
		return Entry{}, fmt.Errorf("encoding record %q: %w", rec.Key, err)
	}
	sig := ed25519.Sign(s.Key, append([]byte(recordContext), payload...))

	return Entry{Signer: s.Name, Payload: payload, Sig: sig}, nil
}

// Marshal encodes an entry as the KV value.
func (e Entry) Marshal() []byte {
	// json.Marshal fails only on unsupported types or values, and Entry
	// holds only a string and byte slices.
	b, _ := json.Marshal(e)

	return b
}

// ParseEntry decodes a KV value into an entry.
func ParseEntry(value []byte) (Entry, error) {
	var e Entry
	if err := json.Unmarshal(value, &e); err != nil {
		return Entry{}, fmt.Errorf("%w: decoding entry: %w", ErrBadRecord, err)
	}

	return e, nil
}

// Verifier checks registry entries against the pinned root key and the
// authority key the root delegated. It is not safe for concurrent use.
type Verifier struct {
	Root      ed25519.PublicKey
	authority *Authority
}

// SetAuthority verifies an authority entry signed by the root and, if valid,
// trusts its key from now on.
func (v *Verifier) SetAuthority(e Entry) (*Record, error) {
	rec, err := v.verifySigned(KeyAuthority, e, v.Root)
	if err != nil {
		return nil, err
	}
	if e.Signer != SignerRoot || rec.Authority == nil ||
		len(rec.Authority.Key) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: authority record must be root-signed", ErrBadRecord)
	}
	v.authority = rec.Authority

	return rec, nil
}

// Open verifies entry e read under KV key and returns its effective record:
// for a downgrade, the base identity with the lowered status. The caller
// checks version order.
func (v *Verifier) Open(key string, e Entry, now time.Time) (*Record, error) {
	switch e.Signer {
	case SignerRoot:
		rec, err := v.verifySigned(key, e, v.Root)
		if err != nil {
			return nil, err
		}
		if rec.Downgrade != nil {
			return nil, fmt.Errorf("%w: root records carry no downgrade", ErrBadRecord)
		}

		return rec, checkRecord(rec)
	case SignerAuthority:
		return v.openAuthority(key, e, now)
	}

	return nil, fmt.Errorf("%w: unknown signer %q", ErrBadRecord, e.Signer)
}

func (v *Verifier) openAuthority(key string, e Entry, now time.Time) (*Record, error) {
	if v.authority == nil || !now.Before(v.authority.NotAfter) {
		return nil, ErrNoAuthority
	}
	rec, err := v.verifySigned(key, e, v.authority.Key)
	if err != nil {
		return nil, err
	}
	if key == KeyHeartbeat {
		if rec.Identity != nil || rec.Role != nil || rec.Authority != nil || rec.Downgrade != nil {
			return nil, fmt.Errorf("%w: heartbeat carries a body", ErrBadRecord)
		}

		return rec, nil
	}
	d := rec.Downgrade
	if d == nil || rec.Identity != nil || rec.Role != nil || rec.Authority != nil {
		return nil, fmt.Errorf("%w: authority may sign only heartbeats and downgrades",
			ErrBadRecord)
	}
	base, err := v.verifySigned(key, d.Base, v.Root)
	if err != nil || d.Base.Signer != SignerRoot || base.Identity == nil {
		return nil, fmt.Errorf("%w: downgrade base is not a root-signed identity", ErrBadRecord)
	}
	if d.Status.rank() <= base.Identity.Status.rank() || rec.Version <= base.Version {
		return nil, fmt.Errorf("%w: downgrade must restrict status and raise version",
			ErrBadRecord)
	}
	ident := *base.Identity
	ident.Status = d.Status

	return &Record{Key: key, Version: rec.Version, IssuedAt: rec.IssuedAt, Identity: &ident}, nil
}

func (v *Verifier) verifySigned(key string, e Entry, pub ed25519.PublicKey) (*Record, error) {
	if !ed25519.Verify(pub, append([]byte(recordContext), e.Payload...), e.Sig) {
		return nil, fmt.Errorf("%w: key %q", ErrBadSignature, key)
	}
	var rec Record
	if err := json.Unmarshal(e.Payload, &rec); err != nil {
		return nil, fmt.Errorf("%w: decoding %q: %w", ErrBadRecord, key, err)
	}
	if rec.Key != key {
		return nil, fmt.Errorf("%w: record for %q read under %q", ErrBadRecord, rec.Key, key)
	}

	return &rec, nil
}

// checkRecord checks that a root record's body matches its key.
func checkRecord(rec *Record) error {
	switch {
	case rec.Key == KeyAuthority:
		if rec.Authority == nil {
			return fmt.Errorf("%w: authority key without authority", ErrBadRecord)
		}
	case strings.HasPrefix(rec.Key, "id."):
		if rec.Identity == nil || IdentityKey(rec.Identity.ID) != rec.Key {
			return fmt.Errorf("%w: %q does not hold its identity", ErrBadRecord, rec.Key)
		}

		return rec.Identity.Validate()
	case strings.HasPrefix(rec.Key, "role."):
		if rec.Role == nil || RoleKey(rec.Role.Role) != rec.Key {
			return fmt.Errorf("%w: %q does not hold its role epoch", ErrBadRecord, rec.Key)
		}
	case rec.Key == KeyHeartbeat:
	default:
		return fmt.Errorf("%w: unknown key %q", ErrBadRecord, rec.Key)
	}

	return nil
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
