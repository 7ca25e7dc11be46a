package envelope

import (
	"errors"
	"sync"
	"time"
)

// Rejection describes one rejected envelope for a security event. It
// deliberately has no sender field: the claimed sender of a rejected
// message is not authenticated, and even a correctly signed message can be
// replayed or misrouted by someone else.
type Rejection struct {
	Reason     error     // the sentinel from [Reasons]
	Err        error     // the full error, which never contains key material
	Subject    string    // the delivery subject
	Time       time.Time // when the receiver rejected it
	Suppressed uint64    // rejections not reported since the previous report
}

// rejectLimiter is a token bucket in front of the OnReject hook.
type rejectLimiter struct {
	mu         sync.Mutex
	hook       func(Rejection)
	now        func() time.Time
	rate       float64
	burst      float64
	tokens     float64
	last       time.Time
	suppressed uint64
}

func newRejectLimiter(hook func(Rejection), rate float64, now func() time.Time) *rejectLimiter {
	return &rejectLimiter{hook: hook, now: now, rate: rate, burst: 2 * rate, tokens: 2 * rate}
}

// report passes err to the hook unless the bucket is empty.
func (rl *rejectLimiter) report(subject string, err error) {
	if rl.hook == nil {
		return
	}
	r := Rejection{Reason: reasonOf(err), Err: err, Subject: subject, Time: rl.now()}
	rl.mu.Lock()
	if !rl.last.IsZero() {
		rl.tokens = min(rl.burst, rl.tokens+r.Time.Sub(rl.last).Seconds()*rl.rate)
	}
	rl.last = r.Time
	if rl.tokens < 1 {
		rl.suppressed++
		rl.mu.Unlock()
		return
	}
	rl.tokens--
	r.Suppressed, rl.suppressed = rl.suppressed, 0
	rl.mu.Unlock()

	rl.hook(r)
}

// reasonOf returns the sentinel err wraps, or err when it wraps none.
func reasonOf(err error) error {
	for _, reason := range Reasons {
		if errors.Is(err, reason) {
			return reason
		}
	}

	return err
}
