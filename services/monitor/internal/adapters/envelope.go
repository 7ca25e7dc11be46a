package adapters

import (
	"context"
	"errors"

	"github.com/nodexsec/nodex/libs/envelope"
	"github.com/nodexsec/nodex/services/monitor/internal/app"
)

// EnvelopeOpener opens events sealed by libs/envelope, with the stream
// freshness rules: the envelope must name the delivery subject, its id must
// be the Nats-Msg-Id, and its timestamp must fit the stored stream time.
type EnvelopeOpener struct {
	Codec *envelope.Codec
}

var _ app.Opener = EnvelopeOpener{}

// Open implements [app.Opener]. A stale registry view or a missing wrap
// record is an [app.Retryable], since both can heal. Every other failure
// is a rejection.
func (o EnvelopeOpener) Open(ctx context.Context, msg *app.Message) (app.Opened, error) {
	d := envelope.Delivery{
		Subject: msg.Subject, Stream: msg.Stream, Sequence: msg.Sequence,
		StreamTime: msg.Stored, MsgID: msg.MsgID,
	}
	opened, err := o.Codec.Open(ctx, d, msg.Data)
	if errors.Is(err, envelope.ErrStale) || errors.Is(err, envelope.ErrWrapMissing) {
		return app.Opened{}, &app.Retryable{Reason: RejectionReason(err), Err: err}
	}
	if err != nil {
		return app.Opened{}, &app.Rejection{Reason: RejectionReason(err), Err: err}
	}

	var out app.Opened
	if err := opened.Decode(&out.Event); err != nil {
		return app.Opened{}, &app.Rejection{Reason: RejectionReason(err), Err: err}
	}
	out.Sender = opened.Sender.ID
	out.SenderKind = opened.Sender.Kind

	return out, nil
}

// RejectionReason returns the snake_case reason name of an envelope error,
// or "invalid" for an error that wraps no envelope sentinel.
func RejectionReason(err error) string {
	if code, ok := envelope.ReasonCode(err); ok {
		return code
	}

	return "invalid"
}

// RejectionReasonNames returns every name [RejectionReason] can return.
func RejectionReasonNames() []string {
	return append(envelope.ReasonCodes(), "invalid")
}
