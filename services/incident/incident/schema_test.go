package incident_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nodexsec/nodex/services/incident/internal/domain"
	"github.com/nodexsec/nodex/services/incident/internal/ports"
)

const schemaDir = "../../../schemas/incident"

// checkSchema reports every place where v does not fit schema: a missing
// required field, a field the schema does not list, or a value outside an
// enum. It follows "$ref" to files in schemaDir and supports the subset of
// JSON Schema those files use.
func checkSchema(t *testing.T, path string, schema map[string]any, v any) {
	t.Helper()
	if ref, ok := schema["$ref"].(string); ok {
		schema = loadSchema(t, ref)
	}
	if enum, ok := schema["enum"].([]any); ok && !slices.Contains(enum, v) {
		t.Errorf("%s: %v is not in %v", path, v, enum)
	}
	switch val := v.(type) {
	case map[string]any:
		props, _ := schema["properties"].(map[string]any)
		for _, req := range anyStrings(schema["required"]) {
			if _, ok := val[req]; !ok {
				t.Errorf("%s: required field %q missing", path, req)
			}
		}
		for key, child := range val {
			sub, ok := props[key].(map[string]any)
			if !ok {
				if schema["additionalProperties"] == false {
					t.Errorf("%s: field %q not in the schema", path, key)
				}
				continue
			}
			checkSchema(t, path+"."+key, sub, child)
		}
	case []any:
		items, _ := schema["items"].(map[string]any)
		for i, child := range val {
			checkSchema(t, fmt.Sprintf("%s[%d]", path, i), items, child)
		}
	}
}

func anyStrings(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, x := range list {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}

	return out
}

func loadSchema(t *testing.T, name string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(schemaDir, name))
	if err != nil {
		t.Fatalf("reading schema: %v", err)
	}
	var s map[string]any
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatalf("decoding schema %s: %v", name, err)
	}

	return s
}

func asJSON(t *testing.T, v any) any {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}

	return out
}

// fullIncident returns an incident with every optional part filled in.
func fullIncident(t *testing.T) *domain.Incident {
	t.Helper()
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	inc := domain.New("inc-1", domain.CodeInjection,
		domain.IdentityInfo{ID: "agent-demo", Kind: domain.KindAgent, Status: "active",
			Known: true}, now)
	inc.MergeThreat(&domain.Threat{ID: "thr_1", Revision: 1, Type: "CODE_INJECTION",
		Severity: domain.SeverityHigh, Identity: "agent-demo", RuleID: "r",
		Resources:   []domain.Resource{{Type: "bundle", ID: "b1", Labels: map[string]string{"a": "b"}}},
		Description: "d", Evidence: []string{"e1"}, TraceIDs: []string{"tr"},
		FirstSeen: now, LastSeen: now, Count: 2}, now)
	inc.Assess()
	if err := inc.Move(domain.StateAssessed, "incident", "scored", now); err != nil {
		t.Fatal(err)
	}
	inc.Plan([]domain.ActionRule{{Kind: domain.ActRevokeBundle, Mode: domain.ModeAuto},
		{Kind: domain.ActSuspendIdentity, Mode: domain.ModeAuto, Expiry: time.Hour},
		{Kind: domain.ActDisableKeyVersion, Mode: domain.ModeAuto}},
		domain.Escalation{}, []string{"operator"}, now)
	inc.RecordAttempt(&inc.Actions[0], "incident", "revoked", nil, now)
	inc.RecordAttempt(&inc.Actions[1], "incident", "suspended", nil, now)
	inc.RecordLift(&inc.Actions[1], "operator", "false positive", "active", nil, now)
	inc.Assignee = "operator"
	inc.Timeline = []domain.TimelineRow{{EventID: "e1", Time: now, Type: "codesec.finding",
		Source: "codesec", Subject: "agent-demo", Action: "submit", Resource: "bundle:b1",
		Status: "failure", Severity: "high", TraceID: "tr", Evidence: true}}
	inc.AuditedThrough = 1

	return inc
}

func TestRepliesMatchSchemas(t *testing.T) {
	inc := fullIncident(t)
	report := inc.BuildReport(inc.UpdatedAt)
	tests := []struct {
		schema string
		value  any
	}{
		{"incident.schema.json", inc},
		{"get-reply.schema.json", ports.GetReply{Incident: inc}},
		{"list-reply.schema.json", ports.ListReply{Incidents: []domain.Summary{inc.Summarize()}}},
		{"report-reply.schema.json", ports.ReportReply{Report: report, Markdown: "#"}},
		{"update-request.schema.json", ports.UpdateRequest{ID: "inc-1", Verb: "lift",
			Reason: "r", ActionID: "a1"}},
		{"list-request.schema.json", ports.ListRequest{State: domain.StateOpen, Open: true}},
		{"get-request.schema.json", ports.GetRequest{ID: "inc-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.schema, func(t *testing.T) {
			checkSchema(t, tt.schema, loadSchema(t, tt.schema), asJSON(t, tt.value))
		})
	}
}
