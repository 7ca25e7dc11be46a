package envelope

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"testing"
	"time"
)

const subj = "nodex.v1.codesec.submit"

// forge seals h with key and signer's current signing key, bypassing the
// epoch logic, so tests can build envelopes a real sender would not.
func forge(t *testing.T, signer *party, subject string, h *Header, key ContentKey,
	body []byte) *Sealed {
	t.Helper()
	_, priv := signer.keys.SigningKey()
	s, err := sealFrame(subject, h, &key, priv, body)
	if err != nil {
		t.Fatalf("forging frame: %v", err)
	}

	return s
}

// twoParties returns a world with an agent and a codesec service, and a
// valid request from the agent.
func twoParties(t *testing.T) (*world, *party, *party, *Sealed) {
	t.Helper()
	w := newWorld(t)
	agent := w.addParty(t, "agent-1", "agent")
	svc := w.addParty(t, "codesec-1", "service:codesec")

	return w, agent, svc, agent.request(t, subj, "service:codesec", []byte(`{"a":1}`))
}

func TestOpenRejectsEachReason(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, w *world, agent, svc *party, req *Sealed) (Delivery, []byte)
		want  error
	}{
		{"too large", func(t *testing.T, w *world, a, svc *party, req *Sealed) (Delivery, []byte) {
			svc.codec = w.codec(t, svc.keys, func(c *Config) { c.MaxFrameBytes = 100 })
			return reqDelivery(req, subj), req.Frame
		}, ErrTooLarge},
		{"too many recipients", func(t *testing.T, w *world, a, svc *party, req *Sealed) (Delivery, []byte) {
			h := *req.Header
			h.Recipients = nil
			for i := range DefaultMaxRecipients + 1 {
				h.Recipients = append(h.Recipients,
					Recipient{RecipientIdentity, fmt.Sprintf("r%02d", i), 1})
			}
			s := forge(t, a, subj, &h, req.key, nil)
			return reqDelivery(s, subj), s.Frame
		}, ErrTooManyRecipients},
		{"truncated", func(t *testing.T, w *world, a, svc *party, req *Sealed) (Delivery, []byte) {
			return reqDelivery(req, subj), req.Frame[:40]
		}, ErrMalformed},
		{"header length", func(t *testing.T, w *world, a, svc *party, req *Sealed) (Delivery, []byte) {
			f := clone(req.Frame)
			f[1]++
			return reqDelivery(req, subj), f
		}, ErrMalformed},
		{"unknown version", func(t *testing.T, w *world, a, svc *party, req *Sealed) (Delivery, []byte) {
			f := clone(req.Frame)
			f[2] = 2
			return reqDelivery(req, subj), f
		}, ErrUnknownVersion},
		{"stale registry", func(t *testing.T, w *world, a, svc *party, req *Sealed) (Delivery, []byte) {
			w.dir.SetStale(errors.New("heartbeat 40s old"))
			return reqDelivery(req, subj), req.Frame
		}, ErrStale},
		{"unknown sender", func(t *testing.T, w *world, a, svc *party, req *Sealed) (Delivery, []byte) {
			h := *req.Header
			h.Sender = "ghost"
			s := forge(t, a, subj, &h, req.key, nil)
			return reqDelivery(s, subj), s.Frame
		}, ErrUnknownSender},
		{"suspended", func(t *testing.T, w *world, a, svc *party, req *Sealed) (Delivery, []byte) {
			w.dir.SetParty(Party{ID: a.id, Status: StatusSuspended})
			return reqDelivery(req, subj), req.Frame
		}, ErrSenderSuspended},
		{"revoked", func(t *testing.T, w *world, a, svc *party, req *Sealed) (Delivery, []byte) {
			w.dir.SetParty(Party{ID: a.id, Status: StatusRevoked})
			return reqDelivery(req, subj), req.Frame
		}, ErrSenderRevoked},
		{"retired key", func(t *testing.T, w *world, a, svc *party, req *Sealed) (Delivery, []byte) {
			k, _ := w.dir.SigningKey(context.Background(), a.id, 1)
			k.Retired = true
			w.dir.SetSigningKey(a.id, k)
			return reqDelivery(req, subj), req.Frame
		}, ErrRetiredKey},
		{"unknown key version", func(t *testing.T, w *world, a, svc *party, req *Sealed) (Delivery, []byte) {
			h := *req.Header
			h.SenderKeyVersion = 9
			s := forge(t, a, subj, &h, req.key, nil)
			return reqDelivery(s, subj), s.Frame
		}, ErrRetiredKey},
		{"compromised key", func(t *testing.T, w *world, a, svc *party, req *Sealed) (Delivery, []byte) {
			k, _ := w.dir.SigningKey(context.Background(), a.id, 1)
			k.Compromised = true
			w.dir.SetSigningKey(a.id, k)
			return reqDelivery(req, subj), req.Frame
		}, ErrCompromisedKey},
		{"flipped ciphertext", func(t *testing.T, w *world, a, svc *party, req *Sealed) (Delivery, []byte) {
			f := clone(req.Frame)
			f[len(f)-1] ^= 1
			return reqDelivery(req, subj), f
		}, ErrBadSignature},
		{"flipped header", func(t *testing.T, w *world, a, svc *party, req *Sealed) (Delivery, []byte) {
			f := clone(req.Frame)
			f[2+2+5] ^= 1 // a byte of the id
			return reqDelivery(req, subj), f
		}, ErrBadSignature},
		{"other subject", func(t *testing.T, w *world, a, svc *party, req *Sealed) (Delivery, []byte) {
			return reqDelivery(req, "nodex.v1.codesec.revoke"), req.Frame
		}, ErrBadSignature},
		{"other reply subject", func(t *testing.T, w *world, a, svc *party, req *Sealed) (Delivery, []byte) {
			return Delivery{Subject: subj, Reply: "_INBOX.eve"}, req.Frame
		}, ErrSubjectMismatch},
		{"event outside stream", func(t *testing.T, w *world, a, svc *party, req *Sealed) (Delivery, []byte) {
			h := *req.Header
			h.Kind, h.ReplySubject = KindEvent, ""
			s := forge(t, a, subj, &h, req.key, nil)
			return Delivery{Subject: subj}, s.Frame
		}, ErrSubjectMismatch},
		{"not addressed", func(t *testing.T, w *world, a, svc *party, req *Sealed) (Delivery, []byte) {
			w.addParty(t, "keyvault-1", "service:keyvault")
			s := a.request(t, subj, "service:keyvault", nil)
			return reqDelivery(s, subj), s.Frame
		}, ErrNotAddressed},
		{"too old", func(t *testing.T, w *world, a, svc *party, req *Sealed) (Delivery, []byte) {
			w.advance(DefaultWindow + time.Millisecond)
			return reqDelivery(req, subj), req.Frame
		}, ErrNotFresh},
		{"too new", func(t *testing.T, w *world, a, svc *party, req *Sealed) (Delivery, []byte) {
			h := *req.Header
			h.Timestamp += DefaultWindow.Milliseconds() + 1
			s := forge(t, a, subj, &h, req.key, nil)
			return reqDelivery(s, subj), s.Frame
		}, ErrNotFresh},
		{"before receiver start", func(t *testing.T, w *world, a, svc *party, req *Sealed) (Delivery, []byte) {
			w.advance(time.Second)
			svc.restart(t)
			return reqDelivery(req, subj), req.Frame
		}, ErrNotFresh},
		{"replay", func(t *testing.T, w *world, a, svc *party, req *Sealed) (Delivery, []byte) {
			if _, err := svc.codec.Open(context.Background(), reqDelivery(req, subj), req.Frame); err != nil {
				t.Fatalf("first open: %v", err)
			}
			return reqDelivery(req, subj), req.Frame
		}, ErrReplay},
		{"wrap missing", func(t *testing.T, w *world, a, svc *party, req *Sealed) (Delivery, []byte) {
			svc.codec = w.codec(t, svc.keys, func(c *Config) { c.Wraps = NewMemoryWraps() })
			return reqDelivery(req, subj), req.Frame
		}, ErrWrapMissing},
		{"wrap invalid", func(t *testing.T, w *world, a, svc *party, req *Sealed) (Delivery, []byte) {
			w.wraps.Replace(WrapKey{a.id, req.Header.KID, req.Header.Recipients[0]}, []byte("junk"))
			return reqDelivery(req, subj), req.Frame
		}, ErrWrapInvalid},
		{"key commitment", func(t *testing.T, w *world, a, svc *party, req *Sealed) (Delivery, []byte) {
			r := req.Header.Recipients[0]
			other := ContentKey{7}
			wrap, err := wrapKey(w.dir.roles[r.Name].Public, &other,
				wrapInfo(req.Header.KID, a.id, 1, r))
			if err != nil {
				t.Fatal(err)
			}
			w.wraps.Replace(WrapKey{a.id, req.Header.KID, r}, wrap)
			return reqDelivery(req, subj), req.Frame
		}, ErrKeyCommitment},
		{"decrypt", func(t *testing.T, w *world, a, svc *party, req *Sealed) (Delivery, []byte) {
			// Signed by the real sender, right kid, but encrypted under
			// another key: the signature passes and GCM fails.
			s := forge(t, a, subj, req.Header, ContentKey{9}, []byte("x"))
			return reqDelivery(s, subj), s.Frame
		}, ErrDecrypt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, agent, svc, req := twoParties(t)
			d, frame := tt.setup(t, w, agent, svc, req)
			var rejected []Rejection
			svc.codec.reject.hook = func(r Rejection) { rejected = append(rejected, r) }

			_, err := svc.codec.Open(context.Background(), d, frame)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if len(rejected) != 1 || rejected[0].Reason != tt.want {
				t.Errorf("OnReject got %+v, want one report with reason %v", rejected, tt.want)
			}
		})
	}
}

func TestDecodeRejectsSchema(t *testing.T) {
	_, _, svc, req := twoParties(t)
	o, err := svc.codec.Open(context.Background(), reqDelivery(req, subj), req.Frame)
	if err != nil {
		t.Fatalf("opening: %v", err)
	}
	var v struct {
		B int `json:"b"`
	}

	if err := o.Decode(&v); !errors.Is(err, ErrSchema) {
		t.Errorf("got %v, want ErrSchema for an unknown field", err)
	}
}

func TestRejectionHookRateLimited(t *testing.T) {
	w, _, svc, req := twoParties(t)
	var reports []Rejection
	svc.codec = w.codec(t, svc.keys, func(c *Config) {
		c.RejectsPerSecond = 1
		c.OnReject = func(r Rejection) { reports = append(reports, r) }
	})
	bad := clone(req.Frame)
	bad[len(bad)-1] ^= 1
	for range 10 {
		_, _ = svc.codec.Open(context.Background(), reqDelivery(req, subj), bad)
	}
	if len(reports) != 2 {
		t.Fatalf("got %d reports, want 2 (burst of 2 at 1/s)", len(reports))
	}

	w.advance(time.Second)
	_, _ = svc.codec.Open(context.Background(), reqDelivery(req, subj), bad)
	if len(reports) != 3 || reports[2].Suppressed != 8 {
		t.Errorf("after 1s got %d reports, last suppressed %d; want 3 and 8",
			len(reports), reports[len(reports)-1].Suppressed)
	}
}

func TestCompromisedKeyStreamLimit(t *testing.T) {
	w := newWorld(t)
	svc := w.addParty(t, "keyvault-1", "service:keyvault")
	mon := w.addParty(t, "monitor-1", "service:monitor")
	ev, err := svc.codec.Seal(context.Background(), Message{Kind: KindEvent,
		Subject: "nodex.v1.events.keyvault.stored", To: []Target{ToRole("service:monitor")},
		ContentType: ContentTypeJSON, Body: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	k, _ := w.dir.SigningKey(context.Background(), svc.id, 1)
	k.Compromised = true
	k.RevokedAtSeq = map[string]uint64{"NODEX_EVENTS": 10}
	w.dir.SetSigningKey(svc.id, k)
	d := Delivery{Subject: "nodex.v1.events.keyvault.stored", Stream: "NODEX_EVENTS",
		StreamTime: w.clock(), MsgID: ev.MsgID()}

	for _, tt := range []struct {
		seq  uint64
		want error
	}{{9, nil}, {10, ErrCompromisedKey}, {11, ErrCompromisedKey}} {
		d.Sequence = tt.seq
		_, err := mon.codec.Open(context.Background(), d, ev.Frame)
		if !errors.Is(err, tt.want) {
			t.Errorf("sequence %d: got %v, want %v", tt.seq, err, tt.want)
		}
	}
	d.Stream, d.Sequence = "OTHER", 1
	if _, err := mon.codec.Open(context.Background(), d, ev.Frame); !errors.Is(err, ErrCompromisedKey) {
		t.Errorf("stream without a limit: got %v, want ErrCompromisedKey", err)
	}
}

func TestSealEndsEpoch(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, w *world, sender, reader *party)
	}{
		{"by age", func(t *testing.T, w *world, _, _ *party) { w.advance(DefaultMaxEpochAge) }},
		{"by role epoch", func(t *testing.T, w *world, _, reader *party) {
			w.removeMember(t, "service:monitor", w.addParty(t, "tmp", "service:monitor"))
		}},
		{"by recipient key", func(t *testing.T, w *world, _, reader *party) {
			k := hpkeKey(t, "reader/hpke/2")
			reader.keys.AddHPKEKey(2, k)
			w.dir.SetRecipientKey(RecipientKey{ID: reader.id, Version: 2, Public: k.PublicKey()})
		}},
		{"by signing key", func(t *testing.T, w *world, sender, _ *party) {
			k := ed25519.NewKeyFromSeed(seed("sender/sign/2"))
			sender.keys.SetSigningKey(2, k)
			w.dir.SetSigningKey(sender.id, SigningKey{Version: 2, Public: k.Public().(ed25519.PublicKey)})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			sender := w.addParty(t, "sender")
			reader := w.addParty(t, "reader", "service:monitor")
			seal := func() *Sealed {
				s, err := sender.codec.Seal(context.Background(), Message{Kind: KindEvent,
					Subject: "nodex.v1.events.x.y",
					To:      []Target{ToRole("service:monitor"), ToIdentity(reader.id)},
					Body:    []byte("{}"), ContentType: ContentTypeJSON})
				if err != nil {
					t.Fatalf("sealing: %v", err)
				}
				return s
			}
			first, second := seal(), seal()
			if first.Header.KID != second.Header.KID {
				t.Fatal("epoch changed without a reason")
			}

			tt.change(t, w, sender, reader)
			if third := seal(); third.Header.KID == first.Header.KID {
				t.Error("epoch did not end")
			}
		})
	}
}

func TestSealEndsEpochByCount(t *testing.T) {
	w := newWorld(t)
	sender := w.addParty(t, "sender")
	w.addParty(t, "reader", "service:monitor")
	sender.codec = w.codec(t, sender.keys, func(c *Config) { c.MaxEpochMessages = 3 })
	kids := map[[32]byte]int{}
	for range 7 {
		s, err := sender.codec.Seal(context.Background(), Message{Kind: KindEvent,
			Subject: "nodex.v1.events.x.y", To: []Target{ToRole("service:monitor")}})
		if err != nil {
			t.Fatalf("sealing: %v", err)
		}
		kids[s.Header.KID]++
	}
	if len(kids) != 3 {
		t.Errorf("7 messages at 3 per epoch used %d epochs, want 3", len(kids))
	}
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }
