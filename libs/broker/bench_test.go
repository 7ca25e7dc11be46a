package broker_test

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/broker"
	"github.com/nodexsec/nodex/libs/identity"
)

// BenchmarkSuspensionToView measures the time from a registry write of a
// suspension until the broker's watched view reports it.
func BenchmarkSuspensionToView(b *testing.B) {
	ctx := context.Background()
	e := startEnv(b)
	changed := make(chan identity.Status, 16)
	e.b.View().OnChange(func(c identity.Change) {
		if c.New.ID == identity.DemoAgentID {
			changed <- c.New.Status
		}
	})
	waitStatus := func(want identity.Status) {
		for s := range changed {
			if s == want {
				return
			}
		}
	}

	var total time.Duration
	for b.Loop() {
		start := time.Now()
		if err := e.admin.Suspend(ctx, identity.DemoAgentID); err != nil {
			b.Fatal(err)
		}
		waitStatus(identity.StatusSuspended)
		total += time.Since(start)

		b.StopTimer()
		if err := e.admin.Unsuspend(ctx, identity.DemoAgentID); err != nil {
			b.Fatal(err)
		}
		waitStatus(identity.StatusActive)
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N), "us/suspension")
}

// BenchmarkSuspensionToDisconnect measures the time from a registry write
// of a suspension until the identity's open connection is closed.
func BenchmarkSuspensionToDisconnect(b *testing.B) {
	ctx := context.Background()
	e := startEnv(b)
	creds := e.setup.Creds[identity.DemoAgentID]

	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		dropped := make(chan struct{}, 1)
		nc, err := broker.Connect(ctx, e.b.ClientURL(), creds, nats.NoReconnect(),
			nats.ClosedHandler(func(*nats.Conn) { dropped <- struct{}{} }))
		if err != nil {
			b.Fatal(err)
		}
		// The broker learns of the connection from a system event.
		time.Sleep(50 * time.Millisecond)
		b.StartTimer()

		start := time.Now()
		if err := e.admin.Suspend(ctx, identity.DemoAgentID); err != nil {
			b.Fatal(err)
		}
		select {
		case <-dropped:
		case <-time.After(5 * time.Second):
			b.Fatal("connection not closed within 5s of suspension")
		}
		total += time.Since(start)

		b.StopTimer()
		nc.Close()
		if err := e.admin.Unsuspend(ctx, identity.DemoAgentID); err != nil {
			b.Fatal(err)
		}
		waitFor(b, "unsuspended", func() bool {
			_, err := e.b.View().Active(identity.DemoAgentID)
			return err == nil
		})
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N), "us/suspension")
}

// BenchmarkJetStreamPublish compares acknowledged 1 KiB JetStream
// publishes with an fsync on every write (the NodeX default) against
// nats-server's default periodic sync, in the same run.
func BenchmarkJetStreamPublish(b *testing.B) {
	for _, tt := range []struct {
		name   string
		noSync bool
	}{
		{"sync_always", false},
		{"default_sync", true},
	} {
		b.Run(tt.name, func(b *testing.B) {
			benchPublish(b, tt.noSync)
		})
	}
}

func benchPublish(b *testing.B, noSync bool) {
	ctx := context.Background()
	setup, err := identity.Bootstrap(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	br, err := broker.Start(ctx, broker.Config{
		DataDir: b.TempDir(), Root: setup.Root.Public(), NoSyncAlways: noSync,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(br.Shutdown)
	js := br.JetStream()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "BENCH", Subjects: []string{"bench.>"}, Storage: jetstream.FileStorage,
	}); err != nil {
		b.Fatal(err)
	}
	body := make([]byte, 1024)
	_, _ = rand.Read(body)

	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := js.Publish(ctx, "bench.x", body); err != nil {
			b.Fatal(err)
		}
	}
}
