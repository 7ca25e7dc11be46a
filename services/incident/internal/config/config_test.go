package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nodexsec/nodex/services/incident/internal/domain"
)

func TestDefaultsValidate(t *testing.T) {
	c, err := Config{}.WithDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	for _, typ := range domain.Types {
		if len(c.Playbook.Types[typ]) == 0 {
			t.Errorf("default playbook has no steps for %s", typ)
		}
	}
}

func TestLoadPlaybookFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "playbook.json")
	body := `{"types": {"API_ABUSE": [{"action": "tighten_rate_limit", "mode": "approval",
		"expiry": "30m"}]}, "escalation": {"factor": 3, "max_expiry": "12h"}}`
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Config{PlaybookFile: path}.WithDefaults()
	if err != nil {
		t.Fatalf("loading playbook: %v", err)
	}
	rules, esc := c.Playbook.Rules()
	got := rules[domain.APIAbuse]
	if len(got) != 1 || got[0].Mode != domain.ModeApproval || got[0].Expiry != 30*time.Minute {
		t.Errorf("API_ABUSE rules = %+v", got)
	}
	if esc.Factor != 3 || esc.MaxExpiry != 12*time.Hour {
		t.Errorf("escalation = %+v", esc)
	}
}

func TestPlaybookValidateRejects(t *testing.T) {
	tests := []struct {
		name string
		step Step
		typ  domain.Type
	}{
		{"unknown action", Step{Action: "delete_everything", Mode: domain.ModeAuto},
			domain.APIAbuse},
		{"unknown mode", Step{Action: domain.ActAlert, Mode: "sometimes"}, domain.APIAbuse},
		{"expiry on a revocation", Step{Action: domain.ActRevokeBundle, Mode: domain.ModeAuto,
			Expiry: Duration(time.Hour)}, domain.CodeInjection},
		{"lower case type", Step{Action: domain.ActAlert, Mode: domain.ModeAuto},
			"api_abuse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Playbook{Types: map[domain.Type][]Step{tt.typ: {tt.step}}}
			if err := p.Validate(); !errors.Is(err, ErrInvalid) {
				t.Errorf("Validate() = %v, want ErrInvalid", err)
			}
		})
	}
}
