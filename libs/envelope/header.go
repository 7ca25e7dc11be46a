package envelope

import (
	"encoding/binary"
	"fmt"
)

// Version is the only envelope version this package seals and opens. It
// fixes the suites: Ed25519 signatures, HPKE base mode with MLKEM768-X25519,
// HKDF-SHA256 and AES-256-GCM for wraps, AES-256-GCM for content.
const Version = 1

// Kind is the message kind named in the header.
type Kind uint8

// Message kinds. Requests and replies are checked against the clock window;
// events and jobs are stream messages, checked against their stream time.
const (
	KindRequest Kind = 1
	KindReply   Kind = 2
	KindEvent   Kind = 3
	KindJob     Kind = 4
)

// String returns the kind's lowercase name.
func (k Kind) String() string {
	switch k {
	case KindRequest:
		return "request"
	case KindReply:
		return "reply"
	case KindEvent:
		return "event"
	case KindJob:
		return "job"
	}

	return fmt.Sprintf("kind(%d)", uint8(k))
}

// isStream reports whether messages of kind k travel through JetStream streams.
func (k Kind) isStream() bool { return k == KindEvent || k == KindJob }

// Limits on header fields, fixed by the one-byte length prefixes.
const (
	maxStringLen     = 255
	headerFixedBytes = 1 + 1 + 16 + 8 + 1 + 4 + 32 + 1 + 1 + 1 + 8
)

// Header is the signed, unencrypted part of an envelope. Its encoding is
// binary with length-prefixed strings, so the bytes a sender signs are the
// bytes a receiver parses: nothing is ever re-encoded.
type Header struct {
	Version          uint8
	Kind             Kind
	ID               [16]byte // random message id; also the JetStream Nats-Msg-Id (hex)
	Timestamp        int64    // sender's clock, Unix milliseconds
	Sender           string   // identity id of the signer
	SenderKeyVersion uint32   // version of the sender's Ed25519 envelope key
	KID              [32]byte // key commitment of the content key
	Recipients       []Recipient
	ContentType      string   // e.g. "application/json"
	ReplySubject     string   // requests only: the subject the reply must go to
	RequestDigest    [32]byte // replies only: SHA-256 of the request envelope
	Expires          int64    // jobs only: Unix milliseconds after which it is void; 0 otherwise
}

// AppendBinary appends the header's wire encoding to b. It checks field
// lengths and recipient order, so that it never emits a header that
// [ParseHeader] rejects.
func (h *Header) AppendBinary(b []byte) ([]byte, error) {
	if err := h.validate(); err != nil {
		return nil, err
	}
	b = append(b, h.Version, byte(h.Kind))
	b = append(b, h.ID[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(h.Timestamp))
	b = appendString8(b, h.Sender)
	b = binary.BigEndian.AppendUint32(b, h.SenderKeyVersion)
	b = append(b, h.KID[:]...)
	b = append(b, byte(len(h.Recipients)))
	for _, r := range h.Recipients {
		b = append(b, byte(r.Type))
		b = appendString8(b, r.Name)
		b = binary.BigEndian.AppendUint32(b, r.Version)
	}
	b = appendString8(b, h.ContentType)
	b = appendString8(b, h.ReplySubject)
	if h.Kind == KindReply {
		b = append(b, h.RequestDigest[:]...)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(h.Expires))

	return b, nil
}

func appendString8(b []byte, s string) []byte {
	b = append(b, byte(len(s)))

	return append(b, s...)
}

// validate checks the rules both encoding and parsing enforce.
func (h *Header) validate() error {
	switch {
	case h.Kind < KindRequest || h.Kind > KindJob:
		return fmt.Errorf("%w: unknown kind %d", ErrMalformed, h.Kind)
	case h.Sender == "" || len(h.Sender) > maxStringLen:
		return fmt.Errorf("%w: sender must be 1 to %d bytes", ErrMalformed, maxStringLen)
	case len(h.ContentType) > maxStringLen || len(h.ReplySubject) > maxStringLen:
		return fmt.Errorf("%w: content type and reply subject are at most %d bytes",
			ErrMalformed, maxStringLen)
	case len(h.Recipients) == 0 || len(h.Recipients) > maxStringLen:
		return fmt.Errorf("%w: a header needs 1 to %d recipients", ErrMalformed, maxStringLen)
	case (h.Kind == KindRequest) != (h.ReplySubject != ""):
		return fmt.Errorf("%w: requests, and only requests, carry a reply subject",
			ErrMalformed)
	case h.Kind != KindJob && h.Expires != 0:
		return fmt.Errorf("%w: only jobs carry an expiry", ErrMalformed)
	}
	if h.ReplySubject != "" && !validSubject(h.ReplySubject) {
		return fmt.Errorf("%w: reply subject %q is not printable ASCII", ErrMalformed,
			h.ReplySubject)
	}
	for i, r := range h.Recipients {
		if r.Type != RecipientIdentity && r.Type != RecipientRole {
			return fmt.Errorf("%w: unknown recipient type %d", ErrMalformed, r.Type)
		}
		if r.Name == "" || len(r.Name) > maxStringLen {
			return fmt.Errorf("%w: recipient name must be 1 to %d bytes", ErrMalformed,
				maxStringLen)
		}
		if i > 0 && compareRecipients(h.Recipients[i-1], r) >= 0 {
			return fmt.Errorf("%w: recipients must be sorted and unique", ErrMalformed)
		}
	}

	return nil
}

// ParseHeader decodes a header from exactly b. It rejects trailing bytes,
// unsorted or duplicate recipients and fields that break the per-kind rules,
// so one header has one encoding.
func ParseHeader(b []byte) (*Header, error) {
	if len(b) < headerFixedBytes {
		return nil, fmt.Errorf("%w: header of %d bytes is too short", ErrMalformed, len(b))
	}
	r := reader{b: b}
	h := &Header{Version: r.u8(), Kind: Kind(r.u8())}
	if h.Version != Version {
		return h, fmt.Errorf("%w: %d", ErrUnknownVersion, h.Version)
	}
	copy(h.ID[:], r.bytes(16))
	h.Timestamp = int64(r.u64())
	h.Sender = r.string8()
	h.SenderKeyVersion = r.u32()
	copy(h.KID[:], r.bytes(32))
	n := int(r.u8())
	h.Recipients = make([]Recipient, 0, min(n, 16))
	for range n {
		h.Recipients = append(h.Recipients, Recipient{
			Type: RecipientType(r.u8()), Name: r.string8(), Version: r.u32(),
		})
	}
	h.ContentType = r.string8()
	h.ReplySubject = r.string8()
	if h.Kind == KindReply {
		copy(h.RequestDigest[:], r.bytes(32))
	}
	h.Expires = int64(r.u64())
	if r.err || len(r.b) != 0 {
		return nil, fmt.Errorf("%w: header length does not match its fields", ErrMalformed)
	}
	if err := h.validate(); err != nil {
		return nil, err
	}

	return h, nil
}

// reader consumes big-endian fields from b and records a short read in err
// instead of panicking, so a parser checks once at the end.
type reader struct {
	b   []byte
	err bool
}

func (r *reader) bytes(n int) []byte {
	if r.err || len(r.b) < n {
		r.err = true
		return make([]byte, n)
	}
	out := r.b[:n]
	r.b = r.b[n:]

	return out
}

func (r *reader) u8() uint8       { return r.bytes(1)[0] }
func (r *reader) u32() uint32     { return binary.BigEndian.Uint32(r.bytes(4)) }
func (r *reader) u64() uint64     { return binary.BigEndian.Uint64(r.bytes(8)) }
func (r *reader) string8() string { return string(r.bytes(int(r.u8()))) }

// validSubject reports whether s contains only printable ASCII other than
// space (0x21 to 0x7e). The signing input puts the subject right before the
// header, whose first byte (the version, 0x01) is outside that range, so the
// subject's end is unambiguous.
func validSubject(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}

	return true
}
