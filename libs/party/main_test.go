package party

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"log/slog"
	"strings"
	"testing"
)

func testBinary(limit *int, validated *bool) Binary {
	return Binary{
		Name: "probe", EnvPrefix: "NODEX_PROBE",
		RegisterFlags: func(fs *flag.FlagSet) { fs.IntVar(limit, "limit", 1, "") },
		Config:        func() any { return struct{ Limit int }{*limit} },
		Validate:      func() error { *validated = true; return nil },
		Run: func(context.Context, *Party, *slog.Logger) error {
			return errors.New("run must not be reached with -check-config")
		},
	}
}

func TestBinaryCheckConfig(t *testing.T) {
	var limit int
	var validated bool
	env := map[string]string{"NATS_URL": "nats://127.0.0.1:1", "NODEX_CREDS": "x.creds",
		"NODEX_PROBE_LIMIT": "7"}
	var out, errOut bytes.Buffer
	err := testBinary(&limit, &validated).run(context.Background(), []string{"-check-config"},
		func(k string) string { return env[k] }, &out, &errOut)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if limit != 7 {
		t.Errorf("limit = %d, want 7 from NODEX_PROBE_LIMIT", limit)
	}
	if !validated {
		t.Error("Validate was not called")
	}
	if !strings.Contains(out.String(), "configuration valid") {
		t.Errorf("stdout = %q, want configuration valid", out.String())
	}
}

func TestBinaryRequiresServer(t *testing.T) {
	var limit int
	var validated bool
	err := testBinary(&limit, &validated).run(context.Background(), nil,
		func(string) string { return "" }, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "NATS_URL") {
		t.Errorf("run without a server: error = %v, want one naming NATS_URL", err)
	}
}
