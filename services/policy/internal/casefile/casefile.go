// Package casefile reads decision cases: one JSON file per case holding an
// input, optional role data on top of the defaults, and the expected
// decision. Tests of the default policies, locally and over the bus, run the
// same files.
package casefile

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/nodexsec/nodex/libs/authz"
)

// Case is one decision case.
type Case struct {
	// Name is the file name without .json.
	Name string `json:"-"`
	// Note is a sentence describing what the case shows.
	Note  string      `json:"note"`
	Input authz.Input `json:"input"`
	// Data, if set, changes the default role data: its roles are added to
	// (or replace) the default roles and its bindings replace the defaults.
	Data *authz.RBAC `json:"data,omitempty"`
	Want Want        `json:"want"`
}

// Want is the expected decision.
type Want struct {
	Allow bool `json:"allow"`
	// Reasons, if set, must equal the decision's reasons.
	Reasons []string `json:"reasons,omitempty"`
	// ReasonContains, if set, must be part of the decision's only reason.
	ReasonContains string `json:"reason_contains,omitempty"`
	// Flags must equal the decision's flags.
	Flags []string `json:"flags,omitempty"`
	// Error is "invalid_input" when the engine must reject the input
	// before evaluation.
	Error string `json:"error,omitempty"`
}

// Load reads every *.json case in dir, sorted by name.
func Load(dir string) ([]Case, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("listing cases in %s: %w", dir, err)
	}
	sort.Strings(paths)

	cases := make([]Case, 0, len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("reading case: %w", err)
		}

		var c Case
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return nil, fmt.Errorf("decoding case %s: %w", p, err)
		}
		c.Name = strings.TrimSuffix(filepath.Base(p), ".json")
		cases = append(cases, c)
	}

	return cases, nil
}

// RBAC returns base changed by the case's data.
func (c *Case) RBAC(base authz.RBAC) authz.RBAC {
	out := authz.RBAC{Roles: maps.Clone(base.Roles), Bindings: maps.Clone(base.Bindings)}
	if c.Data == nil {
		return out
	}
	if out.Roles == nil {
		out.Roles = map[string]authz.Role{}
	}
	maps.Copy(out.Roles, c.Data.Roles)
	if c.Data.Bindings != nil {
		out.Bindings = c.Data.Bindings
	}

	return out
}

// Check returns a description of how d and err differ from the expected
// decision, or "" when they match.
func (w *Want) Check(d authz.Decision, err error) string {
	var problems []string
	if d.Allow != w.Allow {
		problems = append(problems, fmt.Sprintf("allow = %v, want %v", d.Allow, w.Allow))
	}
	if w.Reasons != nil && !slices.Equal(d.Reasons, w.Reasons) {
		problems = append(problems, fmt.Sprintf("reasons = %q, want %q", d.Reasons, w.Reasons))
	}
	if w.ReasonContains != "" &&
		(len(d.Reasons) != 1 || !strings.Contains(d.Reasons[0], w.ReasonContains)) {
		problems = append(problems, fmt.Sprintf("reasons = %q, want one containing %q",
			d.Reasons, w.ReasonContains))
	}
	if !slices.Equal(d.Flags, w.Flags) {
		problems = append(problems, fmt.Sprintf("flags = %q, want %q", d.Flags, w.Flags))
	}
	problems = append(problems, w.checkError(err)...)

	return strings.Join(problems, "; ")
}

func (w *Want) checkError(err error) []string {
	switch {
	case w.Error == "invalid_input" && !isInvalidInput(err):
		return []string{fmt.Sprintf("error = %v, want an invalid input error", err)}
	case w.Error == "" && err != nil:
		return []string{fmt.Sprintf("error = %v, want none", err)}
	}

	return nil
}

func isInvalidInput(err error) bool {
	return errors.Is(err, authz.ErrInvalidInput)
}
