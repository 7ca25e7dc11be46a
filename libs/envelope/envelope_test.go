package envelope

import (
	"bytes"
	"context"
	"errors"
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
