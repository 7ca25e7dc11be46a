package conf

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestApplyEnvPrecedence(t *testing.T) {
	env := map[string]string{
		"NODEX_X_DRAIN_TIMEOUT": "9s",
		"NODEX_X_ADDR":          "127.0.0.1:9",
	}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	drain := fs.Duration("drain-timeout", time.Second, "")
	addr := fs.String("addr", "default", "")
	level := fs.String("level", "info", "")
	if err := fs.Parse([]string{"-addr", "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	if err := ApplyEnv(fs, "NODEX_X", func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if *addr != "127.0.0.1:1" {
		t.Errorf("addr = %q, want the flag's value", *addr)
	}
	if *drain != 9*time.Second {
		t.Errorf("drain = %v, want the environment's 9s", *drain)
	}
	if *level != "info" {
		t.Errorf("level = %q, want the default", *level)
	}
}

func TestApplyEnvNamesVariable(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.Duration("drain-timeout", time.Second, "")
	_ = fs.Parse(nil)
	err := ApplyEnv(fs, "NODEX_X", func(string) string { return "soon" })
	if err == nil || !strings.Contains(err.Error(), "NODEX_X_DRAIN_TIMEOUT") {
		t.Errorf("error = %v, want one naming NODEX_X_DRAIN_TIMEOUT", err)
	}
}

func TestMasked(t *testing.T) {
	type inner struct {
		Token string `conf:"secret"`
		Port  int
	}
	cfg := struct {
		KEK     string `conf:"secret"`
		Empty   string `conf:"secret"`
		Name    string
		Timeout time.Duration
		Inner   inner
		hidden  string
	}{KEK: "topsecret", Name: "kv", Timeout: time.Second, Inner: inner{Token: "t", Port: 4}, hidden: "h"}
	want := map[string]any{
		"KEK": "[REDACTED]", "Empty": "", "Name": "kv", "Timeout": time.Second,
		"Inner.Token": "[REDACTED]", "Inner.Port": 4,
	}
	if diff := cmp.Diff(want, Masked(&cfg)); diff != "" {
		t.Errorf("Masked mismatch (-want +got):\n%s", diff)
	}
}

func TestKnobs(t *testing.T) {
	v := Knob("NODEX_DEBUG_TESTKNOB", func(string) string { return "1" })
	if v != "1" {
		t.Fatalf("Knob = %q, want 1", v)
	}
	found := false
	for _, k := range Knobs() {
		found = found || k == "NODEX_DEBUG_TESTKNOB=1"
	}
	if !found {
		t.Errorf("Knobs() = %v, want NODEX_DEBUG_TESTKNOB=1 listed", Knobs())
	}
}
