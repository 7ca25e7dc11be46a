package corpus

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/nodexsec/nodex/services/keyvault/api"
	"github.com/nodexsec/nodex/services/monitor/monitor"
)

// samplePerFile is how many items of each file the sample run takes, at
// evenly spaced positions, so the sample is the same on every run.
var samplePerFile = map[Kind]int{Benign: 4, Hostile: 6}

// EnvReport names the environment variable of a file that receives the
// result table, for docs/corpus.md.
const EnvReport = "NODEX_CORPUS_REPORT"

// EnvItems names the environment variable of a regular expression that
// selects items by "file/id", such as "mbpp.jsonl.gz/(3|4)$", to rerun a few.
const EnvItems = "NODEX_CORPUS_ITEMS"

// sampleItems returns items at positions 0, n/k, 2n/k, ... of each file.
func sampleItems(items []Item) []Item {
	if fullRun || len(items) == 0 {
		return items
	}
	k := min(samplePerFile[items[0].Kind], len(items))
	out := make([]Item, 0, k)
	for i := range k {
		out = append(out, items[i*len(items)/k])
	}

	return out
}

// selectItems returns the items of all whose "file/id" matches expr, in
// place of the sample.
func selectItems(t *testing.T, _ []Item, expr string, all map[string][]Item) []Item {
	t.Helper()
	re, err := regexp.Compile(expr)
	if err != nil {
		t.Fatalf("invalid %s %q: %v", EnvItems, expr, err)
	}
	var out []Item
	for _, f := range Files {
		for _, it := range all[f] {
			if re.MatchString(it.File + "/" + it.ID) {
				out = append(out, it)
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s %q matches no item", EnvItems, expr)
	}

	return out
}

// fakeKey is a made-up value in the shape of an OpenAI key. The test stores
// it in the keyvault, so that the sandbox redacts it, and scans every
// output for it.
func fakeKey() string {
	return "sk-" + strings.Repeat("c0rP", 5) + "T3BlbkFJ" + strings.Repeat("Us7x", 5)
}

// TestCorpus runs benign and hostile corpus items through codesec, the
// policy and the sandbox: every benign program must pass its own test and
// every hostile program must be refused or contained.
func TestCorpus(t *testing.T) {
	dir, err := Dir()
	if err != nil {
		t.Fatal(err)
	}
	all, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sys := startSystem(t)
	var stored api.StoreReply
	err = sys.op.Bus.Request(ctx, api.SubjectStore, api.Role, api.StoreRequest{
		Provider: "openai", Name: "corpus-canary", Value: api.NewSecret([]byte(fakeKey())),
	}, &stored)
	if err != nil {
		t.Fatalf("storing the canary key: %v", err)
	}
	probe := newHostProbe(t, map[string]string{fakeKey(): "the stored keyvault key"})
	r := &runner{sys: sys, probe: probe}

	var items []Item
	for _, f := range Files {
		items = append(items, sampleItems(all[f])...)
	}
	if expr := os.Getenv(EnvItems); expr != "" {
		items = selectItems(t, items, expr, all)
	}
	start := time.Now()
	results := r.runAll(ctx, t, items)
	elapsed := time.Since(start)
	time.Sleep(time.Second) // let killed programs finish exiting
	hostProblems := probe.check()
	checkEvents(ctx, t, sys, results, start)

	report := table(results, elapsed, r.replaced, hostProblems)
	if len(r.transient) > 0 {
		report += fmt.Sprintf("retried after a transient error: %s\n",
			strings.Join(r.transient, ", "))
	}
	t.Log("\n" + report)
	if path := os.Getenv(EnvReport); path != "" {
		if err := os.WriteFile(path, []byte(report), 0o644); err != nil {
			t.Errorf("writing %s: %v", path, err)
		}
	}
	for _, p := range hostProblems {
		t.Errorf("containment: %s", p)
	}
	for _, res := range results {
		if res.outcome == Wrong {
			t.Errorf("%s %s: wrong: %s", res.item.File, res.item.ID, res.detail)
		}
	}
}

// checkEvents checks that each hostile item raised the right event: a
// codesec.submission_denied event for a code refusal, a sandbox.exec event
// for each run and a sandbox.violation event for each run with violations.
// A result without its event becomes Wrong.
func checkEvents(ctx context.Context, t *testing.T, sys *system, results []result, since time.Time) {
	t.Helper()
	reader := monitor.Reader{JS: sys.op.JS, Codec: sys.op.Codec}
	cache := map[string][]monitor.Event{}
	load := func(id string) []monitor.Event {
		if evs, ok := cache[id]; ok {
			return evs
		}
		evs, err := reader.TailEvents(ctx, monitor.EventFilter{Identity: id, Since: since,
			Limit: 10000})
		if err != nil {
			t.Errorf("reading events of %s: %v", id, err)
		}
		cache[id] = evs
		return evs
	}
	deadline := time.Now().Add(20 * time.Second)
	for i := range results {
		res := &results[i]
		want := expectedEvent(res)
		if want == "" {
			continue
		}
		for !hasEvent(load(res.agentID), want, res) {
			if time.Now().After(deadline) {
				res.outcome = Wrong
				res.detail = "no " + want + " event for " + res.agentID
				break
			}
			time.Sleep(200 * time.Millisecond)
			delete(cache, res.agentID)
		}
	}
}

// expectedEvent names the event type a hostile result must have raised, or
// "" when none is required (validation errors such as an unsupported
// language are rejected before any decision).
func expectedEvent(res *result) string {
	if res.item.Kind != Hostile {
		return ""
	}
	switch {
	case res.outcome == Refused && res.refusal == "code_refused":
		return "codesec.submission_denied"
	case res.outcome == Contained && res.violations > 0:
		return "sandbox.violation"
	case res.outcome == Contained:
		return "sandbox.exec"
	}

	return ""
}

func hasEvent(evs []monitor.Event, typ string, res *result) bool {
	for _, ev := range evs {
		if ev.Type != typ || ev.Subject != res.agentID {
			continue
		}
		if typ == "codesec.submission_denied" || ev.Resource == "bundle:"+res.bundleID ||
			ev.Metadata["bundle_id"] == res.bundleID {
			return true
		}
	}

	return false
}

// table prints one row per corpus file and the host-side checks.
func table(results []result, elapsed time.Duration, replaced int, host []string) string {
	type row struct {
		items, passed, refused, contained, known, wrong int
		time                                            time.Duration
	}
	rows := map[string]*row{}
	for _, res := range results {
		r := rows[res.item.File]
		if r == nil {
			r = &row{}
			rows[res.item.File] = r
		}
		r.items++
		r.time += res.elapsed
		switch res.outcome {
		case Passed:
			r.passed++
		case Refused:
			r.refused++
		case Contained:
			r.contained++
		case Known:
			r.known++
		default:
			r.wrong++
		}
	}
	var b strings.Builder
	mode := "sample"
	if fullRun {
		mode = "full"
	}
	fmt.Fprintf(&b, "corpus run (%s): %d items in %s, %d agents replaced after containment\n",
		mode, len(results), elapsed.Round(time.Second), replaced)
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "file\titems\tpassed\trefused\tcontained\tknown\twrong\titem-seconds\t")
	for _, f := range Files {
		r := rows[f]
		if r == nil {
			continue
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%.0f\t\n", f, r.items, r.passed, r.refused,
			r.contained, r.known, r.wrong, r.time.Seconds())
	}
	_ = w.Flush()
	if len(host) == 0 {
		b.WriteString("host checks: no loopback connection, no changed host file, " +
			"no new non-root host file, no surviving program process\n")
	}
	for _, p := range host {
		b.WriteString("host check failed: " + p + "\n")
	}

	return b.String()
}
