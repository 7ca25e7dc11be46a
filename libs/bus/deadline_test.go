package bus

import (
	"context"
	"errors"
	"fmt"
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
