// Package config holds the keyvault's configuration, its defaults and its
// validation.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults for zero fields.
const (
	DefaultGrace         = 24 * time.Hour
	DefaultSweepInterval = time.Minute
	DefaultRatePerSecond = 5
	DefaultBurst         = 20
	DefaultDailyQuota    = 10_000
)

// Config configures the keyvault. The zero value of each field but the KEK
// source takes its default.
type Config struct {
	// KEKFile is the keyring file (mode 0600). `nodex dev` creates one under
	// .nodex/. It is used when KEK is empty.
	KEKFile string
	// KEK is keyring text from the environment (NODEX_KEYVAULT_KEK): lines
	// or ';'-separated entries "<version> <base64 key>". It is secret.
	KEK string `conf:"secret"`
	// Grace is how long a rotated version stays retrievable.
	Grace time.Duration
	// SweepInterval is how often versions past their grace are retired.
	SweepInterval time.Duration
	// RatePerSecond and Burst set each caller's retrieve token bucket, per
	// process; a negative RatePerSecond disables it.
	RatePerSecond float64
	Burst         int
	// DailyQuota bounds each caller's retrieves per UTC day; negative
	// disables it.
	DailyQuota int
	// Replicas is the replication factor of the KV buckets; zero means 1.
	Replicas int
}

// ErrInvalid wraps every validation failure.
var ErrInvalid = errors.New("keyvault: invalid configuration")

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Grace == 0 {
		c.Grace = DefaultGrace
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = DefaultSweepInterval
	}
	if c.RatePerSecond == 0 {
		c.RatePerSecond = DefaultRatePerSecond
	}
	if c.Burst == 0 {
		c.Burst = DefaultBurst
	}
	if c.DailyQuota == 0 {
		c.DailyQuota = DefaultDailyQuota
	}

	return c
}

// Validate checks c after defaults.
func (c Config) Validate() error {
	if c.KEKFile == "" && c.KEK == "" {
		return fmt.Errorf("%w: no key encryption key: set NODEX_KEYVAULT_KEK_FILE to a "+
			"keyring file (`nodex dev` creates .nodex/keyvault.kek) or NODEX_KEYVAULT_KEK",
			ErrInvalid)
	}
	if c.Grace < 0 || c.SweepInterval <= 0 {
		return fmt.Errorf("%w: grace %s and sweep interval %s must not be negative",
			ErrInvalid, c.Grace, c.SweepInterval)
	}
	if c.Replicas < 0 || c.Replicas > 5 {
		return fmt.Errorf("%w: replicas %d must be 0 to 5", ErrInvalid, c.Replicas)
	}

	return nil
}

// LogValue implements [slog.LogValuer] and masks the KEK.
func (c Config) LogValue() slog.Value {
	kek := ""
	if c.KEK != "" {
		kek = "[REDACTED]"
	}

	return slog.GroupValue(slog.String("kek_file", c.KEKFile), slog.String("kek", kek),
		slog.Duration("grace", c.Grace), slog.Duration("sweep_interval", c.SweepInterval),
		slog.Float64("rate_per_second", c.RatePerSecond), slog.Int("burst", c.Burst),
		slog.Int("daily_quota", c.DailyQuota), slog.Int("replicas", c.Replicas))
}
