package domain

import (
	"crypto/subtle"
	"fmt"
	"log/slog"
)

// Redacted is the text a [Secret] prints, logs and marshals as.
const Redacted = "[REDACTED]"

// Secret is a provider key value. Printing it with any fmt verb, logging it
// through log/slog or marshalling it to JSON yields [Redacted]; only
// [Secret.Reveal] returns the value. Unmarshalling from a JSON string sets the
// value, so request bodies can carry one in.
type Secret struct {
	value []byte
}

// NewSecret returns a Secret holding a copy of value.
func NewSecret(value []byte) Secret {
	return Secret{value: append([]byte(nil), value...)}
}

// Reveal returns the value itself. Callers must not log or store it.
func (s Secret) Reveal() []byte { return s.value }

// Len returns the length of the value in bytes.
func (s Secret) Len() int { return len(s.value) }

// Equal reports whether two secrets hold the same value, in constant time.
func (s Secret) Equal(o Secret) bool { return subtle.ConstantTimeCompare(s.value, o.value) == 1 }

// Wipe overwrites the value in place. Copies made by earlier callers stay.
func (s Secret) Wipe() { clear(s.value) }

// LogValue implements [slog.LogValuer].
func (Secret) LogValue() slog.Value { return slog.StringValue(Redacted) }

// String implements [fmt.Stringer].
func (Secret) String() string { return Redacted }

// GoString implements [fmt.GoStringer], so %#v redacts too.
func (Secret) GoString() string { return Redacted }

// Format implements [fmt.Formatter], so %x, %q and friends redact too.
func (Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(Redacted)) }

// MarshalJSON implements [json.Marshaler] and always writes [Redacted].
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// UnmarshalJSON implements [json.Unmarshaler] for a JSON string.
func (s *Secret) UnmarshalJSON(b []byte) error {
	var v string
	if err := jsonUnmarshalString(b, &v); err != nil {
		// The decoder's error may quote the input, so it is dropped.
		return errSecretNotString
	}
	s.value = []byte(v)

	return nil
}
