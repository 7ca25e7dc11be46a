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

// reasonCodes are the snake_case names of the rejection reasons, which
// security events carry and monitor rules match on.
var reasonCodes = map[error]string{
	ErrTooLarge:          "too_large",
	ErrMalformed:         "malformed",
	ErrUnknownVersion:    "unknown_version",
	ErrTooManyRecipients: "too_many_recipients",
	ErrStale:             "stale_registry",
	ErrUnknownSender:     "unknown_sender",
	ErrSenderSuspended:   "suspended_sender",
	ErrSenderRevoked:     "revoked_sender",
	ErrRetiredKey:        "retired_key",
	ErrCompromisedKey:    "compromised_key",
	ErrBadSignature:      "bad_signature",
	ErrSubjectMismatch:   "subject_mismatch",
	ErrNotAddressed:      "not_addressed",
	ErrNotFresh:          "not_fresh",
	ErrReplay:            "replay",
	ErrWrapMissing:       "wrap_missing",
	ErrWrapInvalid:       "wrap_invalid",
	ErrKeyCommitment:     "key_commitment",
	ErrDecrypt:           "decrypt",
	ErrSchema:            "schema",
}

// ReasonCode returns the snake_case name of the first reason in [Reasons]
// that err wraps, or false when it wraps none.
func ReasonCode(err error) (string, bool) {
	for _, r := range Reasons {
		if errors.Is(err, r) {
			return reasonCodes[r], true
		}
	}

	return "", false
}

// ReasonCodes returns every name [ReasonCode] can return, in check order.
func ReasonCodes() []string {
	codes := make([]string, 0, len(Reasons))
	for _, r := range Reasons {
		codes = append(codes, reasonCodes[r])
	}

	return codes
}
