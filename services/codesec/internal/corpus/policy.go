package corpus

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nodexsec/nodex/libs/authz"
)

// ShippedPolicy reads the default Rego policy and role data that the policy
// service ships (services/policy/policies/authz.rego and data.json), so
// tests decide with the real policy in a real OPA engine. It reads files;
// it does not import the policy service.
func ShippedPolicy() (authz.PolicySet, error) {
	root, err := repoRoot()
	if err != nil {
		return authz.PolicySet{}, err
	}
	dir := filepath.Join(root, "services", "policy", "policies")
	rego, err := os.ReadFile(filepath.Join(dir, "authz.rego"))
	if err != nil {
		return authz.PolicySet{}, fmt.Errorf("reading shipped policy: %w", err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "data.json"))
	if err != nil {
		return authz.PolicySet{}, fmt.Errorf("reading shipped role data: %w", err)
	}
	var data map[string]any
	if err := json.Unmarshal(raw, &data); err != nil {
		return authz.PolicySet{}, fmt.Errorf("decoding shipped role data: %w", err)
	}

	return authz.PolicySet{Revision: "shipped", Modules: map[string]string{"authz.rego": string(rego)},
		Data: data}, nil
}

func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("locating repository root: %w", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("locating repository root: no go.work above %s", wd)
		}
	}
}
