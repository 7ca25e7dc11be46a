package corpus

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/bundle"
	"github.com/nodexsec/nodex/services/codesec/internal/scan"
)

// outcome is what codesec does with one corpus item.
type outcome struct {
	refused  bool // validation rejected it
	findings []bundle.Finding
	denied   bool // the policy denied it
}

type harness struct {
	scanner *scan.Scanner
	engine  *authz.Engine
}

func newHarness(t testing.TB) *harness {
	t.Helper()

	s, err := scan.NewDefault()
	if err != nil {
		t.Fatal(err)
	}
	set, err := ShippedPolicy()
	if err != nil {
		t.Fatal(err)
	}
	engine := authz.New(authz.Options{Timeout: 5 * time.Second})
	if err := engine.Load(context.Background(), set); err != nil {
		t.Fatalf("loading the shipped policy: %v", err)
	}

	return &harness{scanner: s, engine: engine}
}

func (h *harness) run(t testing.TB, it Item) outcome {
	t.Helper()

	sub := it.Submission
	if err := sub.Validate(); err != nil {
		return outcome{refused: true}
	}
	files := make([]bundle.File, 0, len(sub.Files))
	for _, f := range sub.Files {
		files = append(files, bundle.File{Name: f.Name, Data: []byte(f.Content)})
	}
	findings, err := h.scanner.Scan(sub.Language, files)
	if err != nil {
		t.Fatalf("%s %s: scanning: %v", it.Set, it.ID, err)
	}

	var policyFindings []authz.Finding
	for _, f := range findings {
		policyFindings = append(policyFindings, authz.Finding{RuleID: f.RuleID, Severity: f.Severity, Line: f.Line})
	}
	d, err := h.engine.Decide(context.Background(), authz.Input{
		Subject:  authz.Subject{ID: "agent-corpus", Kind: authz.KindAgent, Roles: []string{"agent"}, Status: authz.StatusActive},
		Action:   "submit",
		Resource: authz.Resource{Type: "code"},
		Context:  authz.Context{Time: time.Now(), Findings: policyFindings},
	})
	if err != nil {
		t.Fatalf("%s %s: deciding: %v", it.Set, it.ID, err)
	}

	return outcome{findings: findings, denied: !d.Allow}
}

func corpusDir(t testing.TB) string {
	t.Helper()

	dir, err := Dir()
	if err != nil {
		t.Fatalf("the corpus is required for this test: %v", err)
	}

	return dir
}

// TestBenignCorpus scans every benign program through validation, the
// rules and the shipped policy: under 2% may get a finding, and none may
// be refused or denied.
func TestBenignCorpus(t *testing.T) {
	items, err := Benign(corpusDir(t))
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t)

	flagged, denied, refused := 0, 0, 0
	perSet := map[string][2]int{}
	for _, it := range items {
		o := h.run(t, it)
		counts := perSet[it.Set]
		counts[0]++
		switch {
		case o.refused:
			refused++
			t.Errorf("%s %s: refused by validation", it.Set, it.ID)
		case o.denied:
			denied++
			t.Errorf("%s %s: denied, findings %v", it.Set, it.ID, o.findings)
		}
		if len(o.findings) > 0 {
			flagged++
			counts[1]++
			t.Logf("flagged %s %s: %s", it.Set, it.ID, describe(o.findings))
		}
		perSet[it.Set] = counts
	}

	t.Logf("benign: %d programs, %d flagged (%.2f%%), %d denied, %d refused",
		len(items), flagged, pct(flagged, len(items)), denied, refused)
	logSets(t, perSet)
	if pct(flagged, len(items)) >= 2 {
		t.Errorf("%.2f%% of benign programs flagged, want under 2%%", pct(flagged, len(items)))
	}
}

// TestHostileCorpus reports the share of hostile code items that get at
// least one finding or are refused. It is a figure to report, not a gate:
// infinite loops and memory bombs look like ordinary code, and the sandbox
// is the boundary. It fails only if a set is empty or nothing is caught.
func TestHostileCorpus(t *testing.T) {
	items, err := Hostile(corpusDir(t))
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t)

	caught, denied := 0, 0
	perSet := map[string][2]int{}
	for _, it := range items {
		o := h.run(t, it)
		counts := perSet[it.Set]
		counts[0]++
		if o.refused || len(o.findings) > 0 {
			caught++
			counts[1]++
		} else if testing.Verbose() {
			t.Logf("missed %s %s", it.Set, it.ID)
		}
		if o.refused || o.denied {
			denied++
		}
		perSet[it.Set] = counts
	}

	t.Logf("hostile: %d code items, %d with a finding or refused (%.1f%%), %d refused or denied (%.1f%%)",
		len(items), caught, pct(caught, len(items)), denied, pct(denied, len(items)))
	logSets(t, perSet)
	if caught == 0 {
		t.Error("no hostile item was caught")
	}
}

func TestTyphonTemplatesFilled(t *testing.T) {
	items, err := Typhon(corpusDir(t) + "/hostile")
	if err != nil {
		t.Fatal(err)
	}
	// 196 entries in lists, plus 3 in the python2 category's object.
	if len(items) != 199 {
		t.Errorf("got %d Typhon programs, want 199", len(items))
	}
	for _, it := range items {
		code := it.Submission.Files[0].Content
		for slot := range TyphonSlots {
			if strings.Contains(code, slot) {
				t.Errorf("%s: slot %s left unfilled in %q", it.ID, slot, code)
			}
		}
	}
}

func describe(findings []bundle.Finding) string {
	var parts []string
	for _, f := range findings {
		parts = append(parts, fmt.Sprintf("%s(%s) line %d %s", f.RuleID, f.Severity, f.Line, f.Message))
	}

	return strings.Join(parts, "; ")
}

func pct(n, total int) float64 {
	if total == 0 {
		return 0
	}

	return 100 * float64(n) / float64(total)
}

func logSets(t *testing.T, perSet map[string][2]int) {
	t.Helper()

	names := make([]string, 0, len(perSet))
	for name := range perSet {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		c := perSet[name]
		t.Logf("  %-34s %4d items, %4d caught (%.1f%%)", name, c[0], c[1], pct(c[1], c[0]))
	}
}
