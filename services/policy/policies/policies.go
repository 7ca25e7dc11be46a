// Package policies embeds NodeX's default Rego policies, their Rego unit
// tests and the default role data. The policy service stores them in the
// policy bucket on first start.
package policies

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"

	"github.com/nodexsec/nodex/libs/authz"
)

//go:embed *.rego data.json
var files embed.FS

// Modules returns every embedded Rego file, tests included, by file name.
func Modules() (map[string]string, error) {
	names, err := fs.Glob(files, "*.rego")
	if err != nil {
		return nil, fmt.Errorf("listing embedded policies: %w", err)
	}

	out := make(map[string]string, len(names))
	for _, name := range names {
		b, err := files.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("reading embedded policy %s: %w", name, err)
		}
		out[name] = string(b)
	}

	return out, nil
}

// Data returns the embedded data.json document, default roles included at
// nodex.rbac.
func Data() (map[string]any, error) {
	b, err := files.ReadFile("data.json")
	if err != nil {
		return nil, fmt.Errorf("reading embedded data.json: %w", err)
	}

	var data map[string]any
	if err := json.Unmarshal(b, &data); err != nil {
		return nil, fmt.Errorf("decoding embedded data.json: %w", err)
	}

	return data, nil
}

// RBAC returns the default roles and bindings from data.json.
func RBAC() (authz.RBAC, error) {
	b, err := files.ReadFile("data.json")
	if err != nil {
		return authz.RBAC{}, fmt.Errorf("reading embedded data.json: %w", err)
	}

	var doc struct {
		Nodex struct {
			RBAC authz.RBAC `json:"rbac"`
		} `json:"nodex"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return authz.RBAC{}, fmt.Errorf("decoding embedded data.json: %w", err)
	}
	if err := doc.Nodex.RBAC.Validate(); err != nil {
		return authz.RBAC{}, fmt.Errorf("validating embedded roles: %w", err)
	}

	return doc.Nodex.RBAC, nil
}
