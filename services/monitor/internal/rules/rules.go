// Package rules loads detection rules from YAML. The format is documented in
// the monitor's README; default.yaml, embedded here, holds the rules the
// monitor runs when no rule file is configured.
package rules

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/nodexsec/nodex/services/monitor/internal/domain"
)

// defaultYAML is the built-in rule set.
//
//go:embed default.yaml
var defaultYAML []byte

// Defaults for rule fields left out of a rule file.
const (
	defaultDedupe = 10 * time.Minute
)

// file is the top level of a rule file.
type file struct {
	Version int        `yaml:"version"`
	Rules   []ruleYAML `yaml:"rules"`
}

type ruleYAML struct {
	ID                string      `yaml:"id"`
	Description       string      `yaml:"description"`
	Kind              string      `yaml:"kind"`
	Threat            string      `yaml:"threat"`
	Severity          string      `yaml:"severity"`
	Match             matchYAML   `yaml:"match"`
	GroupBy           []string    `yaml:"group_by"`
	Threshold         int         `yaml:"threshold"`
	Window            string      `yaml:"window"`
	Steps             []matchYAML `yaml:"steps"`
	Within            string      `yaml:"within"`
	AttributeIdentity *bool       `yaml:"attribute_identity"`
	Dedupe            string      `yaml:"dedupe"`
}

// matchYAML maps a field to one value or a list of values.
type matchYAML map[string]stringList

type stringList []string

// UnmarshalYAML accepts a scalar or a sequence of scalars.
func (l *stringList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*l = []string{n.Value}
		return nil
	case yaml.SequenceNode:
		var s []string
		if err := n.Decode(&s); err != nil {
			return err
		}
		*l = s
		return nil
	default:
		return fmt.Errorf("line %d: match value must be a string or a list of strings", n.Line)
	}
}

// Default returns the built-in rules.
func Default() []domain.Rule {
	rs, err := Parse(defaultYAML)
	if err != nil {
		panic(fmt.Sprintf("monitor: built-in rules invalid: %v", err))
	}

	return rs
}

// DefaultYAML returns the built-in rule file, as a starting point for a
// custom one.
func DefaultYAML() []byte { return bytes.Clone(defaultYAML) }

// Load reads and parses the rule file at path; an empty path returns the
// built-in rules.
func Load(path string) ([]domain.Rule, error) {
	if path == "" {
		return Default(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading rule file: %w", err)
	}
	rs, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("parsing rule file %q: %w", path, err)
	}

	return rs, nil
}

// Parse decodes a rule file, rejecting unknown keys, and validates every
// rule. Durations use Go syntax ("30s", "10m").
func Parse(data []byte) ([]domain.Rule, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f file
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("decoding YAML: %w", err)
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("%w: version %d is not supported, want version: 1",
			domain.ErrInvalidRule, f.Version)
	}

	out := make([]domain.Rule, 0, len(f.Rules))
	ids := make(map[string]bool, len(f.Rules))
	for i, ry := range f.Rules {
		r, err := ry.toRule()
		if err != nil {
			return nil, fmt.Errorf("rule %d (%q): %w", i+1, ry.ID, err)
		}
		if err := r.Validate(); err != nil {
			return nil, err
		}
		if ids[r.ID] {
			return nil, fmt.Errorf("%w: duplicate rule id %q", domain.ErrInvalidRule, r.ID)
		}
		ids[r.ID] = true
		out = append(out, r)
	}

	return out, nil
}

func (ry *ruleYAML) toRule() (domain.Rule, error) {
	r := domain.Rule{
		ID:                ry.ID,
		Description:       ry.Description,
		Kind:              ry.Kind,
		ThreatType:        ry.Threat,
		Severity:          ry.Severity,
		Match:             domain.Match(toMatch(ry.Match)),
		GroupBy:           ry.GroupBy,
		Threshold:         ry.Threshold,
		AttributeIdentity: ry.AttributeIdentity == nil || *ry.AttributeIdentity,
		Dedupe:            defaultDedupe,
	}
	for _, s := range ry.Steps {
		r.Steps = append(r.Steps, toMatch(s))
	}

	var err error
	for _, d := range []struct {
		text string
		into *time.Duration
	}{{ry.Window, &r.Window}, {ry.Within, &r.Within}, {ry.Dedupe, &r.Dedupe}} {
		if d.text == "" {
			continue
		}
		if *d.into, err = time.ParseDuration(d.text); err != nil {
			return r, fmt.Errorf("%w: %w", domain.ErrInvalidRule, err)
		}
	}
	if r.Kind == domain.KindSingle && len(r.GroupBy) == 0 {
		r.GroupBy = []string{"identity"}
	}

	return r, nil
}

func toMatch(m matchYAML) domain.Match {
	if m == nil {
		return nil
	}
	out := make(domain.Match, len(m))
	for k, v := range m {
		out[k] = []string(v)
	}

	return out
}
