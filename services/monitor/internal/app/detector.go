package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/logx"
	"github.com/nodexsec/nodex/services/monitor/internal/domain"
)

// Synthetic event types the detector raises itself. They go through the
// rules like stored events, so the rule file decides what they mean.
const (
	TypeEventRejected = "monitor.event_rejected"
	TypeSourceFlood   = "monitor.source_flood"
)

// DetectorOptions configure a [Detector]. Zero fields take defaults.
type DetectorOptions struct {
	// Self is the monitor's identity id, the source of synthetic events.
	Self string

	// FloodRatePerSecond and FloodBurst size the token bucket of each
	// event source, measured in stored events; defaults 2,000 and 10,000.
	FloodRatePerSecond int
	FloodBurst         int

	// FloodReportInterval is the shortest time between two flood reports
	// for one source; default 10 s.
	FloodReportInterval time.Duration

	// MaxOpenAttempts is how many deliveries a message that fails to open
	// with a [*Retryable] error gets before it is rejected; default 5.
	MaxOpenAttempts uint64

	// Now returns the wall-clock time for ingest lag; default time.Now.
	Now func() time.Time
}

// Detector processes stored events in stream order. Admit and Finish must be
// called one message at a time in that order, while Open may run on several
// goroutines at once. Flush and Reload may be called from any goroutine.
type Detector struct {
	log     *slog.Logger
	opener  Opener
	sink    ThreatSink
	seen    SeenStore
	threats ThreatStore
	metrics Metrics
	opts    DetectorOptions
	// selfToken is opts.Self as it appears in event subjects.
	selfToken string

	mu          sync.Mutex
	engine      *domain.Engine
	flood       *floodLimiter
	recent      *recentIDs
	unpublished *threatQueue

	// relayShed counts reports the relay rejected until the next flood
	// report moves them into flood.
	relayShed relayShedCounts
}

// NewDetector returns a detector running rules. It panics on a nil
// dependency, which is a programming error.
func NewDetector(log *slog.Logger, rules []domain.Rule, opener Opener, sink ThreatSink,
	seen SeenStore, threats ThreatStore, metrics Metrics, opts DetectorOptions) (*Detector, error) {
	if log == nil || opener == nil || sink == nil || seen == nil || threats == nil ||
		metrics == nil {
		panic("app: NewDetector with a nil dependency")
	}
	if opts.Self == "" {
		return nil, errors.New("monitor: detector needs the monitor's identity id")
	}
	if opts.FloodRatePerSecond <= 0 {
		opts.FloodRatePerSecond = 2_000
	}
	if opts.FloodBurst <= 0 {
		opts.FloodBurst = 10_000
	}
	if opts.FloodReportInterval <= 0 {
		opts.FloodReportInterval = 10 * time.Second
	}
	if opts.MaxOpenAttempts == 0 {
		opts.MaxOpenAttempts = 5
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}

	engine, err := domain.NewEngine(rules)
	if err != nil {
		return nil, err
	}

	return &Detector{
		log: log.With(logx.KeyComponent, "detector"), opener: opener, sink: sink,
		seen: seen, threats: threats, metrics: metrics, opts: opts, engine: engine,
		flood:  newFloodLimiter(opts.FloodRatePerSecond, opts.FloodBurst),
		recent: newRecentIDs(recentIDsMax), unpublished: &threatQueue{},
		selfToken: subjectToken(opts.Self),
	}, nil
}

// Restore reopens the threats the store holds, so new evidence updates them.
func (d *Detector) Restore(ctx context.Context) (int, error) {
	open, err := d.threats.OpenThreats(ctx)
	if err != nil {
		return 0, fmt.Errorf("loading open threats: %w", err)
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, t := range open {
		if d.engine.RestoreThreat(t) {
			n++
		}
	}

	return n, nil
}

// Warm feeds a message processed before a restart into the rule windows
// without raising threats; see [domain.Engine.Warm]. Messages that do not
// open are skipped, since they were reported when first processed. It
// reports whether the message was used.
func (d *Detector) Warm(ctx context.Context, msg *Message) bool {
	op := d.Open(ctx, msg)
	if op.err != nil || d.ownReport(&op.obs.Event) {
		return false
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	d.engine.Warm(op.obs)

	return true
}

// WarmSpan returns how far back [Detector.Warm] needs history.
func (d *Detector) WarmSpan() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()

	return d.engine.MaxSpan()
}

// Reload replaces the rules. On an error the old rules stay in force.
func (d *Detector) Reload(rules []domain.Rule) error {
	d.mu.Lock()
	defer d.mu.Unlock()

	return d.engine.SetRules(rules)
}

// Rules returns the rules in force.
func (d *Detector) Rules() []domain.Rule {
	d.mu.Lock()
	defer d.mu.Unlock()

	return d.engine.Rules()
}

// Process handles one stored message: [Detector.Admit], [Detector.Open]
// and [Detector.Finish] in turn. A nil error means the message is done
// (processed, rejected and reported, shed and counted, or a duplicate), so
// it may be acknowledged. An error means it should be delivered again.
func (d *Detector) Process(ctx context.Context, msg *Message) error {
	if !d.Admit(msg) {
		return d.Finish(ctx, msg, nil)
	}

	return d.Finish(ctx, msg, d.Open(ctx, msg))
}

// Admit applies the flood limit of msg's source and reports whether msg is
// to be opened. It must be called in stream order, and a shed message must
// still go through Finish with a nil result.
func (d *Detector) Admit(msg *Message) bool {
	d.mu.Lock()
	defer d.mu.Unlock()

	source := sourceToken(msg.Subject)
	if d.relayedReport(source, msg.Subject) {
		// The relay admitted this report within the reporter's own rate
		// and counted every report it rejected through ShedReport, so the
		// reporters are limited one by one, not as the monitor's source.
		return true
	}
	if d.flood.allow(source, msg.Stored) {
		return true
	}
	d.metrics.Shed(source, 1)

	return false
}

// relayedReport reports whether subject, whose emitter token is source,
// carries a report the monitor relayed for an agent. Only the monitor's
// own connection may publish under its token, so the subject alone is
// trusted here; Open still checks the signature and the reporter.
func (d *Detector) relayedReport(source, subject string) bool {
	if source != d.selfToken {
		return false
	}
	rest := strings.TrimPrefix(subject, events.SubjectPrefix+source+".")

	return strings.HasPrefix(rest, domain.ReportedTypeSource+".")
}

// ShedReport counts one report from reporter that the relay rejected at
// at because it exceeded the reporter's rate. The count is reported as a
// source_flood naming the reporter, like events shed from a flooding
// source, at most once per FloodReportInterval.
// It takes only relayShed's lock, never d.mu, which Finish holds across
// stream writes: the report handler must not wait on the detector.
func (d *Detector) ShedReport(reporter string, at time.Time) {
	source := subjectToken(reporter)
	d.relayShed.add(source, at)
	d.metrics.Shed(source, 1)
}

// Opening is the result of [Detector.Open].
type Opening struct {
	obs *domain.Observation
	err error
}

// Open verifies, decrypts and checks an admitted message. It takes no lock,
// so a consumer may open several messages at once; their Finish calls must
// still follow stream order.
func (d *Detector) Open(ctx context.Context, msg *Message) *Opening {
	opened, err := d.opener.Open(ctx, msg)
	if err != nil {
		return &Opening{err: err}
	}
	obs := &domain.Observation{
		Event:      opened.Event,
		Sender:     opened.Sender,
		SenderKind: opened.SenderKind,
		Origin:     eventOrigin(msg.Subject, &opened.Event),
		At:         msg.Stored,
	}
	if domain.IsReported(&opened.Event) {
		err = domain.CheckReported(msg.Subject, opened.Sender, d.opts.Self, &opened.Event)
		// The monitor authenticated the reporter when it took the report,
		// so the rules see the agent as the signer of an event about
		// itself, and its identity is the only one they can attribute.
		obs.Sender, obs.SenderKind = opened.Event.Source, "agent"
		// The report came from the agent, whose envelope signature the
		// relay verified, not from the monitor, which only stored it.
		obs.Origin = "connection:" + subjectToken(opened.Event.Source)
	} else {
		err = domain.CheckEvent(msg.Subject, opened.Sender, &opened.Event)
	}
	if err != nil {
		return &Opening{err: &Rejection{Reason: "schema", Err: err}}
	}

	return &Opening{obs: obs}
}

// eventOrigin returns where the fact an event reports came from. For most
// events that is the connection that published the event. An
// envelope.rejected event is published by the receiver that rejected a
// message, so its connection would blame the receiver. The origin that the
// receiver recorded for the rejected message is used instead.
func eventOrigin(subject string, ev *domain.Event) string {
	if ev.Type == "envelope.rejected" {
		if o := ev.Metadata["origin"]; o != "" {
			return o
		}
	}

	return transportOrigin(subject)
}

// Finish runs an opened message through the rules, or reports it when it
// was rejected, or reports due floods when it was shed (op is nil). Calls
// must follow stream order. The error has the meaning of Process's.
func (d *Detector) Finish(ctx context.Context, msg *Message, op *Opening) error {
	d.mu.Lock()
	defer d.mu.Unlock()

	if op == nil {
		return d.reportFloodsLocked(ctx, msg.Stored)
	}
	err := op.err
	var retry *Retryable
	if errors.As(err, &retry) && msg.Delivered >= d.opts.MaxOpenAttempts {
		err = &Rejection{Reason: retry.Reason, Err: err}
	}
	if errors.Is(err, ErrRejected) {
		return d.rejectLocked(ctx, msg, err)
	}
	if err != nil {
		return err
	}

	obs := op.obs
	d.metrics.Event(obs.Event.Type, obs.Event.Status)
	d.metrics.Lag(d.opts.Now().Sub(msg.Stored))
	if obs.Event.Type == "authz.decision" {
		d.metrics.Decision(obs.Event.Status)
	}
	if d.ownReport(&obs.Event) {
		return nil
	}

	if msg.Delivered > 1 && d.recent.has(obs.Event.ID) {
		d.metrics.Duplicate()
		return nil
	}
	if msg.Delivered > 1 {
		seen, err := d.seen.Seen(ctx, obs.Event.ID)
		if err != nil {
			return fmt.Errorf("checking event %s for a duplicate: %w", obs.Event.ID, err)
		}
		if seen {
			d.metrics.Duplicate()
			return nil
		}
	}

	return d.observeLocked(ctx, obs)
}

// Flush reports sources whose shed events have not been reported yet and
// publishes threat revisions held back for [domain.PublishInterval]. The
// consumer calls it periodically, so the end of a flood or an attack is
// published too.
func (d *Detector) Flush(ctx context.Context, now time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()

	if err := d.reportFloodsLocked(ctx, now); err != nil {
		return err
	}
	for _, t := range d.engine.PendingRevisions(now, domain.PublishInterval) {
		d.unpublished.add(t)
	}

	return d.publishUnpublishedLocked(ctx)
}

// observeLocked runs obs through the rules, publishes the threats due and
// records the event id when the event became evidence of a threat.
func (d *Detector) observeLocked(ctx context.Context, obs *domain.Observation) error {
	dropped := d.engine.GroupsDropped()
	due, evidence := d.engine.Observe(obs)
	if n := d.engine.GroupsDropped() - dropped; n > 0 {
		d.metrics.GroupsDropped(n)
	}
	own := obs.Event.Source == d.opts.Self
	if evidence && !own {
		d.recent.add(obs.Event.ID)
	}
	for _, t := range due {
		d.unpublished.add(t)
	}
	if err := d.publishUnpublishedLocked(ctx); err != nil {
		return err
	}
	if !evidence || own {
		return nil
	}
	if err := d.seen.MarkSeen(ctx, obs.Event.ID); err != nil {
		return fmt.Errorf("recording event %s as seen: %w", obs.Event.ID, err)
	}

	return nil
}

// publishUnpublishedLocked publishes the threat revisions not stored yet,
// oldest first. A revision whose publish failed stays queued, and Flush
// retries it, so a threat is not lost when the stream is briefly down.
func (d *Detector) publishUnpublishedLocked(ctx context.Context) error {
	for t := range d.unpublished.each() {
		if err := d.publishLocked(ctx, t); err != nil {
			return err
		}
		d.unpublished.remove(t.ID)
	}

	return nil
}

func (d *Detector) publishLocked(ctx context.Context, t domain.Threat) error {
	if err := d.sink.PublishThreat(ctx, t); err != nil {
		return fmt.Errorf("publishing threat %s revision %d: %w", t.ID, t.Revision, err)
	}
	if err := d.threats.SaveThreat(ctx, t); err != nil {
		return fmt.Errorf("saving threat %s: %w", t.ID, err)
	}
	if t.Revision == 1 {
		d.metrics.Threat(t.Type)
	}
	d.log.InfoContext(ctx, "threat published",
		"threat_id", t.ID, "threat_type", t.Type, "rule_id", t.RuleID,
		"revision", t.Revision, "count", t.Count, logx.KeyIdentity, domain.Escape(t.Identity),
		"origin", domain.Escape(t.Origin), "group", t.Group)

	return nil
}

// rejectLocked reports a message that is not a genuine event. The report
// names the subject the message arrived on and never the identity it
// claims, because a forger chooses the claim.
func (d *Detector) rejectLocked(ctx context.Context, msg *Message, err error) error {
	reason := "invalid"
	var rej *Rejection
	if errors.As(err, &rej) {
		reason = rej.Reason
	}
	d.metrics.Rejected(reason)
	d.log.WarnContext(ctx, "event rejected", logx.KeySubject, domain.Escape(msg.Subject),
		"reason", domain.Escape(reason), logx.Err(err))

	obs := d.synthetic(TypeEventRejected, msg.Subject, msg.Stored, map[string]string{
		"reason":  reason,
		"origin":  transportOrigin(msg.Subject),
		"subject": msg.Subject,
	})

	return d.observeLocked(ctx, obs)
}

// reportFloodsLocked raises one source_flood event per source with shed
// events whose report is due.
func (d *Detector) reportFloodsLocked(ctx context.Context, at time.Time) error {
	for source, n := range d.relayShed.drain() {
		d.flood.countShed(source, n.at, n.count)
	}
	for source, n := range d.flood.dueReports(at, d.opts.FloodReportInterval) {
		d.log.WarnContext(ctx, "events shed from flooding source",
			"source", domain.Escape(source), "shed", n)
		obs := d.synthetic(TypeSourceFlood, events.SubjectPrefix+source+".>", at,
			map[string]string{"source": source, "shed": strconv.Itoa(n)})
		if err := d.observeLocked(ctx, obs); err != nil {
			return err
		}
	}

	return nil
}

func (d *Detector) synthetic(typ, subject string, at time.Time,
	meta map[string]string) *domain.Observation {
	return &domain.Observation{
		Event: domain.Event{
			ID: uuid.NewString(), Type: typ, Time: at, Source: d.opts.Self,
			Status: events.StatusFailure, Severity: events.SeverityHigh, Metadata: meta,
		},
		Sender:     d.opts.Self,
		SenderKind: "service",
		Origin:     transportOrigin(subject),
		At:         at,
	}
}

// ownReport reports whether ev is the monitor's own report of something it
// already evaluated: its synthetic events, and the envelope.rejected events
// its codec emits for stream events that the monitor reported as
// monitor.event_rejected. Counting them again would raise a second threat
// for the same forged message.
func (d *Detector) ownReport(ev *domain.Event) bool {
	if ev.Source != d.opts.Self {
		return false
	}
	if strings.HasPrefix(ev.Type, "monitor.") {
		return true
	}

	return ev.Type == "envelope.rejected" &&
		strings.HasPrefix(ev.Metadata["subject"], events.SubjectPrefix)
}

// transportOrigin names where a message on subject came from as far as NATS
// vouches for it. Permissions let only identity X publish under
// nodex.v1.events.X., so an event subject yields "connection:X", and any
// other subject "subject:<subject>". libs/party names the origin of
// envelope.rejected events the same way.
func transportOrigin(subject string) string {
	if rest, ok := strings.CutPrefix(subject, events.SubjectPrefix); ok {
		emitter, _, _ := strings.Cut(rest, ".")
		return "connection:" + emitter
	}

	return "subject:" + subject
}

// subjectToken returns identity id as it appears in event subjects and
// in the sources and origins derived from them.
func subjectToken(id string) string { return strings.ReplaceAll(id, "-", "_") }

// sourceToken returns the emitter token of an events subject
// (nodex.v1.events.<source>.…), or the whole subject when it has none.
func sourceToken(subject string) string {
	rest, ok := strings.CutPrefix(subject, events.SubjectPrefix)
	if !ok {
		return subject
	}
	source, _, _ := strings.Cut(rest, ".")

	return source
}
