package envelope

import "errors"

// Rejection reasons, in the order [Codec.Open] checks them. Every error Open
// returns wraps one of them. ErrMalformed covers both the framing, checked
// before the version, and the full header parse after the recipient count.
var (
	ErrTooLarge          = errors.New("envelope: message too large")
	ErrMalformed         = errors.New("envelope: malformed envelope")
	ErrUnknownVersion    = errors.New("envelope: unknown envelope version")
	ErrTooManyRecipients = errors.New("envelope: too many recipients")
	ErrUnknownSender     = errors.New("envelope: unknown sender")
	ErrSenderSuspended   = errors.New("envelope: sender suspended")
	ErrSenderRevoked     = errors.New("envelope: sender revoked")
	ErrRetiredKey        = errors.New("envelope: signing key retired")
	ErrCompromisedKey    = errors.New("envelope: signing key compromised")
	ErrBadSignature      = errors.New("envelope: bad signature")
	ErrSubjectMismatch   = errors.New("envelope: subject or kind mismatch")
	ErrNotAddressed      = errors.New("envelope: not addressed to this receiver")
	ErrNotFresh          = errors.New("envelope: message outside its freshness window")
	ErrReplay            = errors.New("envelope: replayed message")
	ErrWrapMissing       = errors.New("envelope: wrap record missing")
	ErrWrapInvalid       = errors.New("envelope: wrap record invalid")
	ErrKeyCommitment     = errors.New("envelope: content key does not match its kid")
	ErrDecrypt           = errors.New("envelope: decryption failed")
	ErrSchema            = errors.New("envelope: body does not match its schema")
)

// Reasons lists every rejection sentinel in check order, [ErrStale] included.
var Reasons = []error{
	ErrTooLarge, ErrMalformed, ErrUnknownVersion, ErrTooManyRecipients, ErrStale,
	ErrUnknownSender, ErrSenderSuspended, ErrSenderRevoked, ErrRetiredKey,
	ErrCompromisedKey, ErrBadSignature, ErrSubjectMismatch, ErrNotAddressed,
	ErrNotFresh, ErrReplay, ErrWrapMissing, ErrWrapInvalid, ErrKeyCommitment,
	ErrDecrypt, ErrSchema,
}
