package ratelimit

import (
	"testing"
	"time"
)

func TestPerKeyBurstAndRefill(t *testing.T) {
	now := time.Unix(0, 0)
	l := New(2, 3, 10, func() time.Time { return now })
	for i := range 3 {
		if !l.Allow("a") {
			t.Fatalf("request %d within the burst was refused", i)
		}
	}
	if l.Allow("a") {
		t.Error("request past the burst was allowed")
	}
	if !l.Allow("b") {
		t.Error("another key shares a's bucket")
	}
	now = now.Add(500 * time.Millisecond) // one token at 2 per second
	if !l.Allow("a") {
		t.Error("request after refilling one token was refused")
	}
	if l.Allow("a") {
		t.Error("second request after refilling one token was allowed")
	}
}

func TestPerKeyEvictsOnlyFullBuckets(t *testing.T) {
	now := time.Unix(0, 0)
	l := New(1, 1, 2, func() time.Time { return now })
	l.Allow("a")
	l.Allow("b")
	l.Allow("c") // a and b are empty, so none is evicted
	if l.Allow("a") {
		t.Error("an empty bucket was evicted and refilled")
	}
	now = now.Add(2 * time.Second)
	l.Allow("d") // every bucket has refilled, so all may go
	if got := len(l.buckets); got > 2 {
		t.Errorf("kept %d buckets after refill, want at most 2", got)
	}
}
