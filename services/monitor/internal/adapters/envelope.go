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

// rejectionReasons names each envelope rejection for the reason metadata
// of envelope.rejected and monitor.event_rejected events.
var rejectionReasons = []struct {
	err  error
	name string
}{
	{envelope.ErrTooLarge, "too_large"},
	{envelope.ErrTooManyRecipients, "too_many_recipients"},
	{envelope.ErrMalformed, "malformed"},
	{envelope.ErrUnknownVersion, "unknown_version"},
	{envelope.ErrStale, "stale_registry"},
	{envelope.ErrUnknownSender, "unknown_sender"},
	{envelope.ErrSenderSuspended, "suspended_sender"},
	{envelope.ErrSenderRevoked, "revoked_sender"},
	{envelope.ErrRetiredKey, "retired_key"},
	{envelope.ErrCompromisedKey, "compromised_key"},
	{envelope.ErrBadSignature, "bad_signature"},
	{envelope.ErrSubjectMismatch, "subject_mismatch"},
	{envelope.ErrNotAddressed, "not_addressed"},
	{envelope.ErrNotFresh, "not_fresh"},
	{envelope.ErrReplay, "replay"},
	{envelope.ErrWrapMissing, "wrap_missing"},
	{envelope.ErrWrapInvalid, "wrap_invalid"},
	{envelope.ErrKeyCommitment, "key_commitment"},
	{envelope.ErrDecrypt, "decrypt"},
	{envelope.ErrSchema, "schema"},
}

// RejectionReason returns the snake_case reason name of an envelope error,
// or "invalid" for an error that wraps no envelope sentinel.
func RejectionReason(err error) string {
	for _, r := range rejectionReasons {
		if errors.Is(err, r.err) {
			return r.name
		}
	}

	return "invalid"
}

// RejectionReasonNames returns every name [RejectionReason] can return.
func RejectionReasonNames() []string {
	names := make([]string, 0, len(rejectionReasons)+1)
	for _, r := range rejectionReasons {
		names = append(names, r.name)
	}

	return append(names, "invalid")
}
