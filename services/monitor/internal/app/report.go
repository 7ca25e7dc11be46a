package app

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/ratelimit"
	"github.com/nodexsec/nodex/services/monitor/internal/domain"
)

// Limits on one report on nodex.v1.monitor.report, tighter than a
// SecurityEvent's, so that agents' reports stay small in NODEX_EVENTS.
// schemas/monitor/report-request.schema.json states the same limits.
const (
	MaxReportBodyBytes       = 8 << 10
	MaxReportFieldBytes      = 256
	MaxReportMetadataEntries = 16
	MaxReportMetadataKey     = 64
	MaxReportMetadataValue   = 512
)

// MaxReportSeverity is the highest severity an agent may report. A higher
// one is stored as this, with the requested one in metadata
// "requested_severity": an agent's word alone is no critical event.
const MaxReportSeverity = events.SeverityMedium

// Metadata keys the monitor sets on a reported event, overwriting any
// value the agent sent under the same key.
const (
	MetaReportedVia        = "reported_via"
	MetaRequestedSeverity  = "requested_severity"
	ReportedViaMonitorName = "nodex.v1.monitor.report"
)

// Report is the body of a nodex.v1.monitor.report request: an event an
// agent reports about itself. It has no id, time, source or subject, because the
// monitor sets those.
type Report struct {
	// Type is one token such as "task_failed"; "agent.task_failed" is
	// accepted too. The stored type is always "agent.<token>".
	Type     string            `json:"type"`
	Action   string            `json:"action,omitempty"`
	Resource string            `json:"resource,omitempty"`
	Status   string            `json:"status,omitempty"`
	Severity string            `json:"severity,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// ReportReply is the reply to a stored report.
type ReportReply struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Severity string `json:"severity"`
}

// ReportSink stores one reported event and returns after the stream
// acknowledged it. libs/events' Publisher implements it.
type ReportSink interface {
	PublishReportedSync(ctx context.Context, ev events.SecurityEvent) error
}

// Errors of [Reporter.Report]; callers map them to coded errors.
var (
	ErrReportInvalid     = errors.New("monitor: invalid report")
	ErrReportRateLimited = errors.New("monitor: report rate limit reached")
	ErrReportNotAgent    = errors.New("monitor: only agents report events")
)

var reportTokenRE = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)

// Reporter turns agents' reports into stored security events. It is safe
// for concurrent use.
type Reporter struct {
	sink    ReportSink
	rate    float64
	now     func() time.Time
	limiter *ratelimit.PerKey
	shed    func(reporter string, at time.Time)
}

// maxReportBuckets bounds the per-agent buckets kept; full ones are
// dropped first.
const maxReportBuckets = 100_000

// NewReporter returns a Reporter that stores reports through sink and lets
// each agent report ratePerSecond events, burst at once. now is the clock;
// nil means time.Now.
func NewReporter(sink ReportSink, ratePerSecond float64, burst int,
	now func() time.Time) *Reporter {
	if sink == nil {
		panic("app: NewReporter with a nil sink")
	}
	if now == nil {
		now = time.Now
	}

	return &Reporter{sink: sink, rate: ratePerSecond, now: now,
		limiter: ratelimit.New(ratePerSecond, burst, maxReportBuckets, now)}
}

// OnShed sets the function that counts each report rejected for exceeding
// its reporter's rate, so the rejections are reported as that reporter's
// flood ([Detector.ShedReport]). Call it before serving reports.
func (p *Reporter) OnShed(fn func(reporter string, at time.Time)) { p.shed = fn }

// Report validates r from the authenticated identity sender of kind
// senderKind, stores it as an event whose source and subject are sender,
// and returns its id. bodyBytes is the size of the request's JSON.
func (p *Reporter) Report(ctx context.Context, sender, senderKind string, bodyBytes int,
	r Report) (ReportReply, error) {
	if senderKind != "agent" {
		return ReportReply{}, fmt.Errorf("%w: %q is a %s", ErrReportNotAgent, sender, senderKind)
	}
	if bodyBytes > MaxReportBodyBytes {
		return ReportReply{}, fmt.Errorf("%w: body is %d bytes, max %d", ErrReportInvalid,
			bodyBytes, MaxReportBodyBytes)
	}
	if !p.limiter.Allow(sender) {
		if p.shed != nil {
			p.shed(sender, p.now())
		}
		return ReportReply{}, fmt.Errorf("%w: %s may report %g events per second",
			ErrReportRateLimited, sender, p.rate)
	}
	ev, err := BuildReportEvent(sender, r, p.now())
	if err != nil {
		return ReportReply{}, err
	}
	if err := p.sink.PublishReportedSync(ctx, ev); err != nil {
		return ReportReply{}, fmt.Errorf("storing reported event %s: %w", ev.ID, err)
	}

	return ReportReply{ID: ev.ID, Type: ev.Type, Severity: ev.Severity}, nil
}

// BuildReportEvent checks r and returns the event it becomes: type
// "agent.<token>", source and subject sender, severity capped at
// [MaxReportSeverity], the monitor's own metadata keys set, a new id, and
// at as its time.
func BuildReportEvent(sender string, r Report, at time.Time) (events.SecurityEvent, error) {
	name := strings.TrimPrefix(r.Type, domain.ReportedTypeSource+".")
	if !reportTokenRE.MatchString(name) {
		return events.SecurityEvent{}, fmt.Errorf(
			"%w: type %q must be one token of a-z, 0-9 and _ (at most 64), stored as agent.<type>",
			ErrReportInvalid, r.Type)
	}
	for field, v := range map[string]string{"action": r.Action, "resource": r.Resource} {
		if len(v) > MaxReportFieldBytes {
			return events.SecurityEvent{}, fmt.Errorf("%w: %s is %d bytes, max %d",
				ErrReportInvalid, field, len(v), MaxReportFieldBytes)
		}
	}
	status := r.Status
	if status == "" {
		status = events.StatusSuccess
	}
	if status != events.StatusSuccess && status != events.StatusFailure {
		return events.SecurityEvent{}, fmt.Errorf("%w: status %q must be success or failure",
			ErrReportInvalid, r.Status)
	}
	severity := r.Severity
	if severity == "" {
		severity = events.SeverityInfo
	}
	rank := events.SeverityRank(severity)
	if rank < 0 {
		return events.SecurityEvent{}, fmt.Errorf(
			"%w: severity %q must be info, low, medium, high or critical", ErrReportInvalid,
			r.Severity)
	}
	if len(r.Metadata) > MaxReportMetadataEntries {
		return events.SecurityEvent{}, fmt.Errorf("%w: %d metadata entries, max %d",
			ErrReportInvalid, len(r.Metadata), MaxReportMetadataEntries)
	}
	meta := make(map[string]string, len(r.Metadata)+2)
	for k, v := range r.Metadata {
		if len(k) > MaxReportMetadataKey || !reportTokenRE.MatchString(k) {
			return events.SecurityEvent{}, fmt.Errorf(
				"%w: metadata key %q must be a-z, 0-9 and _ (at most %d)", ErrReportInvalid,
				domain.Escape(k), MaxReportMetadataKey)
		}
		if len(v) > MaxReportMetadataValue {
			return events.SecurityEvent{}, fmt.Errorf("%w: metadata %q is %d bytes, max %d",
				ErrReportInvalid, k, len(v), MaxReportMetadataValue)
		}
		meta[k] = v
	}
	delete(meta, MetaRequestedSeverity)
	if rank > events.SeverityRank(MaxReportSeverity) {
		meta[MetaRequestedSeverity] = severity
		severity = MaxReportSeverity
	}
	meta[MetaReportedVia] = ReportedViaMonitorName

	ev := events.SecurityEvent{
		ID: uuid.NewString(), Time: at.UTC(),
		Type: domain.ReportedTypeSource + "." + name, Source: sender, Subject: sender,
		Action: r.Action, Resource: r.Resource, Status: status, Severity: severity,
		Metadata: meta,
	}

	return ev, nil
}
