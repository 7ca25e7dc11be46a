package envelope

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Delivery describes how NATS delivered a message: the subject it arrived
// on, the reply subject of a request, and for a stream message where and
// when the stream stored it. The receiver takes the subject from here, never from the
// envelope.
type Delivery struct {
	Subject string
	Reply   string // NATS reply subject of a request

	Stream     string    // stream name; empty for core NATS deliveries
	Sequence   uint64    // stream sequence
	StreamTime time.Time // time the stream stored the message
	MsgID      string    // Nats-Msg-Id header
}

// Opened is an envelope that passed every check.
type Opened struct {
	Header  *Header
	Sender  Party    // the authenticated sender, as the registry records it
	Body    []byte   // plaintext
	Digest  [32]byte // SHA-256 of the frame; a reply binds to it
	key     ContentKey
	codec   *Codec
	subject string // delivery subject, for rejection reports from Decode
}

// Decode unmarshals the JSON body into v, rejecting unknown fields and
// trailing data. A failure wraps [ErrSchema] and is reported like any other
// rejection.
func (o *Opened) Decode(v any) error {
	err := decodeJSON(o.Header.ContentType, o.Body, v)
	if err != nil && o.codec != nil {
		o.codec.reject.report(o.subject, err)
	}

	return err
}

func decodeJSON(contentType string, body []byte, v any) error {
	if contentType != ContentTypeJSON {
		return fmt.Errorf("%w: content type %q, want %q", ErrSchema, contentType,
			ContentTypeJSON)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrSchema, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: data after the JSON value", ErrSchema)
	}

	return nil
}

// ContentTypeJSON is the content type of JSON bodies.
const ContentTypeJSON = "application/json"

// Open checks and decrypts a request, event or job. Core NATS deliveries
// must carry requests; stream deliveries (Delivery.Stream set) must carry
// events or jobs. Every failure wraps one sentinel of [Reasons] and is
// reported to the OnReject hook.
func (c *Codec) Open(ctx context.Context, d Delivery, frame []byte) (*Opened, error) {
	o, err := c.open(ctx, d, frame, nil, "")
	if err != nil {
		c.reject.report(d.Subject, err)
		return nil, err
	}

	return o, nil
}

// OpenReply checks and decrypts the reply to req, which this Codec sealed.
// The reply must come from an identity holding fromRole, the role the
// request addressed; the caller accepts one reply per request.
func (c *Codec) OpenReply(ctx context.Context, d Delivery, frame []byte, req *Sealed,
	fromRole string) (*Opened, error) {
	if req == nil || req.Header.Kind != KindRequest {
		return nil, errors.New("envelope: OpenReply needs the sealed request")
	}
	o, err := c.open(ctx, d, frame, req, fromRole)
	if err != nil {
		c.reject.report(d.Subject, err)
		return nil, err
	}

	return o, nil
}

// open runs the receiver's checks in their documented order.
func (c *Codec) open(ctx context.Context, d Delivery, frame []byte, req *Sealed,
	fromRole string) (*Opened, error) {
	h, hdr, sig, ciphertext, err := c.parse(frame)
	if err != nil {
		return nil, err
	}
	sender, err := c.checkSender(ctx, h)
	if err != nil {
		return nil, err
	}
	if err := c.checkSignature(ctx, h, d, hdr, sig, ciphertext); err != nil {
		return nil, err
	}
	if err := checkKind(h, d, req, fromRole, sender); err != nil {
		return nil, err
	}
	recipient, err := c.addressedTo(h, req != nil)
	if err != nil {
		return nil, err
	}
	if err := c.checkFresh(h, d); err != nil {
		return nil, err
	}
	if !h.Kind.isStream() {
		key := replayKey{receiver: c.keys.ID(), sender: h.Sender, id: h.ID}
		exp := h.Timestamp + c.cfg.Window.Milliseconds()
		if !c.replay.insert(key, c.now().UnixMilli(), exp) {
			return nil, fmt.Errorf("%w: id %x", ErrReplay, h.ID)
		}
	}
	key, err := c.contentKey(ctx, h, recipient, req)
	if err != nil {
		return nil, err
	}
	aead, nonce := messageAEAD(&key, h.ID)
	body, err := aead.Open(nil, nonce, ciphertext, hdr)
	if err != nil {
		return nil, ErrDecrypt
	}

	return &Opened{Header: h, Sender: sender, Body: body, Digest: sha256.Sum256(frame),
		key: key, codec: c, subject: d.Subject}, nil
}

// parse applies the size and recipient limits and splits the frame.
func (c *Codec) parse(frame []byte) (h *Header, hdr, sig, ct []byte, err error) {
	if len(frame) > c.cfg.MaxFrameBytes {
		return nil, nil, nil, nil, fmt.Errorf("%w: %d bytes, max %d", ErrTooLarge,
			len(frame), c.cfg.MaxFrameBytes)
	}
	hdr, sig, ct, err = frameParts(frame)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if hdr[0] != Version {
		return nil, nil, nil, nil, fmt.Errorf("%w: %d", ErrUnknownVersion, hdr[0])
	}
	if n := recipientCount(hdr); n > c.cfg.MaxRecipients {
		return nil, nil, nil, nil, fmt.Errorf("%w: %d, max %d", ErrTooManyRecipients, n,
			c.cfg.MaxRecipients)
	}
	h, err = ParseHeader(hdr)
	if err != nil {
		return nil, nil, nil, nil, err
	}

	return h, hdr, sig, ct, nil
}

// recipientCount reads the recipient count of a version-1 header without
// parsing the rest, or returns 0 when the header is too short to hold one.
func recipientCount(hdr []byte) int {
	off := 1 + 1 + 16 + 8
	if len(hdr) <= off {
		return 0
	}
	off += 1 + int(hdr[off]) + 4 + 32
	if len(hdr) <= off {
		return 0
	}

	return int(hdr[off])
}

// checkSender checks the registry view's freshness and the sender's status.
func (c *Codec) checkSender(ctx context.Context, h *Header) (Party, error) {
	if err := c.dir.Fresh(ctx); err != nil {
		return Party{}, fmt.Errorf("%w: %w", ErrStale, err)
	}
	p, err := c.dir.Party(ctx, h.Sender)
	if err != nil {
		return Party{}, ErrUnknownSender
	}
	switch p.Status {
	case StatusActive:
	case StatusSuspended:
		return Party{}, ErrSenderSuspended
	default:
		return Party{}, ErrSenderRevoked
	}

	return p, nil
}

// checkSignature checks the key version's state and the Ed25519 signature.
func (c *Codec) checkSignature(ctx context.Context, h *Header, d Delivery,
	hdr, sig, ct []byte) error {
	k, err := c.dir.SigningKey(ctx, h.Sender, h.SenderKeyVersion)
	if err != nil {
		return fmt.Errorf("%w: version %d", ErrRetiredKey, h.SenderKeyVersion)
	}
	if k.Retired {
		return fmt.Errorf("%w: version %d", ErrRetiredKey, h.SenderKeyVersion)
	}
	if k.Compromised {
		// Revocation is not retroactive for stream messages stored before
		// it; nothing else signed by a leaked key is accepted.
		limit, ok := k.RevokedAtSeq[d.Stream]
		if d.Stream == "" || !ok || d.Sequence >= limit {
			return fmt.Errorf("%w: version %d", ErrCompromisedKey, h.SenderKeyVersion)
		}
	}
	if len(k.Public) != ed25519.PublicKeySize ||
		!ed25519.Verify(k.Public, signingInput(d.Subject, hdr, ct), sig) {
		return ErrBadSignature
	}

	return nil
}

// privateKey returns the local HPKE or role key of recipient r.
func (c *Codec) privateKey(r Recipient) (hpke.PrivateKey, error) {
	var (
		priv hpke.PrivateKey
		err  error
	)
	if r.Type == RecipientRole {
		priv, err = c.keys.RoleKey(r.Name, r.Version)
	} else {
		priv, err = c.keys.HPKEKey(r.Version)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: no local key for %s", ErrNotAddressed, r)
	}

	return priv, nil
}

func ed25519Sign(priv []byte, msg []byte) []byte {
	return ed25519.Sign(ed25519.PrivateKey(priv), msg)
}

// checkKind matches the envelope kind and reply binding to how it arrived.
func checkKind(h *Header, d Delivery, req *Sealed, fromRole string, sender Party) error {
	switch {
	case req != nil:
		if h.Kind != KindReply || h.RequestDigest != req.Digest {
			return fmt.Errorf("%w: not the reply to request %x", ErrSubjectMismatch,
				req.Header.ID)
		}
		if d.Subject != req.Header.ReplySubject {
			return fmt.Errorf("%w: reply arrived on %q", ErrSubjectMismatch, d.Subject)
		}
		if !slices.Contains(sender.Roles, fromRole) {
			return fmt.Errorf("%w: replier does not hold role %q", ErrSubjectMismatch,
				fromRole)
		}
	case d.Stream != "":
		if !h.Kind.isStream() {
			return fmt.Errorf("%w: %s in stream %s", ErrSubjectMismatch, h.Kind, d.Stream)
		}
	default:
		if h.Kind != KindRequest {
			return fmt.Errorf("%w: %s outside a stream", ErrSubjectMismatch, h.Kind)
		}
		if d.Reply != h.ReplySubject {
			return fmt.Errorf("%w: reply subject %q is not the signed one", ErrSubjectMismatch,
				d.Reply)
		}
	}

	return nil
}

// addressedTo returns the recipient entry this receiver can open.
func (c *Codec) addressedTo(h *Header, reply bool) (Recipient, error) {
	for _, r := range h.Recipients {
		switch {
		case reply:
			if r.Type == RecipientIdentity && r.Name == c.keys.ID() && r.Version == 0 {
				return r, nil
			}
		case r.Type == RecipientIdentity && r.Name == c.keys.ID():
			if _, err := c.keys.HPKEKey(r.Version); err == nil {
				return r, nil
			}
		case r.Type == RecipientRole:
			if _, err := c.keys.RoleKey(r.Name, r.Version); err == nil {
				return r, nil
			}
		}
	}

	return Recipient{}, ErrNotAddressed
}

// checkFresh applies the clock window to requests and replies, and the
// stream rules to events and jobs.
func (c *Codec) checkFresh(h *Header, d Delivery) error {
	now := c.now().UnixMilli()
	w := c.cfg.Window.Milliseconds()
	if h.Kind.isStream() {
		return checkStreamFresh(h, d, w, now)
	}
	switch {
	case h.Timestamp < now-w || h.Timestamp > now+w:
		return fmt.Errorf("%w: timestamp %d is more than %dms from %d", ErrNotFresh,
			h.Timestamp, w, now)
	case h.Timestamp < c.start:
		return fmt.Errorf("%w: timestamp %d predates this receiver's start", ErrNotFresh,
			h.Timestamp)
	}

	return nil
}

func checkStreamFresh(h *Header, d Delivery, w, now int64) error {
	stored := d.StreamTime.UnixMilli()
	switch {
	case d.MsgID != hex.EncodeToString(h.ID[:]):
		return fmt.Errorf("%w: Nats-Msg-Id %q is not the envelope id", ErrNotFresh, d.MsgID)
	case d.StreamTime.IsZero() || h.Timestamp < stored-w || h.Timestamp > stored+w:
		return fmt.Errorf("%w: timestamp %d is more than %dms from stream time %d",
			ErrNotFresh, h.Timestamp, w, stored)
	case h.Kind == KindJob && h.Expires != 0 && h.Expires <= now:
		return fmt.Errorf("%w: job expired at %d", ErrNotFresh, h.Expires)
	}

	return nil
}

// contentKey returns K for the header: derived from the request for a
// reply, else from the cache or from the wrap record.
func (c *Codec) contentKey(ctx context.Context, h *Header, r Recipient,
	req *Sealed) (ContentKey, error) {
	if req != nil {
		key, kid := req.reply, req.replyKID
		if !req.replyReady {
			key = req.key.replyKey(req.Header.ID)
			kid = key.KID()
		}
		if kid != h.KID {
			return ContentKey{}, ErrKeyCommitment
		}
		return key, nil
	}
	ck := keyCacheKey{sender: h.Sender, kid: h.KID, recipient: r}
	if key, ok := c.cachedKey(ck); ok {
		return key, nil
	}
	priv, err := c.privateKey(r)
	if err != nil {
		return ContentKey{}, err
	}
	wrap, err := c.wraps.Get(ctx, WrapKey{Sender: h.Sender, KID: h.KID, Recipient: r})
	if err != nil {
		return ContentKey{}, fmt.Errorf("%w: %s: %w", ErrWrapMissing, r, err)
	}
	key, err := unwrapKey(priv, wrap, wrapInfo(h.KID, h.Sender, h.SenderKeyVersion, r), h.KID)
	if err != nil {
		return ContentKey{}, err
	}
	c.storeKey(ck, key)

	return key, nil
}
