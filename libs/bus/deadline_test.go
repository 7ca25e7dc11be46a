package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/testkit"
)

// TestHandlerPastDeadlineRepliesTimeout runs handlers whose work outlasts
// the requester's budget. The requester must receive the service's coded
// timeout reply before its own deadline, not time out waiting.
func TestHandlerPastDeadlineRepliesTimeout(t *testing.T) {
	tests := []struct {
		name    string
		handler func(release <-chan struct{}) Handler
	}{
		{"honours ctx", func(<-chan struct{}) Handler {
			return func(ctx context.Context, _ *Request) (any, error) {
				<-ctx.Done()
				return nil, fmt.Errorf("storing bundle: %w", ctx.Err())
			}
		}},
		{"ignores ctx", func(release <-chan struct{}) Handler {
			return func(context.Context, *Request) (any, error) {
				<-release
				return echo{Text: "late"}, nil
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := testkit.NATSServer(t)
			w := newWorld(t, srv)
			svc := newClient(t, srv, w.AddParty(t, "codesec-1", "service", "service:codesec"), nil)
			agent := newClient(t, srv, w.AddParty(t, "agent-1", "agent", "agent"), nil)
			release := make(chan struct{})
			t.Cleanup(func() { close(release) })
			if err := svc.Handle("nodex.v1.codesec.submit", "codesec", tt.handler(release)); err != nil {
				t.Fatalf("handling: %v", err)
			}

			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			err := agent.Request(ctx, "nodex.v1.codesec.submit", "service:codesec", echo{}, nil)
			var coded *errs.Error
			if !errors.As(err, &coded) || coded.Code != errs.Timeout.Code {
				t.Fatalf("request error = %v, want the coded %s reply", err, errs.Timeout.Name)
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("request error = %v: the requester timed out before the reply came", err)
			}
		})
	}
}

// TestHandlerBudgetFollowsRequester checks that a handler gets the
// requester's budget, not the serving client's fallback.
func TestHandlerBudgetFollowsRequester(t *testing.T) {
	srv := testkit.NATSServer(t)
	w := newWorld(t, srv)
	svc := newClient(t, srv, w.AddParty(t, "codesec-1", "service", "service:codesec"),
		func(c *Config) { c.RequestTimeout = 200 * time.Millisecond })
	agent := newClient(t, srv, w.AddParty(t, "agent-1", "agent", "agent"), nil)
	err := svc.Handle("nodex.v1.codesec.submit", "codesec", func(ctx context.Context,
		_ *Request) (any, error) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
			return echo{Text: "done"}, nil
		}
	})
	if err != nil {
		t.Fatalf("handling: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out echo
	if err := agent.Request(ctx, "nodex.v1.codesec.submit", "service:codesec", echo{}, &out); err != nil {
		t.Fatalf("request with a one-minute budget: %v", err)
	}
	if out.Text != "done" {
		t.Errorf("reply text = %q, want %q", out.Text, "done")
	}
}

func TestHandlerContextDeadline(t *testing.T) {
	received := time.UnixMilli(1_000_000)
	header := func(v string) nats.Header {
		h := nats.Header{}
		if v != "" {
			h.Set(HeaderTimeout, v)
		}
		return h
	}
	tests := []struct {
		name     string
		header   nats.Header
		sealedMs int64
		want     time.Duration // deadline after received
	}{
		{"header budget less transit and margin", header("5000"), 1_000_000 - 100, 4400 * time.Millisecond},
		{"missing header uses fallback", header(""), 1_000_000, 900 * time.Millisecond},
		{"invalid header uses fallback", header("soon"), 1_000_000, 900 * time.Millisecond},
		{"negative header uses fallback", header("-5"), 1_000_000, 900 * time.Millisecond},
		{"sender clock ahead counts no transit", header("2000"), 1_000_000 + 9000, 1800 * time.Millisecond},
		{"sender clock behind spends at most half", header("4000"), 1_000_000 - 20_000, 1600 * time.Millisecond},
		{"huge header is capped", header("999999999"), 1_000_000, maxHandlerBudget - maxReplyMargin},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := handlerContext(context.Background(), tt.header, time.Second, received,
				tt.sealedMs)
			defer cancel()
			deadline, ok := ctx.Deadline()
			if !ok {
				t.Fatal("handler context has no deadline")
			}
			if got := deadline.Sub(received); got != tt.want {
				t.Errorf("deadline = received + %v, want received + %v", got, tt.want)
			}
		})
	}
}

// TestTimedOutHandlerKeepsSlot runs a handler that ignores ctx on a client
// with one handler slot. The requester gets one coded timeout reply, the
// handler's late result is never sent as a second reply, the slot stays
// taken until the handler returns, and Drain waits for it.
func TestTimedOutHandlerKeepsSlot(t *testing.T) {
	srv := testkit.NATSServer(t)
	w := newWorld(t, srv)
	var timeoutReports atomic.Int32
	svc := newClient(t, srv, w.AddParty(t, "codesec-1", "service", "service:codesec"),
		func(c *Config) {
			c.HandlerConcurrency = 1
			c.OnError = func(_ context.Context, _ string, err error) {
				if errors.Is(err, context.DeadlineExceeded) {
					timeoutReports.Add(1)
				}
			}
		})
	agent := newClient(t, srv, w.AddParty(t, "agent-1", "agent", "agent"), nil)
	var entered atomic.Int32
	release := make(chan struct{})
	returned := make(chan struct{})
	err := svc.Handle("nodex.v1.codesec.submit", "codesec", func(context.Context,
		*Request) (any, error) {
		if entered.Add(1) == 1 {
			<-release
			close(returned)
		}
		return echo{Text: "late"}, nil
	})
	if err != nil {
		t.Fatalf("handling: %v", err)
	}
	// A plain subscriber receives every reply, including any the requester
	// would drop after accepting the first.
	replies := make(chan *nats.Msg, 64)
	if _, err := testkit.Connect(t, srv).ChanSubscribe("_INBOX.>", replies); err != nil {
		t.Fatalf("subscribing to replies: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err = agent.Request(ctx, "nodex.v1.codesec.submit", "service:codesec", echo{}, nil)
	var coded *errs.Error
	if !errors.As(err, &coded) || coded.Code != errs.Timeout.Code {
		t.Fatalf("first request error = %v, want the coded %s reply", err, errs.Timeout.Name)
	}

	// The one slot is still taken, so a second request is not handled.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	err = agent.Request(ctx2, "nodex.v1.codesec.submit", "service:codesec", echo{}, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second request error = %v, want the requester's own timeout", err)
	}
	if n := entered.Load(); n != 1 {
		t.Errorf("handler entered %d times while its only slot was taken, want 1", n)
	}

	drained := make(chan error, 1)
	go func() { drained <- svc.Drain(context.Background()) }()
	select {
	case err := <-drained:
		t.Fatalf("Drain returned %v while a timed-out handler was running", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	<-returned
	if err := <-drained; err != nil {
		t.Errorf("Drain: %v", err)
	}
	if err := agent.NATS().Flush(); err != nil {
		t.Fatalf("flushing: %v", err)
	}
	// Both requests get exactly one reply each: the first its timeout, the
	// second its result once the slot was free. The subscriber also receives
	// JetStream API replies, which go to other inboxes.
	perSubject := map[string]int{}
	for quiet := false; !quiet; {
		select {
		case m := <-replies:
			if strings.HasPrefix(m.Subject, agent.inbox+".") {
				perSubject[m.Subject]++
			}
		case <-time.After(200 * time.Millisecond):
			quiet = true
		}
	}
	if len(perSubject) != 2 {
		t.Errorf("replies went to %d request subjects, want 2: %v", len(perSubject), perSubject)
	}
	for subject, n := range perSubject {
		if n != 1 {
			t.Errorf("%d replies on %s, want 1", n, subject)
		}
	}
	if n := timeoutReports.Load(); n != 1 {
		t.Errorf("OnError got %d timeout reports, want 1", n)
	}
}
