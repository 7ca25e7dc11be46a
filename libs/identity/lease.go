package identity

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// heartbeatLease lets several writers share one registry, as the nodes of
// a broker cluster do. The heartbeat key is the lease: a writer writes only
// with a compare-and-set on the revision it last saw, and stands by while
// another writer's heartbeats keep arriving. A standby takes over once it
// has seen no new revision for takeover. Only the goroutine running
// [AuthorityWriter.RunHeartbeat] uses it.
type heartbeatLease struct {
	w        *AuthorityWriter
	takeover time.Duration

	seenRev uint64
	// seenAt is when seenRev was first read, on the local monotonic clock,
	// so that the takeover never depends on clock agreement between hosts.
	seenAt   time.Time
	wroteRev uint64
	// maxVersion is the highest heartbeat version signed by this writer's
	// key that it has read. A new writer signs above it even if its clock
	// lags the previous writer's, since readers reject a lower version.
	maxVersion uint64
}

// tick writes a heartbeat if this writer holds the lease or the lease has
// lapsed. It reports whether it wrote one.
func (l *heartbeatLease) tick(ctx context.Context) (bool, error) {
	rev, err := l.read(ctx)
	if err != nil {
		return false, err
	}
	now := time.Now()
	if rev != l.seenRev || l.seenAt.IsZero() {
		l.seenRev, l.seenAt = rev, now
	}
	held := rev != 0 && rev == l.wroteRev
	if rev != 0 && !held && now.Sub(l.seenAt) < l.takeover {
		return false, nil
	}

	e, version, err := l.w.heartbeatEntry(l.maxVersion + 1)
	if err != nil {
		return false, err
	}
	var newRev uint64
	if rev == 0 {
		newRev, err = l.w.kv.Create(ctx, KeyHeartbeat, e.Marshal())
	} else {
		newRev, err = l.w.kv.Update(ctx, KeyHeartbeat, e.Marshal(), rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		// Another writer won the lease in the meantime.
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("writing heartbeat: %w", err)
	}
	l.wroteRev, l.seenRev, l.seenAt, l.maxVersion = newRev, newRev, now, version

	return true, nil
}

// read returns the current revision of the heartbeat key, 0 if it is
// missing, and raises maxVersion from its record.
func (l *heartbeatLease) read(ctx context.Context) (uint64, error) {
	kve, err := l.w.kv.Get(ctx, KeyHeartbeat)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading heartbeat: %w", err)
	}
	if v, ok := l.w.ownVersion(kve.Value()); ok && v > l.maxVersion {
		l.maxVersion = v
	}

	return kve.Revision(), nil
}

// ownVersion returns the version of a heartbeat value signed by this
// writer's key. A value signed by any other key is ignored, so a hostile
// server cannot push the versions this writer signs up to the maximum.
func (w *AuthorityWriter) ownVersion(value []byte) (uint64, bool) {
	e, err := ParseEntry(value)
	if err != nil ||
		!ed25519.Verify(w.signer.Public(), append([]byte(recordContext), e.Payload...), e.Sig) {
		return 0, false
	}
	var rec Record
	if err := json.Unmarshal(e.Payload, &rec); err != nil || rec.Key != KeyHeartbeat {
		return 0, false
	}

	return rec.Version, true
}
