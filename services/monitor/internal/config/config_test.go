package config

import (
	"errors"
	"testing"
	"time"
)

func TestDefaultsValid(t *testing.T) {
	c := Config{}.WithDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	if c.MetricsAddr != DefaultMetricsAddr {
		t.Errorf("metrics address: got %q, want %q", c.MetricsAddr, DefaultMetricsAddr)
	}
	if c.SeenTTL != DefaultSeenTTL {
		t.Errorf("seen TTL: got %s, want %s", c.SeenTTL, DefaultSeenTTL)
	}
}

func TestValidateRejects(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
	}{
		{"metrics address without port", func(c *Config) { c.MetricsAddr = "localhost" }},
		{"negative flood rate", func(c *Config) { c.FloodRatePerSecond = -1 }},
		{"negative replicas", func(c *Config) { c.Replicas = -3 }},
		{"negative seen TTL", func(c *Config) { c.SeenTTL = -time.Second }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{}.WithDefaults()
			tt.change(&c)
			if err := c.Validate(); !errors.Is(err, ErrInvalid) {
				t.Errorf("Validate: got %v, want ErrInvalid", err)
			}
		})
	}
}

func TestMetricsDisabledValid(t *testing.T) {
	c := Config{MetricsAddr: MetricsDisabled}.WithDefaults()
	if err := c.Validate(); err != nil {
		t.Errorf("MetricsAddr %q: %v", MetricsDisabled, err)
	}
}
