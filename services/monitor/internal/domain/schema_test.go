package domain

import (
	"encoding/json"
	"os"
	"slices"
	"testing"
	"time"
)

// TestThreatMatchesSchema checks the threat's JSON keys against
// schemas/monitor/threat.schema.json: every key is a schema property and
// every required property is present.
func TestThreatMatchesSchema(t *testing.T) {
	raw, err := os.ReadFile("../../../../schemas/monitor/threat.schema.json")
	if err != nil {
		t.Fatalf("reading threat schema: %v", err)
	}
	var schema struct {
		Required   []string                   `json:"required"`
		Properties map[string]json.RawMessage `json:"properties"`
	}
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatalf("decoding threat schema: %v", err)
	}

	th := Threat{ID: "thr_0123456789abcdef01234567", Revision: 1, Type: ThreatAPIAbuse,
		Severity: "low", Identity: "agent-1", Origin: "subject:x", Group: `identity="a"`,
		Resources: []string{"key:openai"}, RuleID: "r", Evidence: []string{"e"},
		FirstSeen: time.Now(), LastSeen: time.Now(), Count: 1}
	data, err := json.Marshal(th)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}

	for key := range got {
		if _, ok := schema.Properties[key]; !ok {
			t.Errorf("threat key %q is not in the schema", key)
		}
	}
	for _, key := range schema.Required {
		if _, ok := got[key]; !ok {
			t.Errorf("required key %q missing from threat JSON", key)
		}
	}
	for key := range schema.Properties {
		if _, ok := got[key]; !ok && !slices.Contains([]string{"identity"}, key) {
			t.Errorf("schema property %q never appears in threat JSON", key)
		}
	}
}
