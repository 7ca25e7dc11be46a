package app

import (
	"sync"
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
	b := l.bucket(source, at)
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

// countShed counts n messages of source shed elsewhere (the relay's
// per-reporter limit), so that they are reported with the others.
func (l *floodLimiter) countShed(source string, at time.Time, n int) {
	l.bucket(source, at).shed += n
}

// bucket returns source's bucket, created full at at when it has none.
func (l *floodLimiter) bucket(source string, at time.Time) *bucket {
	b := l.buckets[source]
	if b == nil {
		if len(l.buckets) >= maxTrackedSources {
			clear(l.buckets)
		}
		b = &bucket{tokens: l.burst, last: at}
		l.buckets[source] = b
	}

	return b
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

// relayShedCounts collects the reports the relay rejected, by source, under
// its own lock. Past maxTrackedSources sources, further ones are counted
// under overflowSource, so no rejection goes uncounted.
type relayShedCounts struct {
	mu     sync.Mutex
	counts map[string]*relayShed
}

type relayShed struct {
	count int
	at    time.Time
}

// overflowSource collects rejected reports past maxTrackedSources sources.
const overflowSource = "relay_overflow"

func (r *relayShedCounts) add(source string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.counts == nil {
		r.counts = make(map[string]*relayShed)
	}
	c := r.counts[source]
	if c == nil {
		if len(r.counts) >= maxTrackedSources {
			source = overflowSource
			c = r.counts[source]
		}
		if c == nil {
			c = &relayShed{}
			r.counts[source] = c
		}
	}
	c.count++
	c.at = at
}

// drain returns the counts collected since the last drain and resets them.
func (r *relayShedCounts) drain() map[string]relayShed {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]relayShed, len(r.counts))
	for source, c := range r.counts {
		out[source] = *c
	}
	clear(r.counts)

	return out
}
