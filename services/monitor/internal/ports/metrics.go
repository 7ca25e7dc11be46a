// Package ports holds the monitor's inbound side: the durable consumer of
// the events stream, the OpenTelemetry instruments it records into, and
// the query handlers.
package ports

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/nodexsec/nodex/services/monitor/internal/app"
)

// Metrics records the detector's counters as OpenTelemetry instruments.
// With the Prometheus exporter they appear as nodex_monitor_events_total
// and so on.
type Metrics struct {
	events     metric.Int64Counter
	decisions  metric.Int64Counter
	rejected   metric.Int64Counter
	threats    metric.Int64Counter
	shed       metric.Int64Counter
	duplicates metric.Int64Counter
	dropped    metric.Int64Counter
	lag        metric.Float64Histogram
}

var _ app.Metrics = (*Metrics)(nil)

// NewMetrics creates the instruments on meter.
func NewMetrics(meter metric.Meter) (*Metrics, error) {
	var m Metrics
	var err error
	counters := []struct {
		into *metric.Int64Counter
		name string
		desc string
	}{
		{&m.events, "nodex.monitor.events", "security events processed, by type and status"},
		{&m.decisions, "nodex.monitor.decisions", "authorization decision events, by outcome"},
		{&m.rejected, "nodex.monitor.rejected", "stored messages rejected, by reason"},
		{&m.threats, "nodex.monitor.threats", "threats raised, by type"},
		{&m.shed, "nodex.monitor.shed", "events shed from flooding sources, by source"},
		{&m.duplicates, "nodex.monitor.duplicates", "redelivered events skipped as seen"},
		{&m.dropped, "nodex.monitor.groups_dropped",
			"events not tracked because their rule kept the maximum number of groups"},
	}
	for _, c := range counters {
		if *c.into, err = meter.Int64Counter(c.name, metric.WithDescription(c.desc)); err != nil {
			return nil, fmt.Errorf("creating counter %s: %w", c.name, err)
		}
	}
	m.lag, err = meter.Float64Histogram("nodex.monitor.ingest_lag",
		metric.WithUnit("s"),
		metric.WithDescription("time from stream storage to processing"),
		metric.WithExplicitBucketBoundaries(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 300))
	if err != nil {
		return nil, fmt.Errorf("creating ingest lag histogram: %w", err)
	}

	return &m, nil
}

var bg = context.Background()

// Event implements [app.Metrics].
func (m *Metrics) Event(eventType, status string) {
	m.events.Add(bg, 1, metric.WithAttributes(
		attribute.String("event_type", eventType), attribute.String("status", status)))
}

// Decision implements [app.Metrics].
func (m *Metrics) Decision(outcome string) {
	m.decisions.Add(bg, 1, metric.WithAttributes(attribute.String("outcome", outcome)))
}

// Rejected implements [app.Metrics].
func (m *Metrics) Rejected(reason string) {
	m.rejected.Add(bg, 1, metric.WithAttributes(attribute.String("reason", reason)))
}

// Threat implements [app.Metrics].
func (m *Metrics) Threat(threatType string) {
	m.threats.Add(bg, 1, metric.WithAttributes(attribute.String("threat_type", threatType)))
}

// Shed implements [app.Metrics].
func (m *Metrics) Shed(source string, n int) {
	m.shed.Add(bg, int64(n), metric.WithAttributes(attribute.String("source", source)))
}

// Duplicate implements [app.Metrics].
func (m *Metrics) Duplicate() { m.duplicates.Add(bg, 1) }

// GroupsDropped implements [app.Metrics].
func (m *Metrics) GroupsDropped(n int) { m.dropped.Add(bg, int64(n)) }

// Lag implements [app.Metrics].
func (m *Metrics) Lag(d time.Duration) { m.lag.Record(bg, d.Seconds()) }
