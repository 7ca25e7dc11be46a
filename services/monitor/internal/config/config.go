// Package config holds the monitor's configuration, its defaults and its
// validation.
package config

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/nodexsec/nodex/libs/events"
)

// Defaults for zero fields of [Config].
const (
	DefaultSelf                = "monitor"
	DefaultMetricsAddr         = "127.0.0.1:9464"
	DefaultFloodRatePerSecond  = 2_000
	DefaultFloodBurst          = 10_000
	DefaultFloodReportInterval = 10 * time.Second
	DefaultReloadInterval      = 10 * time.Second
	DefaultThreatTTL           = 24 * time.Hour
	DefaultDrainTimeout        = 10 * time.Second

	// DefaultReportRatePerSecond and DefaultReportBurst size each agent's
	// token bucket on nodex.v1.monitor.report: enough for an agent that
	// reports what it does, far too little to fill NODEX_EVENTS.
	DefaultReportRatePerSecond = 2
	DefaultReportBurst         = 20

	// DefaultSeenTTL matches the events stream's default retention, so an
	// event redelivered after any outage the stream survives is still
	// recognized.
	DefaultSeenTTL = events.DefaultMaxAge

	// MetricsDisabled as MetricsAddr turns the Prometheus endpoint off.
	MetricsDisabled = "off"
)

// Config is the monitor's configuration. The zero value (with
// InsecurePlainEvents or an envelope codec in the dependencies) runs the
// built-in rules with the defaults above.
type Config struct {
	// Self is the monitor's identity id, the source of the events it
	// raises itself; default the bus client's id, else "monitor".
	Self string

	// RulesFile is the YAML rule file; empty runs the built-in rules. The
	// file is read again every ReloadInterval and on each receive from
	// the Reload channel of the dependencies.
	RulesFile      string
	ReloadInterval time.Duration

	// MetricsAddr is the host:port of the Prometheus /metrics endpoint;
	// default 127.0.0.1:9464, "off" for none. It is ignored when the
	// dependencies bring their own meter provider.
	MetricsAddr string

	// FloodRatePerSecond and FloodBurst size each event source's token
	// bucket, in events per second of stream time. Events above it are
	// shed, counted and reported.
	FloodRatePerSecond  int
	FloodBurst          int
	FloodReportInterval time.Duration

	// ReportRatePerSecond and ReportBurst size each agent's token bucket
	// for events it reports on nodex.v1.monitor.report; defaults 2 and
	// 20. A report above it gets the rate_limited error.
	ReportRatePerSecond float64
	ReportBurst         int

	// SeenTTL is how long the id of an event that became threat evidence is kept
	// to recognize a redelivery. ThreatTTL is how long an open threat is
	// kept for restarts; it must cover the longest rule dedupe time.
	SeenTTL   time.Duration
	ThreatTTL time.Duration

	// Replicas of the monitor's streams and KV buckets; default 1.
	Replicas int

	// DrainTimeout bounds how long messages in flight at shutdown may take
	// to finish; default 10 s.
	DrainTimeout time.Duration

	// InsecurePlainEvents reads events stored as plain JSON and trusts
	// their source field. It is for tests and single-process development
	// only, where nothing but NodeX services can publish events.
	InsecurePlainEvents bool
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Self == "" {
		c.Self = DefaultSelf
	}
	if c.MetricsAddr == "" {
		c.MetricsAddr = DefaultMetricsAddr
	}
	if c.FloodRatePerSecond == 0 {
		c.FloodRatePerSecond = DefaultFloodRatePerSecond
	}
	if c.FloodBurst == 0 {
		c.FloodBurst = DefaultFloodBurst
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.ReportRatePerSecond == 0 {
		c.ReportRatePerSecond = DefaultReportRatePerSecond
	}
	if c.ReportBurst == 0 {
		c.ReportBurst = DefaultReportBurst
	}
	set(&c.FloodReportInterval, DefaultFloodReportInterval)
	set(&c.ReloadInterval, DefaultReloadInterval)
	set(&c.SeenTTL, DefaultSeenTTL)
	set(&c.ThreatTTL, DefaultThreatTTL)
	set(&c.DrainTimeout, DefaultDrainTimeout)

	return c
}

// ErrInvalid marks an invalid configuration.
var ErrInvalid = errors.New("monitor: invalid configuration")

// Validate checks c after [Config.WithDefaults].
func (c Config) Validate() error {
	if c.MetricsAddr != MetricsDisabled {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			return fmt.Errorf("%w: metrics address %q is not host:port or %q: %w",
				ErrInvalid, c.MetricsAddr, MetricsDisabled, err)
		}
	}
	for name, v := range map[string]int{
		"flood rate": c.FloodRatePerSecond, "flood burst": c.FloodBurst, "replicas": c.Replicas,
		"report burst": c.ReportBurst,
	} {
		if v < 1 {
			return fmt.Errorf("%w: %s %d must be >= 1", ErrInvalid, name, v)
		}
	}
	if c.ReportRatePerSecond <= 0 {
		return fmt.Errorf("%w: report rate %g must be > 0", ErrInvalid, c.ReportRatePerSecond)
	}
	for name, v := range map[string]time.Duration{
		"flood report interval": c.FloodReportInterval, "reload interval": c.ReloadInterval,
		"seen TTL": c.SeenTTL, "threat TTL": c.ThreatTTL, "drain timeout": c.DrainTimeout,
	} {
		if v <= 0 {
			return fmt.Errorf("%w: %s %s must be > 0", ErrInvalid, name, v)
		}
	}

	return nil
}
