package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/nodexsec/nodex/libs/agent"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/services/nodex/devrun"
)

// traceMarker is in the traced program's source and output, so a span
// attribute that copied either would contain it.
const traceMarker = "trace-marker-7f3a"

// TestRunIsOneTrace runs one program through the SDK and checks that its
// trace contains the spans of all five parties: the agent, codesec, the
// policy engine, the sandbox-runner's steps and the monitor's processing of
// the run's events. The events' publish spans must be in it too.
func TestRunIsOneTrace(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	sys := startSystemWith(t, devrun.Config{SpanExporter: exp})
	ctx := context.Background()
	a, err := agent.Open(ctx, agent.Config{URL: sys.url,
		CredsFile: sys.credsPath(identity.DemoAgentID)})
	if err != nil {
		t.Fatalf("opening agent: %v", err)
	}
	t.Cleanup(func() { _ = a.Close(context.Background()) })

	res, err := a.Run(ctx, agent.Submission{Language: "python", Entrypoint: "main.py",
		Files: []agent.SourceFile{{Name: "main.py", Content: "print('" + traceMarker + "')\n"}}})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !strings.Contains(res.Exec.Stdout, traceMarker) {
		t.Fatalf("stdout = %q, want the marker", res.Exec.Stdout)
	}
	root := findSpan(t, exp, func(s tracetest.SpanStub) bool { return s.Name == "agent.run" })
	traceID := root.SpanContext.TraceID()

	want := map[string]func(tracetest.SpanStub) bool{
		"agent":   scopeIs("github.com/nodexsec/nodex/libs/agent"),
		"codesec": scopeIs("nodex/codesec"),
		"policy":  scopeIs("github.com/nodexsec/nodex/libs/authz"),
		"monitor": scopeIs("nodex/monitor"),
	}
	for _, step := range []string{"sandbox.fetch_bundle", "sandbox.verify", "sandbox.decrypt",
		"sandbox.run", "sandbox.redact", "sandbox.receipt"} {
		want[step] = func(s tracetest.SpanStub) bool { return s.Name == step }
	}
	// An event's publish span must join the run's trace, or the monitor's
	// processing of it would start a trace of its own.
	for _, event := range []string{"codesec.submission_accepted publish", "sandbox.exec publish"} {
		want[event] = func(s tracetest.SpanStub) bool { return strings.HasSuffix(s.Name, event) }
	}
	var missing []string
	eventually(t, "spans of all five parties in the run's trace", 30*time.Second, func() bool {
		spans := traceSpans(exp, traceID)
		process := findIn(t, spans, "nodex.v1.sandbox.exec process")
		for _, step := range []string{"sandbox.fetch_bundle", "sandbox.verify", "sandbox.decrypt",
			"sandbox.run", "sandbox.redact", "sandbox.receipt"} {
			if got := findIn(t, spans, step).Parent.SpanID(); got != process.SpanContext.SpanID() {
				t.Errorf("%s has parent %s, want the exec request's span %s", step, got,
					process.SpanContext.SpanID())
			}
		}
		missing = missing[:0]
		for party, match := range want {
			if !slices.ContainsFunc(spans, match) {
				missing = append(missing, party)
			}
		}
		if len(missing) > 0 {
			t.Logf("trace %s lacks %v so far", traceID, missing)
		}
		return len(missing) == 0
	})

	spans := traceSpans(exp, traceID)
	for _, s := range spans {
		if !s.Parent.IsValid() && s.Name != "agent.run" {
			t.Errorf("span %q is a second root in the run's trace", s.Name)
		}
		for _, kv := range s.Attributes {
			if strings.Contains(kv.Value.String(), traceMarker) {
				t.Errorf("span %q attribute %s copies the program or its output", s.Name, kv.Key)
			}
		}
	}
}

// findIn returns the span of spans named name.
func findIn(t *testing.T, spans []tracetest.SpanStub, name string) tracetest.SpanStub {
	t.Helper()
	i := slices.IndexFunc(spans, func(s tracetest.SpanStub) bool { return s.Name == name })
	if i < 0 {
		t.Fatalf("no span %q in the trace", name)
	}

	return spans[i]
}

func scopeIs(name string) func(tracetest.SpanStub) bool {
	return func(s tracetest.SpanStub) bool { return s.InstrumentationScope.Name == name }
}

// traceSpans returns the exported spans of trace id.
func traceSpans(exp *tracetest.InMemoryExporter, id trace.TraceID) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.SpanContext.TraceID() == id {
			out = append(out, s)
		}
	}

	return out
}

// findSpan waits for an exported span that match accepts.
func findSpan(t *testing.T, exp *tracetest.InMemoryExporter,
	match func(tracetest.SpanStub) bool) tracetest.SpanStub {
	t.Helper()
	var found tracetest.SpanStub
	eventually(t, "span exported", 10*time.Second, func() bool {
		i := slices.IndexFunc(exp.GetSpans(), match)
		if i >= 0 {
			found = exp.GetSpans()[i]
		}
		return i >= 0
	})

	return found
}
