package sandbox_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

const schemaDir = "../../../schemas/sandbox"

// checkKeys checks that the JSON object data has every property the schema
// file requires and none that it does not list.
func checkKeys(t *testing.T, schemaFile string, data []byte) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(schemaDir, schemaFile))
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Properties map[string]any `json:"properties"`
		Required   []string       `json:"required"`
	}
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatalf("decoding %s: %v", schemaFile, err)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		t.Fatalf("decoding body for %s: %v", schemaFile, err)
	}
	for _, k := range schema.Required {
		if _, ok := obj[k]; !ok {
			t.Errorf("%s: required property %q missing", schemaFile, k)
		}
	}
	for k := range obj {
		if _, ok := schema.Properties[k]; !ok {
			t.Errorf("%s: property %q not in the schema", schemaFile, k)
		}
	}
}
