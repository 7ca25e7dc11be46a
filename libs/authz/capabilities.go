package authz

import (
	"slices"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
)

// ExcludedBuiltins are the OPA built-ins that policies may not call. Every
// service evaluates the policies in its own process, so a pushed policy must
// not reach the network (http.send, net.lookup_ip_addr) or read the process
// environment, where a service may hold secrets (opa.runtime).
var ExcludedBuiltins = []string{"http.send", "net.lookup_ip_addr", "opa.runtime"}

var capabilities = sync.OnceValue(func() *ast.Capabilities {
	c := ast.CapabilitiesForThisVersion()
	c.Builtins = slices.DeleteFunc(slices.Clone(c.Builtins), func(b *ast.Builtin) bool {
		return slices.Contains(ExcludedBuiltins, b.Name)
	})
	c.AllowNet = []string{}

	return c
})

// Capabilities returns the OPA capabilities that policy sets compile with:
// every built-in of the linked OPA version except [ExcludedBuiltins], and no
// network hosts. The result is shared and must not be modified.
func Capabilities() *ast.Capabilities {
	return capabilities()
}
