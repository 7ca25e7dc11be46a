package envelope

import "errors"

// Rejection reasons, in the order [Codec.Open] checks them. Every error Open
// returns wraps exactly one of them.
var (
	ErrTooLarge          = errors.New("envelope: message too large")
	ErrTooManyRecipients = errors.New("envelope: too many recipients")
	ErrMalformed         = errors.New("envelope: malformed envelope")
	ErrUnknownVersion    = errors.New("envelope: unknown envelope version")
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

// Reasons lists every rejection sentinel in check order.
var Reasons = []error{
	ErrTooLarge, ErrTooManyRecipients, ErrMalformed, ErrUnknownVersion, ErrStale,
	ErrUnknownSender, ErrSenderSuspended, ErrSenderRevoked, ErrRetiredKey,
	ErrCompromisedKey, ErrBadSignature, ErrSubjectMismatch, ErrNotAddressed,
	ErrNotFresh, ErrReplay, ErrWrapMissing, ErrWrapInvalid, ErrKeyCommitment,
	ErrDecrypt, ErrSchema,
}
