package bus

import (
	"sync"
	"time"
)

// senderLimiter is a token bucket per authenticated sender.
type senderLimiter struct {
	mu      sync.Mutex
	rate    float64 // tokens per second
	burst   float64
	max     int // buckets kept; full buckets are dropped first when exceeded
	now     func() time.Time
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newSenderLimiter(rate float64, burst, max int, now func() time.Time) *senderLimiter {
	return &senderLimiter{rate: rate, burst: float64(burst), max: max, now: now,
		buckets: make(map[string]*bucket)}
}

// allow takes one token from sender's bucket and reports whether one was there.
func (l *senderLimiter) allow(sender string) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[sender]
	if !ok {
		if len(l.buckets) >= l.max {
			l.evictFullLocked(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[sender] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--

	return true
}

// evictFullLocked drops buckets that have refilled, which forget nothing a
// new bucket would not also grant; l.mu must be held.
func (l *senderLimiter) evictFullLocked(now time.Time) {
	for id, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, id)
		}
	}
}
