package domain

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// ErrInvalidRule marks a rule that cannot be compiled.
var ErrInvalidRule = errors.New("monitor: invalid rule")

// Rule kinds.
const (
	KindSingle    = "single"
	KindThreshold = "threshold"
	KindSequence  = "sequence"
)

// Threat types, as operators and the incident service name them.
const (
	ThreatUnauthorizedAccess = "UNAUTHORIZED_ACCESS"
	ThreatSystemCompromise   = "SYSTEM_COMPROMISE"
	ThreatCodeInjection      = "CODE_INJECTION"
	ThreatDataBreach         = "DATA_BREACH"
	ThreatAPIAbuse           = "API_ABUSE"
)

// ThreatTypes lists every threat type a rule may raise.
var ThreatTypes = []string{
	ThreatUnauthorizedAccess, ThreatSystemCompromise, ThreatCodeInjection,
	ThreatDataBreach, ThreatAPIAbuse,
}

var threatSeverities = []string{"low", "medium", "high", "critical"}

var ruleIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// Match maps a field name (see [Observation.Field]) to the values it may
// take. In a value, '*' matches any run of characters ("keyvault.*") and
// every other character matches itself; a field matches when any of its
// values does. All fields of a Match must match.
type Match map[string][]string

// Rule is one detection rule, as loaded from the rule file.
type Rule struct {
	ID          string
	Description string
	Kind        string
	ThreatType  string
	Severity    string

	// Match selects the events of a single or threshold rule.
	Match Match

	// GroupBy names the fields whose values key a threshold or sequence
	// state, for example ["identity"]. Events whose group fields are all
	// empty are grouped by their origin instead.
	GroupBy []string

	// Threshold is the number of distinct events within Window that raises
	// a threshold rule's threat.
	Threshold int
	Window    time.Duration

	// Steps are the matches of a sequence rule, in order; all steps must
	// occur within Within, with the same GroupBy values.
	Steps  []Match
	Within time.Duration

	// AttributeIdentity makes the threat name the identity of its
	// evidence. Rules on events whose identity field is a claim the
	// reporter could not check (for example a rejected envelope's claimed
	// sender) set it to false, so the threat names the origin only.
	AttributeIdentity bool

	// Dedupe is how long after its last evidence a threat stays open for
	// more evidence of the same rule and group before a new threat starts.
	Dedupe time.Duration
}

// Validate checks that r is complete and consistent for its kind.
func (r *Rule) Validate() error {
	if !ruleIDPattern.MatchString(r.ID) {
		return fmt.Errorf("%w: id %q must match %s", ErrInvalidRule, r.ID, ruleIDPattern)
	}
	if !slices.Contains(ThreatTypes, r.ThreatType) {
		return fmt.Errorf("%w: rule %s: threat %q is not one of %v",
			ErrInvalidRule, r.ID, r.ThreatType, ThreatTypes)
	}
	if !slices.Contains(threatSeverities, r.Severity) {
		return fmt.Errorf("%w: rule %s: severity %q is not one of %v",
			ErrInvalidRule, r.ID, r.Severity, threatSeverities)
	}
	if r.Dedupe <= 0 {
		return fmt.Errorf("%w: rule %s: dedupe must be > 0", ErrInvalidRule, r.ID)
	}

	switch r.Kind {
	case KindSingle:
		return r.validateMatch(r.Match)
	case KindThreshold:
		if r.Threshold < 2 || r.Window <= 0 {
			return fmt.Errorf("%w: rule %s: threshold needs count >= 2 and window > 0",
				ErrInvalidRule, r.ID)
		}
		return r.validateMatch(r.Match)
	case KindSequence:
		return r.validateSequence()
	default:
		return fmt.Errorf("%w: rule %s: kind %q is not single, threshold or sequence",
			ErrInvalidRule, r.ID, r.Kind)
	}
}

func (r *Rule) validateSequence() error {
	if len(r.Steps) < 2 || r.Within <= 0 {
		return fmt.Errorf("%w: rule %s: sequence needs >= 2 steps and within > 0",
			ErrInvalidRule, r.ID)
	}
	if len(r.GroupBy) == 0 {
		return fmt.Errorf("%w: rule %s: sequence needs group_by", ErrInvalidRule, r.ID)
	}
	for _, m := range r.Steps {
		if err := r.validateMatch(m); err != nil {
			return err
		}
	}

	return nil
}

func (r *Rule) validateMatch(m Match) error {
	if len(m) == 0 {
		return fmt.Errorf("%w: rule %s: empty match", ErrInvalidRule, r.ID)
	}
	for field, values := range m {
		if !knownField(field) {
			return fmt.Errorf("%w: rule %s: unknown field %q", ErrInvalidRule, r.ID, field)
		}
		if len(values) == 0 {
			return fmt.Errorf("%w: rule %s: field %q has no values", ErrInvalidRule, r.ID, field)
		}
	}
	for _, field := range r.GroupBy {
		if !knownField(field) {
			return fmt.Errorf("%w: rule %s: unknown group_by field %q",
				ErrInvalidRule, r.ID, field)
		}
	}

	return nil
}

var fieldNames = []string{
	"id", "type", "source", "action", "resource", "status", "severity", "trace_id",
	"subject", "identity", "sender", "sender_kind", "origin",
}

func knownField(name string) bool {
	if _, ok := cutMetadata(name); ok {
		return true
	}

	return slices.Contains(fieldNames, name)
}

func cutMetadata(name string) (string, bool) {
	key, ok := strings.CutPrefix(name, "metadata.")

	return key, ok && key != ""
}

// globMatch reports whether s matches pattern, where '*' matches any run of
// characters, including none and including dots and slashes.
func globMatch(pattern, s string) bool {
	if !strings.Contains(pattern, "*") {
		return pattern == s
	}
	parts := strings.Split(pattern, "*")
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for _, part := range parts[1 : len(parts)-1] {
		i := strings.Index(s, part)
		if i < 0 {
			return false
		}
		s = s[i+len(part):]
	}

	return strings.HasSuffix(s, parts[len(parts)-1])
}

// Matches reports whether o satisfies every field of m.
func (m Match) Matches(o *Observation) bool {
	for field, patterns := range m {
		v := o.Field(field)
		ok := false
		for _, p := range patterns {
			if globMatch(p, v) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}

	return true
}
