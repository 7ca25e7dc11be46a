package authz

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nodexsec/nodex/libs/envelope"
)

// SignerRole is the role an identity must hold for engines to accept the
// policy bucket values it signs.
const SignerRole = "service:policy"

// signContext separates policy bucket signatures from every other Ed25519
// signature NodeX makes with the same keys.
const signContext = "nodex/v1/policy-kv\x00"

// ErrBadSignature wraps every reason a [Verifier] rejects a stored value for.
var ErrBadSignature = errors.New("authz: policy value signature invalid")

// Signer signs policy bucket values. identity.Keyring implements it.
type Signer interface {
	// ID returns the signing identity id.
	ID() string
	// SigningKey returns the current signing key and its version.
	SigningKey() (uint32, ed25519.PrivateKey)
}

// SignedValue is the stored form of a policy bucket value when the writer
// signs: the JSON payload, the bucket key it belongs to, when it was issued,
// and who signed it. Binding the key stops a hostile NATS server from
// moving a value to another key, and IssuedNS lets a watcher reject a replayed
// older value.
type SignedValue struct {
	Key        string          `json:"key"`
	IssuedNS   int64           `json:"issued_ns"`
	Signer     string          `json:"signer"`
	KeyVersion uint32          `json:"key_version"`
	Payload    json.RawMessage `json:"payload"`
	Signature  []byte          `json:"signature"`
}

// Sign returns the stored form of payload under key, signed by s.
func Sign(s Signer, key string, payload []byte, now time.Time) ([]byte, error) {
	version, priv := s.SigningKey()
	v := SignedValue{
		Key: key, IssuedNS: now.UnixNano(), Signer: s.ID(), KeyVersion: version,
		Payload: payload,
	}
	v.Signature = ed25519.Sign(priv, v.message())

	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding signed %s: %w", key, err)
	}

	return b, nil
}

// message is the signed byte string: context, key, issue time, signer, key
// version and the SHA-256 of the payload.
func (v *SignedValue) message() []byte {
	digest := sha256.Sum256(v.Payload)
	msg := make([]byte, 0, len(signContext)+len(v.Key)+len(v.Signer)+50)
	msg = append(msg, signContext...)
	msg = append(msg, v.Key...)
	msg = append(msg, 0)
	msg = binary.BigEndian.AppendUint64(msg, uint64(v.IssuedNS))
	msg = append(msg, v.Signer...)
	msg = append(msg, 0)
	msg = binary.BigEndian.AppendUint32(msg, v.KeyVersion)

	return append(msg, digest[:]...)
}

// Verifier checks that policy bucket values were signed by an active
// identity holding [SignerRole], with a signing key the registry lists and
// has not retired. It also rejects, per key, a value issued before the last
// one it accepted, so a replayed older value cannot roll the policy back
// while the process runs.
//
// NOTE: after a restart the first value seen is accepted if its signature
// is valid, so a hostile NATS server can still serve an older signed value
// to a freshly started engine. The order relies on the writers' clocks, so
// two policy replicas whose clocks differ by more than the time between two
// of their writes can see the later write rejected until the next one.
type Verifier struct {
	// Directory is the verified registry view, such as identity.Directory.
	Directory envelope.Directory

	mu     sync.Mutex
	issued map[string]int64
}

// Open verifies stored, the value of key, and returns its payload.
func (v *Verifier) Open(ctx context.Context, key string, stored []byte) ([]byte, error) {
	var sv SignedValue
	if err := json.Unmarshal(stored, &sv); err != nil || sv.Signer == "" {
		return nil, fmt.Errorf("%w: %s is not a signed value", ErrBadSignature, key)
	}
	if sv.Key != key {
		return nil, fmt.Errorf("%w: value signed for key %q found under %q",
			ErrBadSignature, sv.Key, key)
	}
	if err := v.checkSigner(ctx, &sv); err != nil {
		return nil, err
	}

	v.mu.Lock()
	defer v.mu.Unlock()
	if v.issued == nil {
		v.issued = map[string]int64{}
	}
	if last, ok := v.issued[key]; ok && sv.IssuedNS < last {
		return nil, fmt.Errorf("%w: %s issued at %d, before the accepted %d (replay?)",
			ErrBadSignature, key, sv.IssuedNS, last)
	}
	v.issued[key] = sv.IssuedNS

	return sv.Payload, nil
}

func (v *Verifier) checkSigner(ctx context.Context, sv *SignedValue) error {
	if err := v.Directory.Fresh(ctx); err != nil {
		return fmt.Errorf("%w: registry view not fresh: %w", ErrBadSignature, err)
	}
	party, err := v.Directory.Party(ctx, sv.Signer)
	if err != nil {
		return fmt.Errorf("%w: signer %q: %w", ErrBadSignature, sv.Signer, err)
	}
	if party.Status != envelope.StatusActive || !slices.Contains(party.Roles, SignerRole) {
		return fmt.Errorf("%w: signer %q has status %s and roles %v, want active with %s",
			ErrBadSignature, sv.Signer, party.Status, party.Roles, SignerRole)
	}

	sk, err := v.Directory.SigningKey(ctx, sv.Signer, sv.KeyVersion)
	if err != nil {
		return fmt.Errorf("%w: signer %q key %d: %w", ErrBadSignature, sv.Signer,
			sv.KeyVersion, err)
	}
	if sk.Retired || sk.Compromised {
		return fmt.Errorf("%w: signer %q key %d is retired or compromised", ErrBadSignature,
			sv.Signer, sv.KeyVersion)
	}
	if !ed25519.Verify(sk.Public, sv.message(), sv.Signature) {
		return fmt.Errorf("%w: signature of %q does not verify", ErrBadSignature, sv.Signer)
	}

	return nil
}

// Unwrap returns the payload of a stored value without verifying it: the
// payload of a [SignedValue], or stored itself when it is plain JSON. Only
// engines configured without a [Verifier] use it.
func Unwrap(stored []byte) []byte {
	var sv SignedValue
	if err := json.Unmarshal(stored, &sv); err == nil && sv.Signer != "" && sv.Payload != nil {
		return sv.Payload
	}

	return stored
}
