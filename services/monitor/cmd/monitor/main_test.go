package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/testkit"
)

func noEnv(string) string { return "" }

func TestPrintDefaultRules(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-print-default-rules"}, noEnv, &out,
		&bytes.Buffer{}); err != nil {
		t.Fatalf("run: %v", err)
	}
	if !strings.Contains(out.String(), "authz-repeated-denials") {
		t.Errorf("output lacks the built-in rules:\n%s", out.String())
	}
}

func TestCheckConfig(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(bad, []byte("version: 1\nrules: [{id: x, kind: nope}]\n"),
		0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr bool
	}{
		{"defaults", []string{"-check-config"}, nil, false},
		{"bad rules file", []string{"-check-config", "-rules", bad}, nil, true},
		{"bad metrics address", []string{"-check-config", "-metrics-addr", "nope"}, nil, true},
		{"bad address from env", []string{"-check-config"},
			map[string]string{"NODEX_MONITOR_METRICS_ADDR": "nope"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string { return tt.env[k] }
			err := run(context.Background(), tt.args, getenv, &bytes.Buffer{}, &bytes.Buffer{})
			if (err != nil) != tt.wantErr {
				t.Errorf("run: got error %v, want error: %v", err, tt.wantErr)
			}
		})
	}
}

func TestRunNeedsCreds(t *testing.T) {
	err := run(context.Background(), nil, noEnv, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "-creds") {
		t.Errorf("run without credentials: got %v, want an error naming -creds", err)
	}
}

func TestRunPlainEvents(t *testing.T) {
	srv := testkit.NATSServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()

	var logs bytes.Buffer
	err := run(ctx, []string{"-server", srv.ClientURL(), "-insecure-plain-events",
		"-metrics-addr", "127.0.0.1:0"}, noEnv, &bytes.Buffer{}, &logs)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, want := range []string{"monitor started", "consumer bound", "monitor stopped"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}
