package app

import (
	"time"
)

// maxTrackedSources bounds the per-source buckets. Sources are identity ids
// from subjects that NATS permissions restrict, so the bound is generous.
// Past it, the buckets are reset rather than growing.
const maxTrackedSources = 10_000

// floodLimiter is a token bucket per event source, refilled by the time the
// stream stored each message rather than by the wall clock. So a backlog
// read after a restart is not mistaken for a flood, and a source that
// published faster than the rate is shed however fast the monitor reads.
type floodLimiter struct {
	rate    float64
	burst   float64
	buckets map[string]*bucket
}

type bucket struct {
	tokens   float64
	last     time.Time
	shed     int
	reported time.Time
}

func newFloodLimiter(ratePerSecond, burst int) *floodLimiter {
	return &floodLimiter{
		rate:    float64(ratePerSecond),
		burst:   float64(burst),
		buckets: make(map[string]*bucket),
	}
}

// allow reports whether one more message of source stored at may be
// processed, and counts it as shed if not.
func (l *floodLimiter) allow(source string, at time.Time) bool {
	b := l.buckets[source]
	if b == nil {
		if len(l.buckets) >= maxTrackedSources {
			clear(l.buckets)
		}
		b = &bucket{tokens: l.burst, last: at}
		l.buckets[source] = b
	}

	if elapsed := at.Sub(b.last).Seconds(); elapsed > 0 {
		b.tokens = min(l.burst, b.tokens+elapsed*l.rate)
		b.last = at
	}
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	b.shed++

	return false
}

// countShed counts one message of source shed elsewhere (the relay's
// per-reporter limit), so that it is reported with the others.
func (l *floodLimiter) countShed(source string, at time.Time) {
	b := l.buckets[source]
	if b == nil {
		if len(l.buckets) >= maxTrackedSources {
			clear(l.buckets)
		}
		b = &bucket{tokens: l.burst, last: at}
		l.buckets[source] = b
	}
	b.shed++
}

// takeReport returns the count shed from source since its last report, when
// a report is due (at most one per interval per source), and resets it.
func (l *floodLimiter) takeReport(source string, at time.Time, interval time.Duration) int {
	b := l.buckets[source]
	if b == nil || b.shed == 0 || at.Sub(b.reported) < interval {
		return 0
	}
	n := b.shed
	b.shed = 0
	b.reported = at

	return n
}

// dueReports returns, by source, the counts shed since the last report of
// every source whose report is due at at, and resets them.
func (l *floodLimiter) dueReports(at time.Time, interval time.Duration) map[string]int {
	var out map[string]int
	for source := range l.buckets {
		if n := l.takeReport(source, at, interval); n > 0 {
			if out == nil {
				out = make(map[string]int)
			}
			out[source] = n
		}
	}

	return out
}
