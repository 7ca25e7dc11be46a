// Package config holds the policy service's settings, their defaults and
// their validation.
package config

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/nodexsec/nodex/libs/authz"
)

// ErrInvalid wraps every reason [Config.Validate] rejects a setting for.
var ErrInvalid = errors.New("policy: invalid configuration")

// Config is the policy service's configuration. The zero value takes every
// default.
type Config struct {
	// QueueGroup is the NATS queue group the replicas share. Default "policy".
	QueueGroup string
	// DecideTimeout bounds one policy evaluation. Default
	// authz.DefaultTimeout (2s).
	DecideTimeout time.Duration
	// TestTimeout bounds one Rego test rule during push and test. Default 10s.
	TestTimeout time.Duration
	// MaxPolicyBytes bounds a pushed set: Rego sources plus its JSON data.
	// Default 512 KiB, below the NATS default max payload of 1 MiB.
	MaxPolicyBytes int
	// ActivationWait bounds how long push waits for the service's own
	// engine to load the stored set before replying. Default 5s.
	ActivationWait time.Duration
	// BucketHistory is how many revisions the policy bucket keeps per key,
	// for audit and rollback. Default 16, the JetStream maximum is 64.
	BucketHistory int
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.QueueGroup == "" {
		c.QueueGroup = "policy"
	}
	if c.DecideTimeout <= 0 {
		c.DecideTimeout = authz.DefaultTimeout
	}
	if c.TestTimeout <= 0 {
		c.TestTimeout = 10 * time.Second
	}
	if c.MaxPolicyBytes <= 0 {
		c.MaxPolicyBytes = 512 << 10
	}
	if c.ActivationWait <= 0 {
		c.ActivationWait = 5 * time.Second
	}
	if c.BucketHistory <= 0 {
		c.BucketHistory = 16
	}

	return c
}

// Validate checks c after defaults are applied.
func (c Config) Validate() error {
	if c.BucketHistory > 64 {
		return fmt.Errorf("%w: bucket history %d exceeds the JetStream maximum of 64",
			ErrInvalid, c.BucketHistory)
	}
	if c.MaxPolicyBytes > 1<<20 {
		return fmt.Errorf("%w: max policy bytes %d exceeds 1 MiB, the NATS default "+
			"max payload; raise max_payload on the server first", ErrInvalid, c.MaxPolicyBytes)
	}

	return nil
}

// RegisterFlags binds c's fields to flags on fs. Each flag has an
// environment twin NODEX_POLICY_<FLAG> through libs/conf.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.QueueGroup, "queue-group", c.QueueGroup,
		"NATS queue group shared by the replicas")
	fs.DurationVar(&c.DecideTimeout, "decide-timeout", c.DecideTimeout,
		"maximum time for one policy evaluation")
	fs.DurationVar(&c.TestTimeout, "test-timeout", c.TestTimeout,
		"maximum time for one Rego test rule during push and test")
	fs.IntVar(&c.MaxPolicyBytes, "max-policy-bytes", c.MaxPolicyBytes,
		"maximum size in bytes of a pushed policy set")
	fs.DurationVar(&c.ActivationWait, "activation-wait", c.ActivationWait,
		"maximum time push waits for the new set to be active")
	fs.IntVar(&c.BucketHistory, "bucket-history", c.BucketHistory,
		"revisions the policy bucket keeps per key (at most 64)")
}
