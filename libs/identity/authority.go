package identity

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// AuthorityWriter writes the records the delegated authority key may sign:
// heartbeats and status downgrades for automatic containment.
type AuthorityWriter struct {
	kv     jetstream.KeyValue
	signer Signer
	// Digest, if set, returns the registry digest each heartbeat signs,
	// normally the writer's own [View.Digest]. Without it, heartbeats prove
	// liveness only and cannot reveal withheld records.
	Digest func() []byte
	// Delegation, if set, returns the delegation readers trust, normally
	// the writer's own [View.Delegation]. [AuthorityWriter.RunHeartbeat]
	// then checks it with [CheckDelegation] and reports an error wrapping
	// ErrAuthorityExpiring or ErrNoAuthority, each at most once per
	// DelegationReportEvery. The heartbeat is written either way.
	Delegation func() (*Authority, error)
	// WarnBefore is how long before expiry the delegation check starts to
	// warn. Zero means DefaultWarnBefore.
	WarnBefore time.Duration
	// Standby makes RunHeartbeat safe to run in several processes on one
	// registry: one writes at a time, the others stand by and take over
	// once no new heartbeat arrived for TakeoverAfter. False means every
	// tick writes, so at most one writer may run per registry.
	Standby bool
	// TakeoverAfter is how long a standby writer waits without a new
	// heartbeat before it writes one. Zero means three heartbeat
	// intervals. The takeover interval plus one heartbeat interval must
	// stay below the readers' StaleAfter, or readers go stale during a
	// takeover. With the defaults that is 6 s + 2 s against 10 s.
	TakeoverAfter time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// DelegationReportEvery is the minimum interval between two reports of the
// same delegation problem by [AuthorityWriter.RunHeartbeat], so a warning
// that lasts days does not fill the log at every heartbeat.
const DelegationReportEvery = time.Hour

// DelegationGrace is how long [AuthorityWriter.RunHeartbeat] waits before
// it reports that its view holds no delegation at all. A broker starts its
// writer before `nodex dev` publishes the first delegation.
const DelegationGrace = time.Minute

// NewAuthorityWriter returns a writer signing with the authority key.
func NewAuthorityWriter(kv jetstream.KeyValue, authority Signer) *AuthorityWriter {
	if kv == nil || authority.Key == nil || authority.Name != SignerAuthority {
		panic("identity: NewAuthorityWriter needs a KV bucket and an authority signer")
	}

	return &AuthorityWriter{kv: kv, signer: authority}
}

func (w *AuthorityWriter) now() time.Time {
	if w.Now != nil {
		return w.Now().UTC()
	}

	return time.Now().UTC()
}

// Heartbeat writes one signed heartbeat, whatever other writer is
// running. Its version is the time in nanoseconds, so it rises without
// any stored counter.
func (w *AuthorityWriter) Heartbeat(ctx context.Context) error {
	e, _, err := w.heartbeatEntry(0)
	if err != nil {
		return err
	}
	if _, err := w.kv.Put(ctx, KeyHeartbeat, e.Marshal()); err != nil {
		return fmt.Errorf("writing heartbeat: %w", err)
	}

	return nil
}

// heartbeatEntry signs a heartbeat whose version is the time in
// nanoseconds, or minVersion if that is higher.
func (w *AuthorityWriter) heartbeatEntry(minVersion uint64) (Entry, uint64, error) {
	now := w.now()
	rec := &Record{Key: KeyHeartbeat, Version: max(uint64(now.UnixNano()), minVersion),
		IssuedAt: now}
	if w.Digest != nil {
		rec.Digest = w.Digest()
	}
	e, err := w.signer.Sign(rec)
	if err != nil {
		return Entry{}, 0, err
	}

	return e, rec.Version, nil
}

// RunHeartbeat writes a heartbeat every interval until ctx ends, or with
// Standby set, stands by while another writer holds the heartbeat lease.
// A failed write is passed to onError (which may be nil) and retried at
// the next tick. Readers go stale if failures last longer than their
// bound. With Delegation set, it also passes delegation problems to
// onError, rate limited to one report per DelegationReportEvery.
func (w *AuthorityWriter) RunHeartbeat(ctx context.Context, interval time.Duration,
	onError func(error),
) {
	if onError == nil {
		onError = func(error) {}
	}
	lease := &heartbeatLease{w: w, takeover: w.TakeoverAfter}
	if lease.takeover <= 0 {
		lease.takeover = 3 * interval
	}
	t := time.NewTicker(interval)
	defer t.Stop()

	var report delegationReport
	for {
		var err error
		if w.Standby {
			_, err = lease.tick(ctx)
		} else {
			err = w.Heartbeat(ctx)
		}
		if err != nil && ctx.Err() == nil {
			onError(err)
		}
		if err := report.due(w, w.now()); err != nil {
			onError(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// CheckDelegation checks the delegation returned by Delegation against the
// writer's key with [CheckDelegation]. It returns nil when Delegation is
// nil.
func (w *AuthorityWriter) CheckDelegation() error {
	if w.Delegation == nil {
		return nil
	}
	warn := w.WarnBefore
	if warn <= 0 {
		warn = DefaultWarnBefore
	}
	d, err := w.Delegation()
	if err != nil {
		return err
	}

	return CheckDelegation(d, w.signer.Public(), w.now(), warn)
}

// delegationReport rate-limits the delegation problems RunHeartbeat
// reports. Only the goroutine running RunHeartbeat uses it.
type delegationReport struct {
	reported, missingSince time.Time
	// kind is ErrAuthorityExpiring or ErrNoAuthority for the problem last
	// reported, nil once the delegation is fine again.
	kind error
}

// due checks w's delegation at now and returns the problem to report, or
// nil if there is none or it was reported less than DelegationReportEvery
// ago. An expiry that follows a warning is reported at once.
func (r *delegationReport) due(w *AuthorityWriter, now time.Time) error {
	err := w.CheckDelegation()
	if err != nil && w.delegationMissing() {
		if r.missingSince.IsZero() {
			r.missingSince = now
		}
		if now.Sub(r.missingSince) < DelegationGrace {
			err = nil
		}
	} else {
		r.missingSince = time.Time{}
	}
	if err == nil {
		r.kind = nil
		return nil
	}

	kind := ErrAuthorityExpiring
	if !errors.Is(err, kind) {
		kind = ErrNoAuthority
	}
	if kind == r.kind && now.Sub(r.reported) < DelegationReportEvery {
		return nil
	}
	r.reported, r.kind = now, kind

	return err
}

func (w *AuthorityWriter) delegationMissing() bool {
	if w.Delegation == nil {
		return false
	}
	_, err := w.Delegation()

	return err != nil
}

// Contain lowers the status of identity id to s (suspended or revoked)
// without the root key. Only a root-signed write can raise it again.
func (w *AuthorityWriter) Contain(ctx context.Context, id string, s Status) error {
	if s != StatusSuspended && s != StatusRevoked {
		return fmt.Errorf("containing %q: status %q is not a downgrade: use suspended or revoked",
			id, s)
	}
	key := IdentityKey(id)
	kve, err := w.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	if err != nil {
		return fmt.Errorf("reading registry key %q: %w", key, err)
	}
	cur, err := ParseEntry(kve.Value())
	if err != nil {
		return err
	}
	base, version, err := w.baseOf(key, cur)
	if err != nil {
		return err
	}
	rec := &Record{
		Key: key, Version: version + 1, IssuedAt: w.now(),
		Downgrade: &Downgrade{Status: s, Base: base},
	}
	e, err := w.signer.Sign(rec)
	if err != nil {
		return err
	}
	if _, err := w.kv.Update(ctx, key, e.Marshal(), kve.Revision()); err != nil {
		return fmt.Errorf("writing containment of %q: %w", id, err)
	}

	return nil
}

// baseOf returns the root-signed entry under a current entry and the
// current version. The signatures are checked by every reader, so a forged
// base only produces a record that readers reject.
func (w *AuthorityWriter) baseOf(key string, cur Entry) (Entry, uint64, error) {
	var rec Record
	if err := jsonUnmarshal(cur.Payload, &rec); err != nil {
		return Entry{}, 0, fmt.Errorf("%w: decoding %q: %w", ErrBadRecord, key, err)
	}
	if cur.Signer == SignerRoot {
		return cur, rec.Version, nil
	}
	if rec.Downgrade == nil {
		return Entry{}, 0, fmt.Errorf("%w: %q has no root-signed base", ErrBadRecord, key)
	}

	return rec.Downgrade.Base, rec.Version, nil
}
