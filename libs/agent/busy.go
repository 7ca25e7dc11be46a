package agent

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/nodexsec/nodex/libs/errs"
)

// Defaults of [Backoff]. The first retry waits 50 to 100 ms, so the
// retries of several runs of one agent stay under the services'
// per-identity request limit (50 a second by default).
const (
	DefaultBusyInitialDelay = 100 * time.Millisecond
	DefaultBusyMaxDelay     = 2 * time.Second
)

// Backoff is the wait schedule of [Agent.Exec] for a run that the
// sandbox-runner rejected with sandbox_busy, because it was running and
// queueing as many runs as it admits. The n-th wait is drawn at random from
// [d/2, d), where d = InitialDelay·2^(n-1), at most MaxDelay. Zero fields
// take the defaults above.
type Backoff struct {
	InitialDelay time.Duration
	MaxDelay     time.Duration
}

func (b Backoff) withDefaults() Backoff {
	if b.InitialDelay <= 0 {
		b.InitialDelay = DefaultBusyInitialDelay
	}
	if b.MaxDelay <= 0 {
		b.MaxDelay = DefaultBusyMaxDelay
	}
	b.MaxDelay = max(b.MaxDelay, b.InitialDelay)

	return b
}

// BusyError is the error of [Agent.Exec] when the sandbox-runner kept
// rejecting the run with sandbox_busy until the caller's deadline left no
// time for another wait. errors.Is(err, errs.SandboxBusy) holds for it.
type BusyError struct {
	// Attempts is how many times the run was sent.
	Attempts int
	// Waited is the time from the first attempt to giving up.
	Waited time.Duration
	// Err is the last sandbox_busy reply.
	Err error
}

// Error names the attempts and the remedies.
func (e *BusyError) Error() string {
	return fmt.Sprintf("sandbox busy: %d attempts over %s found every slot and queue place "+
		"taken until the deadline; retry later, allow a longer deadline, or run more "+
		"sandbox-runner slots", e.Attempts, e.Waited.Round(time.Millisecond))
}

// Unwrap returns the last sandbox_busy reply.
func (e *BusyError) Unwrap() error { return e.Err }

// BusyStats counts how the agent met sandbox_busy since it opened.
type BusyStats struct {
	// Retries counts runs sent again after a sandbox_busy reply.
	Retries uint64
	// GiveUps counts runs that ended with a [BusyError].
	GiveUps uint64
}

// BusyStats returns the agent's sandbox_busy counters.
func (a *Agent) BusyStats() BusyStats {
	return BusyStats{Retries: a.busyRetries.Load(), GiveUps: a.busyGiveUps.Load()}
}

// retryBusy calls send until it returns anything but sandbox_busy, waiting
// with jittered exponential backoff in between, and returns the number of
// retries. It gives up with a [*BusyError] when ctx's deadline comes
// before the next attempt could start. Each retry is an event on the span
// of ctx.
func (a *Agent) retryBusy(ctx context.Context, send func() error) (int, error) {
	start := time.Now()
	delay := a.backoff.InitialDelay
	for attempt := 1; ; attempt++ {
		err := send()
		if !errors.Is(err, errs.SandboxBusy) {
			return attempt - 1, err
		}
		wait := delay/2 + rand.N(delay-delay/2)
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) <= wait {
			a.busyGiveUps.Add(1)
			return attempt - 1, &BusyError{Attempts: attempt, Waited: time.Since(start), Err: err}
		}
		a.busyRetries.Add(1)
		trace.SpanFromContext(ctx).AddEvent("sandbox_busy", trace.WithAttributes(
			attribute.Int("nodex.attempt", attempt), attribute.Int64("nodex.wait_ms",
				wait.Milliseconds())))
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			a.busyGiveUps.Add(1)
			return attempt - 1, &BusyError{Attempts: attempt, Waited: time.Since(start),
				Err: errors.Join(err, ctx.Err())}
		case <-timer.C:
		}
		delay = min(2*delay, a.backoff.MaxDelay)
	}
}
