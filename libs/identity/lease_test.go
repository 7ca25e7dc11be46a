package identity_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/identity"
)

// standbyWriter is a heartbeat writer in standby mode that counts the
// heartbeats it signs.
type standbyWriter struct {
	writes atomic.Int64
	cancel context.CancelFunc
	done   chan struct{}
}

// startStandby starts a writer whose clock runs lag behind real time.
func startStandby(t *testing.T, f *fixture, v *identity.View, lag time.Duration,
) *standbyWriter {
	t.Helper()

	w := identity.NewAuthorityWriter(f.kv, f.setup.Authority)
	w.Now = func() time.Time { return time.Now().Add(-lag) }
	w.Standby = true
	w.TakeoverAfter = 150 * time.Millisecond
	s := &standbyWriter{done: make(chan struct{})}
	// Digest runs once for each heartbeat the writer signs.
	w.Digest = func() []byte {
		s.writes.Add(1)
		return v.Digest()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() {
		defer close(s.done)
		w.RunHeartbeat(ctx, 50*time.Millisecond, func(err error) {
			t.Errorf("heartbeat writer: %v", err)
		})
	}()
	t.Cleanup(s.stop)

	return s
}

func (s *standbyWriter) stop() {
	s.cancel()
	<-s.done
}

// TestStandbyWriterTakesOver runs two standby writers on one registry,
// checks that only the first one writes, then stops it and checks that a
// view stays fresh throughout. The second writer's clock lags, so its
// heartbeats are accepted only if it signs above the last version it read.
func TestStandbyWriterTakesOver(t *testing.T) {
	f := newFixture(t)
	v := f.watch(t, identity.ViewOptions{StaleAfter: 2 * time.Second})
	active := startStandby(t, f, v, 0)
	eventually(t, "view fresh", func() bool { return v.Fresh() == nil })
	time.Sleep(300 * time.Millisecond)
	standby := startStandby(t, f, v, 300*time.Millisecond)

	time.Sleep(300 * time.Millisecond)
	a0, s0 := active.writes.Load(), standby.writes.Load()
	time.Sleep(500 * time.Millisecond)
	if got := active.writes.Load() - a0; got == 0 {
		t.Fatal("lease holder wrote no heartbeat in 500ms")
	}
	if got := standby.writes.Load() - s0; got != 0 {
		t.Fatalf("standby wrote %d heartbeats while the lease holder ran, want 0", got)
	}

	active.stop()
	before := standby.writes.Load()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if err := v.Fresh(); err != nil {
			t.Fatalf("view during takeover: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := standby.writes.Load() - before; got == 0 {
		t.Fatal("standby wrote no heartbeat after the lease holder stopped")
	}
	if n, err := v.Rejected(); n != 0 {
		t.Fatalf("view rejected %d entries, last %v; want 0", n, err)
	}
}
