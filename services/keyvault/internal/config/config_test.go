package config

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestValidateNeedsKEK(t *testing.T) {
	err := Config{}.WithDefaults().Validate()
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "NODEX_KEYVAULT_KEK") {
		t.Errorf("Validate without KEK = %v, want ErrInvalid naming NODEX_KEYVAULT_KEK", err)
	}
	if err := (Config{KEKFile: "k"}).WithDefaults().Validate(); err != nil {
		t.Errorf("Validate with a KEK file: %v", err)
	}
}

func TestLogValueMasksKEK(t *testing.T) {
	var buf bytes.Buffer
	cfg := Config{KEK: "1 c2VjcmV0LWtleS1tYXRlcmlhbA=="}.WithDefaults()
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("m", "config", cfg)
	if strings.Contains(buf.String(), "c2VjcmV0") {
		t.Errorf("logged config contains the KEK: %s", buf.String())
	}
}

func TestLoadFlagsOverEnv(t *testing.T) {
	env := map[string]string{
		"NODEX_KEYVAULT_KEK_FILE":    "/env/kek",
		"NODEX_KEYVAULT_GRACE":       "2h",
		"NODEX_KEYVAULT_DAILY_QUOTA": "7",
	}
	c, err := Load([]string{"-grace", "30m"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.KEKFile != "/env/kek" {
		t.Errorf("KEKFile = %q, want /env/kek from the environment", c.KEKFile)
	}
	if c.Grace != 30*time.Minute {
		t.Errorf("Grace = %s, want 30m from the flag", c.Grace)
	}
	if c.DailyQuota != 7 {
		t.Errorf("DailyQuota = %d, want 7", c.DailyQuota)
	}
}
