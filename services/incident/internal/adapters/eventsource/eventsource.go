// Package eventsource reads security events back from the NODEX_EVENTS
// stream for investigations.
package eventsource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/envelope"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/logx"
	"github.com/nodexsec/nodex/services/incident/internal/app"
	"github.com/nodexsec/nodex/services/incident/internal/domain"
)

// Decoder turns one stored stream message into an event. Events on the wire
// are envelopes, so production passes [OpenEnvelope]; tests that publish
// plain JSON pass [DecodeJSON].
type Decoder func(ctx context.Context, msg jetstream.Msg) (events.SecurityEvent, error)

// DecodeJSON decodes a message whose data is a plain SecurityEvent.
func DecodeJSON(_ context.Context, msg jetstream.Msg) (events.SecurityEvent, error) {
	var ev events.SecurityEvent
	if err := json.Unmarshal(msg.Data(), &ev); err != nil {
		return ev, fmt.Errorf("decoding event on %s: %w", msg.Subject(), err)
	}

	return ev, nil
}

// OpenEnvelope returns a Decoder that opens sealed events with codec, under
// the same stream rules as libs/bus's consumer: Nats-Msg-Id must be the
// envelope id and the signed time must fit the stored stream time.
func OpenEnvelope(codec *envelope.Codec) Decoder {
	return func(ctx context.Context, msg jetstream.Msg) (events.SecurityEvent, error) {
		var ev events.SecurityEvent
		md, err := msg.Metadata()
		if err != nil {
			return ev, fmt.Errorf("reading metadata of %s: %w", msg.Subject(), err)
		}
		d := envelope.Delivery{
			Subject: msg.Subject(), Stream: md.Stream, Sequence: md.Sequence.Stream,
			StreamTime: md.Timestamp, MsgID: msg.Headers().Get(jetstream.MsgIDHeader),
		}
		opened, err := codec.Open(ctx, d, msg.Data())
		if err != nil {
			return ev, fmt.Errorf("opening event %d: %w", md.Sequence.Stream, err)
		}
		if err := opened.Decode(&ev); err != nil {
			return ev, fmt.Errorf("decoding event %d: %w", md.Sequence.Stream, err)
		}

		return ev, nil
	}
}

// Source implements app.EventSource over a stream.
type Source struct {
	js     jetstream.JetStream
	stream string
	decode Decoder
	log    *slog.Logger
	// Slack is how far past the window's end the reader keeps going, in
	// stream storage time, because an event is stored after it happened.
	Slack time.Duration
	// MaxScan bounds the messages one query reads.
	MaxScan int
}

var _ app.EventSource = (*Source)(nil)

// New returns a Source that reads stream (events.StreamName in production)
// and opens messages with decode.
func New(js jetstream.JetStream, stream string, decode Decoder, log *slog.Logger) *Source {
	if js == nil || decode == nil || log == nil {
		panic("eventsource: New needs a JetStream context, a decoder and a logger")
	}

	return &Source{js: js, stream: stream, decode: decode, log: log.With(logx.KeyComponent,
		"eventsource"), Slack: time.Minute, MaxScan: 100_000}
}

// Gather implements app.EventSource. It reads the stream from q.Since with
// an ordered consumer, which creates no durable state, and stops at the end
// of the stream, past q.Until plus Slack, or after MaxScan messages.
func (s *Source) Gather(ctx context.Context, q app.EventQuery) ([]domain.TimelineRow, error) {
	st, err := s.js.Stream(ctx, s.stream)
	if err != nil {
		return nil, fmt.Errorf("opening stream %s: %w", s.stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading stream %s info: %w", s.stream, err)
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 {
		return []domain.TimelineRow{}, nil
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &q.Since,
	})
	if err != nil {
		return nil, fmt.Errorf("reading stream %s from %s: %w", s.stream, q.Since, err)
	}

	return s.scan(ctx, cons, q, last)
}

func (s *Source) scan(ctx context.Context, cons jetstream.Consumer, q app.EventQuery,
	last uint64,
) ([]domain.TimelineRow, error) {
	rows := []domain.TimelineRow{}
	skipped := 0
	defer func() {
		if skipped > 0 {
			s.log.WarnContext(ctx, "events skipped in investigation", "count", skipped)
		}
	}()
	for scanned := 0; scanned < s.MaxScan; {
		batch, err := cons.FetchNoWait(256)
		if err != nil {
			return rows, fmt.Errorf("fetching events: %w", err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			scanned++
			meta, err := msg.Metadata()
			if err != nil {
				skipped++
				continue
			}
			if meta.Timestamp.After(q.Until.Add(s.Slack)) || meta.Sequence.Stream >= last {
				rows = s.keep(ctx, rows, msg, q, &skipped)

				return s.limit(rows, q.Limit), nil
			}
			rows = s.keep(ctx, rows, msg, q, &skipped)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return rows, fmt.Errorf("fetching events: %w", err)
		}
		if n == 0 {
			break
		}
	}

	return s.limit(rows, q.Limit), nil
}

// keep appends msg when it matches q.
func (s *Source) keep(ctx context.Context, rows []domain.TimelineRow, msg jetstream.Msg,
	q app.EventQuery, skipped *int,
) []domain.TimelineRow {
	ev, err := s.decode(ctx, msg)
	if err != nil {
		*skipped++
		return rows
	}
	if ev.Time.Before(q.Since) || ev.Time.After(q.Until) {
		return rows
	}
	match := (q.Identity != "" && ev.Subject == q.Identity) ||
		(ev.TraceID != "" && slices.Contains(q.TraceIDs, ev.TraceID)) ||
		slices.Contains(q.EventIDs, ev.ID)
	if !match {
		return rows
	}

	return append(rows, domain.TimelineRow{
		EventID: ev.ID, Time: ev.Time, Type: ev.Type, Source: ev.Source, Subject: ev.Subject,
		Action: ev.Action, Resource: ev.Resource, Status: ev.Status, Severity: ev.Severity,
		TraceID: ev.TraceID,
	})
}

func (s *Source) limit(rows []domain.TimelineRow, n int) []domain.TimelineRow {
	slices.SortStableFunc(rows, func(a, b domain.TimelineRow) int { return a.Time.Compare(b.Time) })
	if n > 0 && len(rows) > n {
		return rows[:n]
	}

	return rows
}
