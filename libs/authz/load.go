package authz

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// ErrInvalidPolicySet wraps every reason [Engine.Load] rejects a set for.
var ErrInvalidPolicySet = errors.New("authz: invalid policy set")

// PolicySet is one version of the Rego modules and the data they read.
type PolicySet struct {
	// Revision names this version in decisions and audit events.
	Revision string `json:"revision"`
	// Modules maps a file name to Rego source (rego.v1 syntax). Files named
	// *_test.rego are tests: [Engine.Load] skips them.
	Modules map[string]string `json:"modules"`
	// Data is the document the policies read under `data`, for example the
	// roles and role bindings at data.nodex.rbac.
	Data map[string]any `json:"data,omitempty"`
}

// IsTestModule reports whether name is a Rego test file.
func IsTestModule(name string) bool {
	return strings.HasSuffix(name, "_test.rego")
}

// Load compiles set, prepares the decision query and makes it the active
// set. If anything fails, the previously active set keeps deciding and the
// returned error wraps [ErrInvalidPolicySet].
func (e *Engine) Load(ctx context.Context, set PolicySet) error {
	p, err := prepare(ctx, set, e.opts.Query)
	if err != nil {
		return err
	}
	e.active.Store(p)

	return nil
}

// Check compiles set and prepares query (empty means [DefaultQuery]) exactly
// as [Engine.Load] would, without activating anything. A publisher calls it
// before storing a set that every engine will load.
func Check(ctx context.Context, set PolicySet, query string) error {
	if query == "" {
		query = DefaultQuery
	}
	_, err := prepare(ctx, set, query)

	return err
}

// prepare parses and compiles the non-test modules of set, checks that they
// define query, and prepares query with set.Data. Errors wrap
// [ErrInvalidPolicySet] and carry the compiler's messages with file and line.
func prepare(ctx context.Context, set PolicySet, query string) (*prepared, error) {
	modules, err := parseModules(set.Modules)
	if err != nil {
		return nil, err
	}

	compiler := ast.NewCompiler().WithCapabilities(Capabilities())
	if compiler.Compile(modules); compiler.Failed() {
		return nil, fmt.Errorf("%w: compiling revision %q: %w",
			ErrInvalidPolicySet, set.Revision, compiler.Errors)
	}

	ref, err := ast.ParseRef(query)
	if err != nil {
		return nil, fmt.Errorf("%w: parsing query %q: %w", ErrInvalidPolicySet, query, err)
	}
	if len(compiler.GetRulesExact(ref)) == 0 {
		return nil, fmt.Errorf("%w: revision %q does not define %s",
			ErrInvalidPolicySet, set.Revision, query)
	}

	data := set.Data
	if data == nil {
		data = map[string]any{}
	}
	store := inmem.NewFromObjectWithOpts(data, inmem.OptRoundTripOnWrite(true),
		inmem.OptReturnASTValuesOnRead(true))

	pq, err := rego.New(
		rego.Query(query),
		rego.Compiler(compiler),
		rego.Capabilities(Capabilities()),
		rego.Store(store),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: preparing %s for revision %q: %w",
			ErrInvalidPolicySet, query, set.Revision, err)
	}

	return &prepared{query: pq, revision: set.Revision}, nil
}

// parseModules parses the non-test modules in name order, so that error
// messages come out in a stable order.
func parseModules(src map[string]string) (map[string]*ast.Module, error) {
	names := make([]string, 0, len(src))
	for name := range src {
		if !IsTestModule(name) {
			names = append(names, name)
		}
	}
	sort.Strings(names)

	if len(names) == 0 {
		return nil, fmt.Errorf("%w: no Rego modules besides tests", ErrInvalidPolicySet)
	}

	modules := make(map[string]*ast.Module, len(names))
	for _, name := range names {
		m, err := ast.ParseModuleWithOpts(name, src[name], ast.ParserOptions{
			RegoVersion: ast.RegoV1,
		})
		if err != nil {
			return nil, fmt.Errorf("%w: parsing %s: %w", ErrInvalidPolicySet, name, err)
		}
		modules[name] = m
	}

	return modules, nil
}
