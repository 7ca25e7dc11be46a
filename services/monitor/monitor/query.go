package monitor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/envelope"
	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/logx"
	"github.com/nodexsec/nodex/services/monitor/internal/adapters"
	"github.com/nodexsec/nodex/services/monitor/internal/domain"
)

// SubjectThreats is the request subject that lists threats for operators.
const SubjectThreats = "nodex.v1.monitor.threats"

// DefaultQueryLimit and MaxQueryLimit bound the results of one query.
const (
	DefaultQueryLimit = 100
	MaxQueryLimit     = 10_000
)

// ErrInvalidFilter marks a query filter with an invalid value.
var ErrInvalidFilter = errors.New("monitor: invalid query filter")

// EventFilter selects events for [Reader.TailEvents] and
// [Reader.FollowEvents]. Zero fields match all.
type EventFilter struct {
	// Type is an event type such as "authz.decision".
	Type string
	// Identity matches the event's subject or source.
	Identity string
	// Since is the earliest stream time; zero reads from the start.
	Since time.Time
	// Limit bounds the events returned; default 100, max 10,000.
	Limit int
}

// Reader reads the monitor's streams for operators' queries.
type Reader struct {
	// JS is required.
	JS jetstream.JetStream
	// Codec opens sealed messages; the caller must hold the audit role.
	// Nil reads plain JSON, for development setups that publish no
	// envelopes.
	Codec *envelope.Codec
}

// TailEvents returns up to f.Limit stored events matching f, oldest first,
// from the most recent ones when more match. NOTE: it reads every matching
// event from f.Since on, so set Since on a large stream. Messages that do not open or
// decode are skipped: the monitor reports them as it consumes them.
func (r Reader) TailEvents(ctx context.Context, f EventFilter) ([]Event, error) {
	limit := clampLimit(f.Limit)
	filter := events.SubjectPrefix + ">"
	if f.Type != "" {
		if _, _, err := events.SplitType(f.Type); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidFilter, err)
		}
		filter = events.SubjectPrefix + "*." + f.Type
	}

	var out []Event
	err := r.read(ctx, events.StreamName, filter, f.Since, func(body []byte) {
		var ev Event
		if json.Unmarshal(body, &ev) != nil {
			return
		}
		if f.Identity != "" && ev.Subject != f.Identity && ev.Source != f.Identity {
			return
		}
		out = append(out, ev)
		if len(out) > limit {
			out = out[1:]
		}
	})

	return out, err
}

// FollowEvents calls fn with each event matching f stored from f.Since on
// (from now when Since is zero), in stream order, until ctx ends or fn
// returns an error. f.Limit is ignored. It returns nil when ctx ends.
func (r Reader) FollowEvents(ctx context.Context, f EventFilter, fn func(Event) error) error {
	filter := events.SubjectPrefix + ">"
	if f.Type != "" {
		if _, _, err := events.SplitType(f.Type); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidFilter, err)
		}
		filter = events.SubjectPrefix + "*." + f.Type
	}
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{filter},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	}
	if !f.Since.IsZero() {
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &f.Since
	}
	cons, err := r.JS.OrderedConsumer(ctx, events.StreamName, cfg)
	if err != nil {
		return fmt.Errorf("reading stream %s: %w", events.StreamName, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("reading stream %s: %w", events.StreamName, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()

	for {
		m, err := it.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading stream %s: %w", events.StreamName, err)
		}
		body, ok := r.open(ctx, m)
		if !ok {
			continue
		}
		var ev Event
		if json.Unmarshal(body, &ev) != nil {
			continue
		}
		if f.Identity != "" && ev.Subject != f.Identity && ev.Source != f.Identity {
			continue
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
}

// ThreatFilter selects threats for [Reader.ListThreats]. Zero fields match
// all.
type ThreatFilter struct {
	// Type is a threat type such as "CODE_INJECTION".
	Type     string    `json:"type,omitempty"`
	Identity string    `json:"identity,omitempty"`
	Since    time.Time `json:"since,omitzero"`
	Limit    int       `json:"limit,omitempty"`
}

// ListThreats returns the latest revision of each threat matching f, most
// recently seen first.
func (r Reader) ListThreats(ctx context.Context, f ThreatFilter) ([]Threat, error) {
	filter := adapters.ThreatSubjectPrefix + ">"
	if f.Type != "" {
		if !slices.Contains(domain.ThreatTypes, f.Type) {
			return nil, fmt.Errorf("%w: threat type %q is not one of %v",
				ErrInvalidFilter, f.Type, domain.ThreatTypes)
		}
		filter = adapters.ThreatSubjectPrefix + strings.ToLower(f.Type)
	}

	latest := make(map[string]Threat)
	err := r.read(ctx, adapters.ThreatStream, filter, f.Since, func(body []byte) {
		var t Threat
		if json.Unmarshal(body, &t) != nil {
			return
		}
		if f.Identity != "" && t.Identity != f.Identity {
			return
		}
		if have, ok := latest[t.ID]; !ok || t.Revision > have.Revision {
			latest[t.ID] = t
		}
	})
	if err != nil {
		return nil, err
	}

	out := make([]Threat, 0, len(latest))
	for _, t := range latest {
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b Threat) int { return b.LastSeen.Compare(a.LastSeen) })

	return out[:min(len(out), clampLimit(f.Limit))], nil
}

// read passes the body of every message of stream on filter stored at or
// after since to fn, in stream order, until the messages present at the
// start are read.
func (r Reader) read(ctx context.Context, stream, filter string, since time.Time,
	fn func(body []byte)) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}}
	if !since.IsZero() {
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &since
	}
	cons, err := r.JS.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("reading stream %s: %w", stream, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("reading stream %s: %w", stream, err)
	}

	for pending := info.NumPending; pending > 0; {
		batch, err := cons.FetchNoWait(int(min(pending, 512)))
		if err != nil {
			return fmt.Errorf("fetching from stream %s: %w", stream, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if body, ok := r.open(ctx, m); ok {
				fn(body)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return fmt.Errorf("fetching from stream %s: %w", stream, err)
		}
		if n == 0 {
			break
		}
		pending -= uint64(n)
	}

	return nil
}

func (r Reader) open(ctx context.Context, m jetstream.Msg) ([]byte, bool) {
	if r.Codec == nil {
		return bytes.Clone(m.Data()), true
	}
	md, err := m.Metadata()
	if err != nil {
		return nil, false
	}
	opened, err := r.Codec.Open(ctx, envelope.Delivery{
		Subject: m.Subject(), Stream: md.Stream, Sequence: md.Sequence.Stream,
		StreamTime: md.Timestamp, MsgID: m.Headers().Get(jetstream.MsgIDHeader),
	}, m.Data())
	if err != nil {
		return nil, false
	}

	return opened.Body, true
}

func clampLimit(n int) int {
	switch {
	case n <= 0:
		return DefaultQueryLimit
	case n > MaxQueryLimit:
		return MaxQueryLimit
	default:
		return n
	}
}

// serveQueries serves nodex.v1.monitor.threats to operators and holders of
// the audit role.
func serveQueries(c *bus.Client, js jetstream.JetStream, log *slog.Logger) error {
	reader := Reader{JS: js, Codec: c.Codec()}
	h := func(ctx context.Context, req *bus.Request) (any, error) {
		if req.SenderKind != "operator" && !slices.Contains(req.SenderRoles, events.AudienceRole) {
			log.WarnContext(ctx, "threat query denied", logx.KeyIdentity, req.Sender)
			return nil, errs.AccessDenied
		}
		var f ThreatFilter
		if err := req.Decode(&f); err != nil {
			return nil, errs.InvalidRequest.Withf("decoding threat filter: %v", err)
		}
		threats, err := reader.ListThreats(ctx, f)
		if errors.Is(err, ErrInvalidFilter) {
			return nil, errs.InvalidRequest.Withf("%v", err)
		}
		if err != nil {
			return nil, errs.Unavailable.Wrap(err)
		}

		return map[string]any{"threats": threats}, nil
	}
	if err := c.Handle(SubjectThreats, "monitor", h); err != nil {
		return fmt.Errorf("serving %s: %w", SubjectThreats, err)
	}

	return nil
}
