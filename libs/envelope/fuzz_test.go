package envelope

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"testing"
	"time"
)

// FuzzOpen feeds arbitrary frames to the open path of the vector world.
// It must never panic, and it may accept only the exact frames the vectors
// accept: anything else would be a forgery. The seed corpus in
// testdata/fuzz/FuzzOpen holds every vector and runs in plain go test.
func FuzzOpen(f *testing.F) {
	raw, err := os.ReadFile(vectorFile)
	if err != nil {
		f.Fatalf("reading vectors: %v", err)
	}
	var vs vectorSet
	if err := json.Unmarshal(raw, &vs); err != nil {
		f.Fatalf("parsing vectors: %v", err)
	}
	keys, dir, wraps := vectorWorld(f, &vs)
	var accepted [][]byte
	for _, m := range vs.Messages {
		if m.Expect == "accept" {
			accepted = append(accepted, unhex(f, m.Frame))
		}
	}
	now := func() time.Time { return time.UnixMilli(vs.NowMs) }

	f.Fuzz(func(t *testing.T, frame []byte, stream bool) {
		receiver := "codesec-1"
		d := Delivery{Subject: "nodex.v1.codesec.submit", Reply: "_INBOX.agent-1.r1"}
		if stream {
			receiver = "monitor-1"
			d = Delivery{Subject: "nodex.v1.events.codesec.submitted", Stream: "NODEX_EVENTS",
				Sequence: 5, StreamTime: time.UnixMilli(vs.NowMs - 2000 + 3)}
			if hdr, _, _, err := frameParts(frame); err == nil {
				if h, err := ParseHeader(hdr); err == nil {
					d.MsgID = hex.EncodeToString(h.ID[:])
				}
			}
		}
		c, err := New(Config{Keys: keys[receiver], Directory: dir, Wraps: wraps, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		c.start = 0
		o, err := c.Open(context.Background(), d, frame)
		if err != nil {
			if !slices.ContainsFunc(Reasons, func(r error) bool { return errors.Is(err, r) }) {
				t.Fatalf("error wraps no rejection reason: %v", err)
			}
			return
		}
		for _, a := range accepted {
			if bytes.Equal(a, frame) {
				return
			}
		}
		t.Fatalf("accepted a frame that no sender sealed: %x (body %q)", frame, o.Body)
	})
}

// FuzzParseHeader checks that a header that parses re-encodes to the same
// bytes, so no two encodings of one header exist.
func FuzzParseHeader(f *testing.F) {
	h := &Header{Version: Version, Kind: KindRequest, Sender: "a", ReplySubject: "_INBOX.a",
		Recipients: []Recipient{{RecipientRole, "r", 1}}}
	seedHdr, err := h.AppendBinary(nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seedHdr)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b)
		if err != nil {
			return
		}
		out, err := h.AppendBinary(nil)
		if err != nil {
			t.Fatalf("parsed header does not encode: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoded %x, parsed %x", out, b)
		}
	})
}
