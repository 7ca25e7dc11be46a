// Package ratelimit provides a token bucket per key, for limits such as a
// request rate per authenticated sender.
package ratelimit

import (
	"sync"
	"time"
)

// PerKey is a token bucket per key. When a new key arrives and max
// buckets exist, the buckets that have refilled are dropped, because a new
// bucket would grant the same. If none has refilled, the map grows past
// max. It is safe for concurrent use.
type PerKey struct {
	mu      sync.Mutex
	rate    float64 // tokens per second
	burst   float64
	max     int
	now     func() time.Time
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// New returns a PerKey that refills each key's bucket at rate tokens per
// second up to burst, and drops refilled buckets once it holds max. now is
// the clock; nil means time.Now.
func New(rate float64, burst, max int, now func() time.Time) *PerKey {
	if now == nil {
		now = time.Now
	}

	return &PerKey{rate: rate, burst: float64(burst), max: max, now: now,
		buckets: make(map[string]*bucket)}
}

// Allow takes one token from key's bucket and reports whether one was
// there.
func (l *PerKey) Allow(key string) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.max {
			l.evictFullLocked(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--

	return true
}

// evictFullLocked drops buckets that have refilled; l.mu must be held.
func (l *PerKey) evictFullLocked(now time.Time) {
	for id, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, id)
		}
	}
}
