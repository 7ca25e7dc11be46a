package envelope

import (
	"context"
	"strings"
	"testing"
)

func benchParties(b *testing.B) (*party, *party, []byte) {
	w := newWorld(b)
	sender := w.addParty(b, "agent-1", "agent")
	receiver := w.addParty(b, "codesec-1", "service:codesec")
	body := []byte(`{"data":"` + strings.Repeat("x", 1024-11) + `"}`)

	return sender, receiver, body
}

func benchMessage(body []byte) Message {
	return Message{Kind: KindRequest, Subject: subj, To: []Target{ToRole("service:codesec")},
		ContentType: ContentTypeJSON, ReplySubject: "_INBOX.bench", Body: body}
}

// BenchmarkSeal measures sealing a 1 KiB request in an established epoch.
func BenchmarkSeal(b *testing.B) {
	sender, _, body := benchParties(b)
	m := benchMessage(body)
	if _, err := sender.codec.Seal(context.Background(), m); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := sender.codec.Seal(context.Background(), m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen measures opening and decoding a 1 KiB request whose
// content key is already cached.
func BenchmarkOpen(b *testing.B) {
	sender, receiver, body := benchParties(b)
	frames := make([][]byte, 4096)
	for i := range frames {
		s, err := sender.codec.Seal(context.Background(), benchMessage(body))
		if err != nil {
			b.Fatal(err)
		}
		frames[i] = s.Frame
	}
	d := Delivery{Subject: subj, Reply: "_INBOX.bench"}
	i := 0
	for b.Loop() {
		if i == len(frames) {
			b.StopTimer()
			receiver.restart(b)
			receiver.codec.start = 0
			i = 0
			b.StartTimer()
		}
		o, err := receiver.codec.Open(context.Background(), d, frames[i])
		if err != nil {
			b.Fatal(err)
		}
		var v struct {
			Data string `json:"data"`
		}
		if err := o.Decode(&v); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
