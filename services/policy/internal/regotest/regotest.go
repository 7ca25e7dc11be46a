// Package regotest runs the Rego unit tests (*_test.rego) of a policy set
// with OPA's Go test runner, so that a set is tested the same way by
// `go test` and before the policy service activates it.
package regotest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"

	"github.com/nodexsec/nodex/libs/authz"
)

// ErrCompile wraps a set that does not parse or compile.
var ErrCompile = errors.New("regotest: policy set does not compile")

// Result is the outcome of one Rego test rule.
type Result struct {
	// Name is the package-qualified rule, such as
	// data.nodex.authz_test.test_agent_may_submit_code.
	Name string `json:"name"`
	// Pass is true when the rule evaluated to true without an error.
	Pass bool `json:"pass"`
	// Error is the evaluation error, if any.
	Error string `json:"error,omitempty"`
	// Location is file:line of the rule.
	Location string `json:"location,omitempty"`
	// DurationNS is the rule's run time in nanoseconds.
	DurationNS int64 `json:"duration_ns"`
}

// Report is the outcome of every test rule in a set.
type Report struct {
	Passed  int      `json:"passed"`
	Failed  int      `json:"failed"`
	Results []Result `json:"results"`
}

// OK reports whether every test passed. A set without tests is OK.
func (r *Report) OK() bool { return r.Failed == 0 }

// Run compiles modules (tests included) with data and runs every test rule,
// each bounded by timeout. A compile error wraps [ErrCompile]; failing tests
// are reported in the Report, not as an error.
func Run(ctx context.Context, modules map[string]string, data map[string]any,
	timeout time.Duration) (*Report, error) {
	parsed := make(map[string]*ast.Module, len(modules))
	for name, src := range modules {
		m, err := ast.ParseModuleWithOpts(name, src, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			return nil, fmt.Errorf("%w: parsing %s: %w", ErrCompile, name, err)
		}
		parsed[name] = m
	}

	if data == nil {
		data = map[string]any{}
	}
	store := inmem.NewFromObject(data)
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return nil, fmt.Errorf("opening store transaction: %w", err)
	}
	defer store.Abort(ctx, txn)

	// Tests compile with the same capabilities as the policies, so a test
	// cannot reach the network or the environment of the policy service.
	compiler := ast.NewCompiler().
		WithCapabilities(authz.Capabilities()).
		WithEnablePrintStatements(false)
	ch, err := tester.NewRunner().
		SetCompiler(compiler).
		SetStore(store).
		SetModules(parsed).
		SetTimeout(timeout).
		RaiseBuiltinErrors(true).
		RunTests(ctx, txn)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCompile, err)
	}

	return collect(ch), nil
}

func collect(ch chan *tester.Result) *Report {
	rep := &Report{Results: []Result{}}
	for tr := range ch {
		r := Result{
			Name:       tr.Package + "." + tr.Name,
			Pass:       tr.Pass(),
			DurationNS: tr.Duration.Nanoseconds(),
		}
		if tr.Error != nil {
			r.Error = tr.Error.Error()
		}
		if tr.Location != nil {
			r.Location = fmt.Sprintf("%s:%d", tr.Location.File, tr.Location.Row)
		}
		if r.Pass {
			rep.Passed++
		} else {
			rep.Failed++
		}
		rep.Results = append(rep.Results, r)
	}
	sort.Slice(rep.Results, func(i, j int) bool { return rep.Results[i].Name < rep.Results[j].Name })

	return rep
}
