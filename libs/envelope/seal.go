package envelope

import (
	"context"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"
)

// Target is a reader of a message before its key version or epoch is
// resolved: an identity id or a role.
type Target struct {
	Type RecipientType
	Name string
}

// ToIdentity returns a target for one identity.
func ToIdentity(id string) Target { return Target{Type: RecipientIdentity, Name: id} }

// ToRole returns a target for every member of role.
func ToRole(role string) Target { return Target{Type: RecipientRole, Name: role} }

// Message is what [Codec.Seal] seals.
type Message struct {
	Kind         Kind
	Subject      string   // the NATS subject it is published on; signed, not sent
	To           []Target // at least one
	ContentType  string
	ReplySubject string    // requests only
	Expires      time.Time // jobs only; zero means the job never expires
	Body         []byte
}

// Sealed is a sealed envelope. A requester keeps it until the reply
// arrives: it holds the content key the reply is derived from.
type Sealed struct {
	Frame  []byte
	Header *Header
	Digest [32]byte // SHA-256 of Frame: what a reply binds to
	key    ContentKey
	// reply and replyKID are the key of the reply and its commitment,
	// once PrepareReply derived them.
	reply      ContentKey
	replyKID   [32]byte
	replyReady bool
}

// PrepareReply derives the content key of the reply to this request now,
// so that [Codec.OpenReply] does not derive it after the reply arrives. A
// requester calls it after publishing, while it waits. It must not run
// concurrently with OpenReply for the same request.
func (s *Sealed) PrepareReply() {
	if s.Header.Kind == KindRequest && !s.replyReady {
		s.reply = s.key.replyKey(s.Header.ID)
		s.replyKID = s.reply.KID()
		s.replyReady = true
	}
}

// MsgID returns the id in lowercase hex, the JetStream Nats-Msg-Id.
func (s *Sealed) MsgID() string { return fmt.Sprintf("%x", s.Header.ID) }

// epoch is one content key K in use by this process for one recipient set.
type epoch struct {
	key            ContentKey
	kid            [32]byte
	recipients     []Recipient // sorted, with the versions K was wrapped to
	signingVersion uint32
	created        time.Time
	count          uint64
}

// epochSlot serialises epoch changes for one recipient set, so concurrent
// senders wait for one set of wraps instead of writing several.
type epochSlot struct {
	mu  sync.Mutex
	cur *epoch
}

// resolved is a recipient with the public key its wrap is sealed to.
type resolved struct {
	r   Recipient
	pub hpke.PublicKey
}

// Seal encrypts and signs m. The first message to a recipient set, and the
// first after an epoch ends, writes one wrap record per recipient and waits
// for the store's ack.
func (c *Codec) Seal(ctx context.Context, m Message) (*Sealed, error) {
	if m.Kind == KindReply {
		return nil, errors.New("envelope: seal replies with SealReply")
	}
	if !validSubject(m.Subject) {
		return nil, fmt.Errorf("envelope: subject %q must be printable ASCII", m.Subject)
	}
	if err := c.dir.Fresh(ctx); err != nil {
		return nil, fmt.Errorf("sealing for %s: %w", m.Subject, err)
	}
	ep, err := c.currentEpoch(ctx, m.To)
	if err != nil {
		return nil, fmt.Errorf("sealing for %s: %w", m.Subject, err)
	}
	h := &Header{
		Version: Version, Kind: m.Kind, Timestamp: c.now().UnixMilli(),
		Sender: c.keys.ID(), SenderKeyVersion: ep.signingVersion, KID: ep.kid,
		Recipients: ep.recipients, ContentType: m.ContentType, ReplySubject: m.ReplySubject,
	}
	if !m.Expires.IsZero() {
		h.Expires = m.Expires.UnixMilli()
	}

	return c.sealWith(m.Subject, h, &ep.key, m.Body)
}

// SealReply seals the reply to req, which this Codec opened. The reply goes
// to the request's signed reply subject, is readable only by the requester
// and uses a key derived from the request's content key.
func (c *Codec) SealReply(req *Opened, contentType string, body []byte) (*Sealed, error) {
	if req == nil || req.Header.Kind != KindRequest {
		return nil, errors.New("envelope: SealReply needs an opened request")
	}
	version, _ := c.keys.SigningKey()
	key := req.key.replyKey(req.Header.ID)
	h := &Header{
		Version: Version, Kind: KindReply, Timestamp: c.now().UnixMilli(),
		Sender: c.keys.ID(), SenderKeyVersion: version, KID: key.KID(),
		Recipients:  []Recipient{{Type: RecipientIdentity, Name: req.Header.Sender}},
		ContentType: contentType, RequestDigest: req.Digest,
	}

	return c.sealWith(req.Header.ReplySubject, h, &key, body)
}

// sealWith draws the id, encrypts body under the key derived from key and
// the id, and signs the result.
func (c *Codec) sealWith(subject string, h *Header, key *ContentKey, body []byte) (*Sealed, error) {
	if _, err := io.ReadFull(c.rand, h.ID[:]); err != nil {
		return nil, fmt.Errorf("drawing message id: %w", err)
	}
	_, priv := c.keys.SigningKey()

	return sealFrame(subject, h, key, priv, body)
}

// sealFrame is the deterministic part of sealing: given the header (with
// its id), the content key and the signing key, the frame is fixed. The
// test vectors are produced through it.
func sealFrame(subject string, h *Header, key *ContentKey, priv []byte, body []byte) (*Sealed, error) {
	frame := make([]byte, 2, 2+256+signatureSize+len(body)+gcmTagSize)
	frame, err := h.AppendBinary(frame)
	if err != nil {
		return nil, fmt.Errorf("encoding header: %w", err)
	}
	hlen := len(frame) - 2
	if hlen > 0xffff {
		return nil, fmt.Errorf("%w: header of %d bytes", ErrMalformed, hlen)
	}
	binary.BigEndian.PutUint16(frame, uint16(hlen))
	header := frame[2:]

	aead, nonce := messageAEAD(key, h.ID)
	ciphertext := aead.Seal(nil, nonce, body, header)
	sig := ed25519Sign(priv, signingInput(subject, header, ciphertext))
	frame = append(frame, sig...)
	frame = append(frame, ciphertext...)

	return &Sealed{Frame: frame, Header: h, Digest: sha256.Sum256(frame), key: *key}, nil
}

// currentEpoch returns the epoch for the targets, starting a new one when
// none exists, it is too old or too used, or any version changed.
func (c *Codec) currentEpoch(ctx context.Context, to []Target) (*epoch, error) {
	rs, err := c.resolve(ctx, to)
	if err != nil {
		return nil, err
	}
	recipients := make([]Recipient, len(rs))
	for i := range rs {
		recipients[i] = rs[i].r
	}
	version, _ := c.keys.SigningKey()

	slot := c.slot(to)
	slot.mu.Lock()
	defer slot.mu.Unlock()
	ep := slot.cur
	if ep == nil || ep.signingVersion != version || ep.count >= c.cfg.MaxEpochMessages ||
		c.now().Sub(ep.created) >= c.cfg.MaxEpochAge ||
		!slices.Equal(ep.recipients, recipients) {
		ep, err = c.newEpoch(ctx, rs, recipients, version)
		if err != nil {
			return nil, err
		}
		slot.cur = ep
	}
	ep.count++

	return ep, nil
}

// newEpoch draws K and stores its wraps, create-only, before first use.
func (c *Codec) newEpoch(ctx context.Context, rs []resolved, recipients []Recipient,
	version uint32) (*epoch, error) {
	ep := &epoch{recipients: recipients, signingVersion: version, created: c.now()}
	if _, err := io.ReadFull(c.rand, ep.key[:]); err != nil {
		return nil, fmt.Errorf("drawing content key: %w", err)
	}
	ep.kid = ep.key.KID()
	for _, r := range rs {
		wrap, err := wrapKey(r.pub, &ep.key, wrapInfo(ep.kid, c.keys.ID(), version, r.r))
		if err != nil {
			return nil, fmt.Errorf("wrapping to %s: %w", r.r, err)
		}
		wk := WrapKey{Sender: c.keys.ID(), KID: ep.kid, Recipient: r.r}
		if err := c.wraps.Create(ctx, wk, wrap); err != nil {
			return nil, fmt.Errorf("storing wrap to %s: %w", r.r, err)
		}
	}

	return ep, nil
}

// resolve looks up the current key version or epoch of every target and
// returns them sorted and unique.
func (c *Codec) resolve(ctx context.Context, to []Target) ([]resolved, error) {
	if len(to) == 0 || len(to) > c.cfg.MaxRecipients {
		return nil, fmt.Errorf("%w: %d recipients, want 1 to %d", ErrTooManyRecipients,
			len(to), c.cfg.MaxRecipients)
	}
	rs := make([]resolved, 0, len(to))
	for _, t := range to {
		switch t.Type {
		case RecipientIdentity:
			k, err := c.dir.RecipientKey(ctx, t.Name)
			if err != nil {
				return nil, fmt.Errorf("looking up key of %q: %w", t.Name, err)
			}
			rs = append(rs, resolved{Recipient{t.Type, t.Name, k.Version}, k.Public})
		case RecipientRole:
			e, err := c.dir.RoleEpoch(ctx, t.Name)
			if err != nil {
				return nil, fmt.Errorf("looking up epoch of role %q: %w", t.Name, err)
			}
			rs = append(rs, resolved{Recipient{t.Type, t.Name, e.Epoch}, e.Public})
		default:
			return nil, fmt.Errorf("envelope: unknown target type %d", t.Type)
		}
	}
	slices.SortFunc(rs, func(a, b resolved) int { return compareRecipients(a.r, b.r) })
	rs = slices.CompactFunc(rs, func(a, b resolved) bool { return a.r == b.r })

	return rs, nil
}

// slot returns the epoch slot of a target set, keyed by the sorted targets.
func (c *Codec) slot(to []Target) *epochSlot {
	names := make([]string, len(to))
	for i, t := range to {
		names[i] = fmt.Sprintf("%d:%s", t.Type, t.Name)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	key := strings.Join(names, "\x00")

	c.epochsMu.Lock()
	defer c.epochsMu.Unlock()
	s, ok := c.epochs[key]
	if !ok {
		s = &epochSlot{}
		c.epochs[key] = s
	}

	return s
}
