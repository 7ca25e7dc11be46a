package config

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
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
