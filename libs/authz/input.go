package authz

import (
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// inputValue builds the Rego value of in directly. OPA's generic conversion
// of a Go struct goes through a JSON round trip, which would cost more than
// the evaluation of a small policy.
func inputValue(in *Input) ast.Value {
	s := &in.Subject
	subject := ast.NewObject(
		ast.Item(ast.StringTerm("id"), ast.StringTerm(s.ID)),
		ast.Item(ast.StringTerm("kind"), ast.StringTerm(s.Kind)),
		ast.Item(ast.StringTerm("roles"), stringsTerm(s.Roles)),
		ast.Item(ast.StringTerm("status"), ast.StringTerm(s.Status)),
		ast.Item(ast.StringTerm("attributes"), mapTerm(s.Attributes)),
	)

	resource := ast.NewObject(
		ast.Item(ast.StringTerm("type"), ast.StringTerm(in.Resource.Type)),
		ast.Item(ast.StringTerm("id"), ast.StringTerm(in.Resource.ID)),
		ast.Item(ast.StringTerm("labels"), mapTerm(in.Resource.Labels)),
	)

	c := &in.Context
	findings := make([]*ast.Term, len(c.Findings))
	for i, f := range c.Findings {
		findings[i] = ast.ObjectTerm(
			ast.Item(ast.StringTerm("rule_id"), ast.StringTerm(f.RuleID)),
			ast.Item(ast.StringTerm("severity"), ast.StringTerm(f.Severity)),
			ast.Item(ast.StringTerm("line"), ast.IntNumberTerm(f.Line)),
		)
	}
	context := ast.NewObject(
		ast.Item(ast.StringTerm("time"),
			ast.StringTerm(c.Time.UTC().Format(time.RFC3339Nano))),
		ast.Item(ast.StringTerm("trace_id"), ast.StringTerm(c.TraceID)),
		ast.Item(ast.StringTerm("findings"), ast.ArrayTerm(findings...)),
		ast.Item(ast.StringTerm("purpose"), ast.StringTerm(c.Purpose)),
		ast.Item(ast.StringTerm("provider"), ast.StringTerm(c.Provider)),
		ast.Item(ast.StringTerm("attributes"), mapTerm(c.Attributes)),
	)

	return ast.NewObject(
		ast.Item(ast.StringTerm("subject"), ast.NewTerm(subject)),
		ast.Item(ast.StringTerm("action"), ast.StringTerm(in.Action)),
		ast.Item(ast.StringTerm("resource"), ast.NewTerm(resource)),
		ast.Item(ast.StringTerm("context"), ast.NewTerm(context)),
	)
}

func stringsTerm(ss []string) *ast.Term {
	terms := make([]*ast.Term, len(ss))
	for i, s := range ss {
		terms[i] = ast.StringTerm(s)
	}

	return ast.ArrayTerm(terms...)
}

func mapTerm(m map[string]string) *ast.Term {
	items := make([][2]*ast.Term, 0, len(m))
	for k, v := range m {
		items = append(items, ast.Item(ast.StringTerm(k), ast.StringTerm(v)))
	}

	return ast.ObjectTerm(items...)
}
