package bus

import (
	"context"
	"fmt"
	"time"
)

// MissRetry reads again a key that is not found yet. JetStream serves
// direct gets from any replica, and a follower can lag the acknowledgement
// a writer waited for by a few milliseconds (more on a loaded host). So a
// reader that learned of a key from that writer may miss it at first.
// Reads wait with a growing pause for up to a miss wait, and at most a
// fixed number of reads wait at once, so that requests naming keys that
// do not exist cannot hold every handler slot of a service. Past that
// bound a miss is reported at once. It is safe for concurrent use.
type MissRetry struct {
	wait    time.Duration
	waiting chan struct{} // one token per read that is waiting
}

// NewMissRetry returns a MissRetry that waits up to wait (zero or less
// means no retry) with at most maxWaiting reads waiting at once.
func NewMissRetry(wait time.Duration, maxWaiting int) *MissRetry {
	return &MissRetry{wait: wait, waiting: make(chan struct{}, maxWaiting)}
}

// Do calls read until it returns nil or an error for which missing is
// false, the miss wait has passed, ctx ends, or too many reads are
// waiting. It returns read's last error, wrapped with the count of
// waiting reads when the bound stopped it.
func (m *MissRetry) Do(ctx context.Context, read func() error, missing func(error) bool) error {
	deadline := time.Now().Add(m.wait)
	pause := 10 * time.Millisecond
	holding := false
	defer func() {
		if holding {
			<-m.waiting
		}
	}()
	for {
		err := read()
		if err == nil || !missing(err) || !time.Now().Add(pause).Before(deadline) {
			return err
		}
		if !holding {
			select {
			case m.waiting <- struct{}{}:
				holding = true
			default:
				return fmt.Errorf("%w (%d other reads already waiting)", err, cap(m.waiting))
			}
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
		pause = min(2*pause, 200*time.Millisecond)
	}
}
