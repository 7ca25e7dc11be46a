package keyvault_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/nodexsec/nodex/libs/testkit"
	"github.com/nodexsec/nodex/services/keyvault/api"
	"github.com/nodexsec/nodex/services/keyvault/keyvault"
)

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()

	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()

	return b.buf.String()
}

// TestNoValueInLogsErrorsOrTraces runs store, retrieve, rotate, list,
// disable and delete over the bus, with denied and malformed requests among
// them, and searches every log line, error and span for the values.
func TestNoValueInLogsErrorsOrTraces(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, testkit.NATSServer(t))
	logs := &lockedBuffer{}
	w.log = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	spans := tracetest.NewSpanRecorder()
	w.tracer = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)).Tracer("test")
	w.start(t, keyvault.Config{})

	v1, v2 := fake(t, "openai"), fake(t, "openai")
	malformed := api.NewSecret(append([]byte("sk-proj-"), bytes.Repeat([]byte("Zq"), 40)...))
	var failures []error
	request := func(c interface {
		Request(context.Context, string, string, any, any) error
	}, subject string, req, reply any) {
		if err := c.Request(ctx, subject, api.Role, req, reply); err != nil {
			failures = append(failures, err)
		}
	}
	var stored api.StoreReply
	var got api.RetrieveReply
	request(w.operator, api.SubjectStore, api.StoreRequest{Provider: "openai", Name: "o",
		Value: v1}, &stored)
	request(w.operator, api.SubjectStore, api.StoreRequest{Provider: "openai", Name: "m",
		Value: malformed}, &stored)
	request(w.agent, api.SubjectRetrieve, api.RetrieveRequest{Name: "o"}, &got)
	request(w.agent, api.SubjectRotate, api.RotateRequest{Name: "o", Value: v2}, &stored)
	request(w.operator, api.SubjectRotate, api.RotateRequest{Name: "o", Value: v2}, &stored)
	request(w.agent, api.SubjectRetrieve, api.RetrieveRequest{Name: "o", Version: 1}, &got)
	request(w.operator, api.SubjectList, api.ListRequest{}, &api.ListReply{})
	request(w.operator, api.SubjectDisable, api.DisableRequest{Name: "o", Version: 1},
		&api.DisableReply{})
	request(w.operator, api.SubjectDelete, api.DeleteRequest{Name: "o"}, &api.DeleteReply{})
	if len(failures) != 2 {
		t.Errorf("got %d failed requests, want 2 (malformed store, agent rotate): %v",
			len(failures), failures)
	}

	var traced strings.Builder
	for _, s := range spans.Ended() {
		fmt.Fprintf(&traced, "%s %v %v %v\n", s.Name(), s.Attributes(), s.Status(), s.Events())
	}
	if n := len(spans.Ended()); n < 9 {
		t.Errorf("recorded %d spans, want one per request (9)", n)
	}
	if !strings.Contains(traced.String(), "keyvault.retrieve") {
		t.Error("no keyvault.retrieve span recorded")
	}
	haystacks := map[string]string{"logs": logs.String(), "spans": traced.String()}
	for i, err := range failures {
		haystacks[fmt.Sprintf("error %d", i)] = fmt.Sprintf("%v %+v", err, err)
	}
	for where, text := range haystacks {
		for i, v := range []api.Secret{v1, v2, malformed} {
			if strings.Contains(text, string(v.Reveal()[len("sk-proj-"):][:24])) {
				t.Errorf("value %d appears in %s", i+1, where)
			}
		}
	}
}
