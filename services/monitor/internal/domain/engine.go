package domain

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MaxGroupsPerRule bounds the window or sequence states one rule keeps, so
// that events with attacker-chosen field values cannot exhaust memory. Past
// it, new groups are not tracked and [Engine.GroupsDropped] counts them.
const MaxGroupsPerRule = 50_000

// sweepEvery is how many observations pass between sweeps of expired state.
const sweepEvery = 1024

// Engine evaluates rules over observations in stream order and keeps the
// sliding windows, sequence progress and open threats. It is not safe for
// concurrent use, so the monitor feeds it from one goroutine.
//
// Windows and sequence progress live in memory. After a restart, the caller
// rebuilds them with [Engine.Warm] and reopens threats with
// [Engine.RestoreThreat].
type Engine struct {
	rules     []Rule
	windows   map[string]map[string]*window
	sequences map[string]map[string][]seqStep
	threats   map[string]*activeThreat
	seen      int
	dropped   int
}

type window struct {
	entries []windowEntry
	ids     map[string]struct{}
}

type windowEntry struct {
	at  time.Time
	id  string // event id, for evidence
	key string // distinctKey
}

// seqStep is the progress of one group through a sequence: step i is set
// when steps 0..i have matched in order, starting at start.
type seqStep struct {
	ok       bool
	start    time.Time
	evidence []*Observation
}

// NewEngine returns an engine for rules after validating each of them.
func NewEngine(rules []Rule) (*Engine, error) {
	e := &Engine{threats: make(map[string]*activeThreat)}
	if err := e.SetRules(rules); err != nil {
		return nil, err
	}

	return e, nil
}

// SetRules replaces the rule set. State of a rule whose id and definition
// are unchanged is kept; state of changed or removed rules is dropped. Open
// threats stay open, so a reload does not re-raise an ongoing attack.
func (e *Engine) SetRules(rules []Rule) error {
	ids := make(map[string]bool, len(rules))
	for i := range rules {
		if err := rules[i].Validate(); err != nil {
			return err
		}
		if ids[rules[i].ID] {
			return fmt.Errorf("%w: duplicate rule id %q", ErrInvalidRule, rules[i].ID)
		}
		ids[rules[i].ID] = true
	}

	windows := make(map[string]map[string]*window)
	sequences := make(map[string]map[string][]seqStep)
	for _, r := range rules {
		if old := e.rule(r.ID); old != nil && ruleEqual(old, &r) {
			windows[r.ID] = e.windows[r.ID]
			sequences[r.ID] = e.sequences[r.ID]
		}
		if windows[r.ID] == nil {
			windows[r.ID] = make(map[string]*window)
		}
		if sequences[r.ID] == nil {
			sequences[r.ID] = make(map[string][]seqStep)
		}
	}
	e.rules = slices.Clone(rules)
	e.windows = windows
	e.sequences = sequences

	return nil
}

// Rules returns a copy of the rule set in force.
func (e *Engine) Rules() []Rule { return slices.Clone(e.rules) }

// GroupsDropped returns how many groups were not tracked because a rule
// already had [MaxGroupsPerRule] of them.
func (e *Engine) GroupsDropped() int { return e.dropped }

// OpenThreats returns copies of the threats that can still take evidence.
func (e *Engine) OpenThreats() []Threat {
	out := make([]Threat, 0, len(e.threats))
	for _, a := range e.threats {
		out = append(out, a.snapshot())
	}

	return out
}

// RestoreThreat reopens t, for example as stored before a restart, so new
// evidence of its rule and group updates it instead of raising a new threat.
// It reports false when t's rule is no longer in force.
func (e *Engine) RestoreThreat(t Threat) bool {
	r := e.rule(t.RuleID)
	if r == nil {
		return false
	}
	a := &activeThreat{Threat: t, dedupe: r.Dedupe, publishedAt: t.LastSeen}
	a.identityValid = t.Identity != ""
	e.threats[t.RuleID+"\x00"+t.Group] = a

	return true
}

func (e *Engine) rule(id string) *Rule {
	for i := range e.rules {
		if e.rules[i].ID == id {
			return &e.rules[i]
		}
	}

	return nil
}

// Observe evaluates o against every rule and returns the threat revisions
// now due for publishing, each a copy the caller may keep. evidence reports
// whether o became evidence of a threat. Observing such an event twice
// would count it twice. Any other event is safe to observe again, because
// windows count distinct ids and a sequence step taken twice changes nothing.
func (e *Engine) Observe(o *Observation) (due []Threat, evidence bool) {
	var steps []int
	for i := range e.rules {
		r := &e.rules[i]
		var found []*Observation
		switch r.Kind {
		case KindSingle, KindThreshold:
			if !r.Match.Matches(o) {
				continue
			}
			found = []*Observation{o}
			if r.Kind == KindThreshold {
				found = e.observeThreshold(r, o)
			}
		case KindSequence:
			steps = steps[:0]
			for j := len(r.Steps) - 1; j >= 0; j-- {
				if r.Steps[j].Matches(o) {
					steps = append(steps, j)
				}
			}
			if len(steps) == 0 {
				continue
			}
			found = e.observeSequence(r, o, steps)
		}
		if len(found) > 0 {
			evidence = true
		}
		if t, ok := e.raise(r, o, found); ok {
			due = append(due, t)
		}
	}

	e.seen++
	if e.seen%sweepEvery == 0 {
		e.sweep(o.At)
	}

	return due, evidence
}

// groupKey returns the state key and display form of o's group under r, as
// field="value" pairs with Go-quoted values, so no value can forge another
// group's key. When every group field is empty, the origin groups the event,
// so events without an authenticated identity never share a real one's group.
// Warm feeds o, an event processed before a restart, into the windows and
// sequence progress without raising or updating threats, so an attack that
// spans the restart is still counted. Feed events in stream order, before
// the first Observe.
func (e *Engine) Warm(o *Observation) {
	for i := range e.rules {
		r := &e.rules[i]
		switch r.Kind {
		case KindThreshold:
			if r.Match.Matches(o) {
				e.observeThreshold(r, o)
			}
		case KindSequence:
			var steps []int
			for j := len(r.Steps) - 1; j >= 0; j-- {
				if r.Steps[j].Matches(o) {
					steps = append(steps, j)
				}
			}
			if len(steps) > 0 {
				e.observeSequence(r, o, steps)
			}
		}
	}
}

// MaxSpan returns the longest window or sequence time of the rules, the
// stretch of history that [Engine.Warm] needs.
func (e *Engine) MaxSpan() time.Duration {
	var span time.Duration
	for _, r := range e.rules {
		span = max(span, r.Window, r.Within)
	}

	return span
}

func ruleEqual(a, b *Rule) bool {
	return reflect.DeepEqual(a, b)
}

func groupKey(r *Rule, o *Observation) string {
	parts := make([]string, 0, len(r.GroupBy))
	empty := true
	for _, f := range r.GroupBy {
		v := o.Field(f)
		if v != "" {
			empty = false
		}
		parts = append(parts, f+"="+strconv.QuoteToASCII(v))
	}
	if empty {
		return "origin=" + strconv.QuoteToASCII(o.Origin)
	}

	return strings.Join(parts, ",")
}
