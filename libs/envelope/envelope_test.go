package envelope

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestRequestReplyRoundTrip(t *testing.T) {
	w := newWorld(t)
	agent := w.addParty(t, "agent-1", "agent")
	svc := w.addParty(t, "codesec-1", "service:codesec")
	ctx := context.Background()

	req := agent.request(t, "nodex.v1.codesec.submit", "service:codesec", []byte(`{"a":1}`))
	got, err := svc.codec.Open(ctx, reqDelivery(req, "nodex.v1.codesec.submit"), req.Frame)
	if err != nil {
		t.Fatalf("opening request: %v", err)
	}
	if !bytes.Equal(got.Body, []byte(`{"a":1}`)) {
		t.Errorf("body = %q, want %q", got.Body, `{"a":1}`)
	}
	if got.Sender.ID != "agent-1" {
		t.Errorf("sender = %q, want agent-1", got.Sender.ID)
	}

	reply, err := svc.codec.SealReply(got, ContentTypeJSON, []byte(`{"ok":true}`))
	if err != nil {
		t.Fatalf("sealing reply: %v", err)
	}
	d := Delivery{Subject: req.Header.ReplySubject}
	opened, err := agent.codec.OpenReply(ctx, d, reply.Frame, req, "service:codesec")
	if err != nil {
		t.Fatalf("opening reply: %v", err)
	}
	if !bytes.Equal(opened.Body, []byte(`{"ok":true}`)) {
		t.Errorf("reply body = %q", opened.Body)
	}

	_, err = agent.codec.OpenReply(ctx, d, reply.Frame, req, "service:codesec")
	if !errors.Is(err, ErrReplay) {
		t.Errorf("second copy of reply: got %v, want ErrReplay", err)
	}
}

func TestReplyBinding(t *testing.T) {
	w := newWorld(t)
	agent := w.addParty(t, "agent-1", "agent")
	svc := w.addParty(t, "codesec-1", "service:codesec")
	other := w.addParty(t, "keyvault-1", "service:keyvault")
	w.join(t, "service:codesec", other) // holds the role key, not the registry role
	ctx := context.Background()
	r1 := agent.request(t, subj, "service:codesec", []byte(`{}`))
	r2 := agent.request(t, subj, "service:codesec", []byte(`{}`))
	reply := func(p *party, req *Sealed) *Sealed {
		t.Helper()
		o, err := p.codec.Open(ctx, reqDelivery(req, subj), req.Frame)
		if err != nil {
			t.Fatalf("opening request: %v", err)
		}
		s, err := p.codec.SealReply(o, ContentTypeJSON, []byte(`{}`))
		if err != nil {
			t.Fatalf("sealing reply: %v", err)
		}
		return s
	}
	d := Delivery{Subject: r1.Header.ReplySubject}

	toR1 := reply(svc, r1)
	_, err := agent.codec.OpenReply(ctx, d, toR1.Frame, r2, "service:codesec")
	if !errors.Is(err, ErrSubjectMismatch) {
		t.Errorf("reply to another request: got %v, want ErrSubjectMismatch", err)
	}

	fromOther := reply(other, r2)
	_, err = agent.codec.OpenReply(ctx, d, fromOther.Frame, r2, "service:codesec")
	if !errors.Is(err, ErrSubjectMismatch) {
		t.Errorf("reply from an identity without the role: got %v, want ErrSubjectMismatch", err)
	}

	_, err = agent.codec.OpenReply(ctx, Delivery{Subject: "_INBOX.other"}, toR1.Frame, r1,
		"service:codesec")
	if !errors.Is(err, ErrBadSignature) {
		t.Errorf("reply delivered on another subject: got %v, want ErrBadSignature", err)
	}
	if _, err := agent.codec.OpenReply(ctx, d, toR1.Frame, r1, "service:codesec"); err != nil {
		t.Errorf("genuine reply: %v", err)
	}
}

// TestPreparedReplyKeepsChecks checks that a reply key derived ahead with
// PrepareReply still opens the genuine reply and still rejects a reply that
// is bound to the request and signed by the replier but encrypted under a
// key the replier chose.
func TestPreparedReplyKeepsChecks(t *testing.T) {
	w, agent, svc, req := twoParties(t)
	ctx := context.Background()
	req.PrepareReply()
	o, err := svc.codec.Open(ctx, reqDelivery(req, subj), req.Frame)
	if err != nil {
		t.Fatalf("opening request: %v", err)
	}
	d := Delivery{Subject: req.Header.ReplySubject}

	chosen := ContentKey{5}
	h := &Header{Version: Version, Kind: KindReply, Timestamp: w.now.UnixMilli(),
		Sender: svc.id, SenderKeyVersion: 1, KID: chosen.KID(),
		Recipients:  []Recipient{{Type: RecipientIdentity, Name: agent.id}},
		ContentType: ContentTypeJSON, RequestDigest: req.Digest}
	h.ID[0] = 1
	forged := forge(t, svc, req.Header.ReplySubject, h, chosen, []byte(`{}`))
	_, err = agent.codec.OpenReply(ctx, d, forged.Frame, req, "service:codesec")
	if !errors.Is(err, ErrKeyCommitment) {
		t.Errorf("reply under a chosen key: got %v, want ErrKeyCommitment", err)
	}

	reply, err := svc.codec.SealReply(o, ContentTypeJSON, []byte(`{"ok":true}`))
	if err != nil {
		t.Fatalf("sealing reply: %v", err)
	}
	opened, err := agent.codec.OpenReply(ctx, d, reply.Frame, req, "service:codesec")
	if err != nil {
		t.Fatalf("opening genuine reply: %v", err)
	}
	if !bytes.Equal(opened.Body, []byte(`{"ok":true}`)) {
		t.Errorf("reply body = %q, want %q", opened.Body, `{"ok":true}`)
	}
}

func TestReasonCodeNamesEveryReason(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range Reasons {
		code, ok := ReasonCode(fmt.Errorf("opening: %w", r))
		if !ok || code == "" {
			t.Errorf("ReasonCode(%v) = %q, %v; want a name", r, code, ok)
			continue
		}
		if seen[code] {
			t.Errorf("reason code %q names two reasons", code)
		}
		seen[code] = true
	}
	if got := ReasonCodes(); len(got) != len(Reasons) {
		t.Errorf("ReasonCodes() has %d names, want %d", len(got), len(Reasons))
	}
	if code, ok := ReasonCode(errors.New("not an envelope error")); ok {
		t.Errorf("ReasonCode of a foreign error = %q, true; want false", code)
	}
}
