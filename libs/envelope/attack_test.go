package envelope

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"crypto/hkdf"
)

// assemble builds a frame from raw parts and signs it with signer's key.
func assemble(t *testing.T, signer *party, subject string, hdr, ct []byte) []byte {
	t.Helper()
	_, priv := signer.keys.SigningKey()
	frame := binary.BigEndian.AppendUint16(nil, uint16(len(hdr)))
	frame = append(frame, hdr...)
	frame = append(frame, ed25519.Sign(priv, signingInput(subject, hdr, ct))...)

	return append(frame, ct...)
}

func TestAttackResignedByOtherIdentity(t *testing.T) {
	w, alice, svc, req := twoParties(t)
	eve := w.addParty(t, "eve", "agent")
	h := *req.Header
	h.Sender = eve.id
	hdr, err := h.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _, ct, _ := frameParts(req.Frame)
	frame := assemble(t, eve, subj, hdr, ct)
	d := Delivery{Subject: subj, Reply: h.ReplySubject}

	_, err = svc.codec.Open(context.Background(), d, frame)
	if !errors.Is(err, ErrWrapMissing) {
		t.Errorf("without a wrap under eve: got %v, want ErrWrapMissing", err)
	}

	// Eve may write wraps under her own name: she copies Alice's record.
	r := req.Header.Recipients[0]
	wrap, err := w.wraps.Get(context.Background(), WrapKey{alice.id, req.Header.KID, r})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.wraps.Create(context.Background(), WrapKey{eve.id, h.KID, r}, wrap); err != nil {
		t.Fatal(err)
	}
	svc.restart(t)
	_, err = svc.codec.Open(context.Background(), d, frame)
	if !errors.Is(err, ErrWrapInvalid) {
		t.Errorf("with Alice's wrap copied: got %v, want ErrWrapInvalid", err)
	}
}

func TestAttackSwappedWrap(t *testing.T) {
	w, alice, svc, first := twoParties(t)
	// A second replica of Alice draws its own content key for the same
	// recipient, so its wrap is sealed to the same role key.
	alice.restart(t)
	second := alice.request(t, subj, "service:codesec", []byte(`{}`))
	if first.Header.KID == second.Header.KID {
		t.Fatal("second replica reused the first one's content key")
	}
	r := first.Header.Recipients[0]
	other, err := w.wraps.Get(context.Background(), WrapKey{alice.id, second.Header.KID, r})
	if err != nil {
		t.Fatal(err)
	}
	w.wraps.Replace(WrapKey{alice.id, first.Header.KID, r}, other)

	_, err = svc.codec.Open(context.Background(), reqDelivery(first, subj), first.Frame)
	if !errors.Is(err, ErrWrapInvalid) {
		t.Errorf("got %v, want ErrWrapInvalid", err)
	}
}

// gf is an element of GF(2^128) in GCM's bit order: bit 0 is the most
// significant bit of byte 0.
type gf [2]uint64

func gfFromBytes(b []byte) gf {
	return gf{binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])}
}

func (x gf) bytes() []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, x[0]), x[1])
}

func (x gf) add(y gf) gf { return gf{x[0] ^ y[0], x[1] ^ y[1]} }

// mul is Algorithm 1 of NIST SP 800-38D.
func (x gf) mul(y gf) gf {
	var z gf
	v := y
	for i := range 128 {
		bit := x[i/64] >> (63 - i%64) & 1
		if bit == 1 {
			z = z.add(v)
		}
		lsb := v[1] & 1
		v[1] = v[1]>>1 | v[0]<<63
		v[0] >>= 1
		if lsb == 1 {
			v[0] ^= 0xe1 << 56
		}
	}

	return z
}

// inv returns x^(2^128-2), the inverse of a non-zero x.
func (x gf) inv() gf {
	r := gf{1 << 63, 0}
	for i := range 128 {
		r = r.mul(r)
		if i < 127 {
			r = r.mul(x)
		}
	}

	return r
}

// ghash returns GHASH_h(ad, ct) per SP 800-38D.
func ghash(h gf, ad, ct []byte) gf {
	var y gf
	absorb := func(b []byte) {
		for len(b) > 0 {
			var blk [16]byte
			n := copy(blk[:], b)
			b = b[n:]
			y = y.add(gfFromBytes(blk[:])).mul(h)
		}
	}
	absorb(ad)
	absorb(ct)
	var lens [16]byte
	binary.BigEndian.PutUint64(lens[:], uint64(len(ad))*8)
	binary.BigEndian.PutUint64(lens[8:], uint64(len(ct))*8)

	return y.add(gfFromBytes(lens[:])).mul(h)
}

// gcmParts returns H = AES_k(0) and E = AES_k(nonce || 1) for a message key.
func gcmParts(t *testing.T, k *ContentKey, id [16]byte) (h, e gf, aead cipher.AEAD, nonce []byte) {
	t.Helper()
	okm, err := hkdf.Key(sha256.New, k[:], id[:], labelMessage, 44)
	if err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(okm[:32])
	if err != nil {
		t.Fatal(err)
	}
	var zero, j0, out [16]byte
	block.Encrypt(out[:], zero[:])
	h = gfFromBytes(out[:])
	copy(j0[:], okm[32:])
	j0[15] = 1
	block.Encrypt(out[:], j0[:])
	aead, _ = cipher.NewGCM(block)

	return h, gfFromBytes(out[:]), aead, okm[32:]
}

// TestAttackTwoKeyCiphertext builds one AES-GCM ciphertext that is valid
// under two content keys (GHASH is linear, so one free block solves for a
// common tag) and wraps a different key to each of two readers under one
// kid. The key commitment makes the second reader reject it.
func TestAttackTwoKeyCiphertext(t *testing.T) {
	w := newWorld(t)
	mallory := w.addParty(t, "mallory")
	a := w.addParty(t, "reader-a")
	b := w.addParty(t, "reader-b")
	k1, k2 := ContentKey{1}, ContentKey{2}
	kid := k1.KID()
	h := &Header{Version: Version, Kind: KindEvent, ID: [16]byte{7}, Timestamp: w.clock().UnixMilli(),
		Sender: mallory.id, SenderKeyVersion: 1, KID: kid, ContentType: ContentTypeJSON,
		Recipients: []Recipient{{RecipientIdentity, a.id, 1}, {RecipientIdentity, b.id, 1}}}
	hdr, err := h.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		p   *party
		key ContentKey
	}{{a, k1}, {b, k2}} {
		r := Recipient{RecipientIdentity, x.p.id, 1}
		rk, _ := w.dir.RecipientKey(context.Background(), x.p.id)
		wrap, err := wrapKey(rk.Public, &x.key, wrapInfo(kid, mallory.id, 1, r))
		if err != nil {
			t.Fatal(err)
		}
		if err := w.wraps.Create(context.Background(), WrapKey{mallory.id, kid, r}, wrap); err != nil {
			t.Fatal(err)
		}
	}

	// Ciphertext = free block X || fixed block; solve for X so that both
	// keys give the same tag. X sits 3 blocks from the end of GHASH's input.
	h1, e1, aead1, n1 := gcmParts(t, &k1, h.ID)
	h2, e2, aead2, n2 := gcmParts(t, &k2, h.ID)
	ct := make([]byte, 32)
	copy(ct[16:], "two keys, 1 text")
	c1, c2 := ghash(h1, hdr, ct), ghash(h2, hdr, ct)
	h1e, h2e := h1.mul(h1).mul(h1), h2.mul(h2).mul(h2)
	x := c1.add(c2).add(e1).add(e2).mul(h1e.add(h2e).inv())
	copy(ct, x.bytes())
	tag := c1.add(x.mul(h1e)).add(e1)
	ct = append(ct, tag.bytes()...)
	p1, err1 := aead1.Open(nil, n1, ct, hdr)
	p2, err2 := aead2.Open(nil, n2, ct, hdr)
	if err1 != nil || err2 != nil || bytes.Equal(p1, p2) {
		t.Fatalf("crafted ciphertext does not open to two plaintexts: %v, %v", err1, err2)
	}
	subject := "nodex.v1.events.mallory.x"
	frame := assemble(t, mallory, subject, hdr, ct)
	d := Delivery{Subject: subject, Stream: "S", Sequence: 1, StreamTime: w.clock(),
		MsgID: "07000000000000000000000000000000"}

	got, err := a.codec.Open(context.Background(), d, frame)
	if err != nil || !bytes.Equal(got.Body, p1) {
		t.Fatalf("reader A: got %v, want the plaintext under K1", err)
	}
	if _, err := b.codec.Open(context.Background(), d, frame); !errors.Is(err, ErrKeyCommitment) {
		t.Errorf("reader B: got %v, want ErrKeyCommitment", err)
	}
}

func TestReplayNearFutureEdge(t *testing.T) {
	w, alice, svc, req := twoParties(t)
	h := *req.Header
	h.Timestamp += DefaultWindow.Milliseconds() - 1000 // 1s inside the future edge
	msg := forge(t, alice, subj, &h, req.key, []byte(`{}`))
	if _, err := svc.codec.Open(context.Background(), reqDelivery(msg, subj), msg.Frame); err != nil {
		t.Fatalf("first delivery: %v", err)
	}

	// One window after arrival the timestamp is still fresh; the cache
	// entry lives until timestamp + W, so the copy is still caught.
	w.advance(DefaultWindow + 500*time.Millisecond)
	_, err := svc.codec.Open(context.Background(), reqDelivery(msg, subj), msg.Frame)
	if !errors.Is(err, ErrReplay) {
		t.Errorf("replay one window later: got %v, want ErrReplay", err)
	}

	w.advance(DefaultWindow)
	_, err = svc.codec.Open(context.Background(), reqDelivery(msg, subj), msg.Frame)
	if !errors.Is(err, ErrNotFresh) {
		t.Errorf("replay after the entry expired: got %v, want ErrNotFresh", err)
	}
}

func TestReplayForgedCopyFirst(t *testing.T) {
	_, _, svc, req := twoParties(t)
	forged := clone(req.Frame)
	forged[len(forged)-1] ^= 1
	d := reqDelivery(req, subj)

	if _, err := svc.codec.Open(context.Background(), d, forged); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("forged copy: got %v, want ErrBadSignature", err)
	}
	if _, err := svc.codec.Open(context.Background(), d, req.Frame); err != nil {
		t.Errorf("real message after a forged copy of its id: %v", err)
	}
}

func TestReplaySameIDOtherSender(t *testing.T) {
	w, alice, svc, req := twoParties(t)
	bob := w.addParty(t, "agent-2", "agent")
	bobReq := bob.request(t, subj, "service:codesec", []byte(`{}`))
	h := *bobReq.Header
	h.ID = req.Header.ID
	msg := forge(t, bob, subj, &h, bobReq.key, []byte(`{}`))
	_ = alice

	if _, err := svc.codec.Open(context.Background(), reqDelivery(req, subj), req.Frame); err != nil {
		t.Fatalf("alice's message: %v", err)
	}
	if _, err := svc.codec.Open(context.Background(), reqDelivery(msg, subj), msg.Frame); err != nil {
		t.Errorf("bob's message with alice's id: %v", err)
	}
}

func TestReplayAfterReceiverRestart(t *testing.T) {
	w, _, svc, req := twoParties(t)
	if _, err := svc.codec.Open(context.Background(), reqDelivery(req, subj), req.Frame); err != nil {
		t.Fatalf("first delivery: %v", err)
	}
	w.advance(time.Millisecond)
	svc.restart(t) // the replay cache is gone

	_, err := svc.codec.Open(context.Background(), reqDelivery(req, subj), req.Frame)
	if !errors.Is(err, ErrNotFresh) {
		t.Errorf("replay after restart: got %v, want ErrNotFresh", err)
	}
}

// TestNoncesNeverRepeat seals 100,000 messages from each of two replicas of
// one sender and from a restarted sender, to one recipient set, and checks
// that no AES-GCM (key, nonce) pair repeats.
func TestNoncesNeverRepeat(t *testing.T) {
	const perSender = 100_000
	w := newWorld(t)
	sender := w.addParty(t, "keyvault-1")
	reader := w.addParty(t, "monitor-1", "service:monitor")
	replica2 := w.codec(t, sender.keys, nil)
	restarted := w.codec(t, sender.keys, nil)
	type sent struct {
		kid [32]byte
		id  [16]byte
	}
	codecs := []*Codec{sender.codec, replica2, restarted}
	out := make([][]sent, len(codecs))
	lasts := make([]*Sealed, len(codecs))
	errs := make(chan error, len(codecs))
	for i, c := range codecs {
		go func() {
			out[i] = make([]sent, 0, perSender)
			for range perSender {
				s, err := c.Seal(context.Background(), Message{Kind: KindEvent,
					Subject: "nodex.v1.events.keyvault.x", To: []Target{ToRole("service:monitor")}})
				if err != nil {
					errs <- err
					return
				}
				out[i] = append(out[i], sent{s.Header.KID, s.Header.ID})
				lasts[i] = s
			}
			errs <- nil
		}()
	}
	for range codecs {
		if err := <-errs; err != nil {
			t.Fatalf("sealing: %v", err)
		}
	}

	keys := map[[32]byte]ContentKey{}
	for _, s := range lasts {
		k, err := reader.codec.contentKey(context.Background(), s.Header, s.Header.Recipients[0], nil)
		if err != nil {
			t.Fatalf("unwrapping epoch key: %v", err)
		}
		keys[s.Header.KID] = k
	}
	seen := make(map[[44]byte]struct{}, 3*perSender)
	for _, msgs := range out {
		for _, m := range msgs {
			k, ok := keys[m.kid]
			if !ok {
				t.Fatalf("message %x uses a content key outside its sender's epoch", m.id)
			}
			okm, _ := hkdf.Key(sha256.New, k[:], m.id[:], labelMessage, 44)
			if _, dup := seen[[44]byte(okm)]; dup {
				t.Fatalf("(key, nonce) repeated at message id %x", m.id)
			}
			seen[[44]byte(okm)] = struct{}{}
		}
	}
	if len(keys) != 3 {
		t.Errorf("3 sender processes used %d content keys, want 3", len(keys))
	}
	last := lasts[2]

	// A new reader replica opens the last message without any before it.
	fresh := w.codec(t, reader.keys, nil)
	d := Delivery{Subject: "nodex.v1.events.keyvault.x", Stream: "S", Sequence: 3 * perSender,
		StreamTime: w.clock(), MsgID: last.MsgID()}
	if _, err := fresh.Open(context.Background(), d, last.Frame); err != nil {
		t.Errorf("new replica opening message N alone: %v", err)
	}
}

func TestRemovedMemberCannotOpenNewEpoch(t *testing.T) {
	w := newWorld(t)
	sender := w.addParty(t, "incident-1")
	stays := w.addParty(t, "monitor-1", "service:monitor")
	leaves := w.addParty(t, "monitor-2", "service:monitor")
	seal := func() (*Sealed, Delivery) {
		s, err := sender.codec.Seal(context.Background(), Message{Kind: KindEvent,
			Subject: "nodex.v1.events.incident.x", To: []Target{ToRole("service:monitor")},
			ContentType: ContentTypeJSON, Body: []byte(`{}`)})
		if err != nil {
			t.Fatalf("sealing: %v", err)
		}
		return s, Delivery{Subject: "nodex.v1.events.incident.x", Stream: "S", Sequence: 1,
			StreamTime: w.clock(), MsgID: s.MsgID()}
	}
	before, dBefore := seal()

	w.removeMember(t, "service:monitor", leaves)
	after, dAfter := seal()
	if after.Header.KID == before.Header.KID {
		t.Fatal("sender kept the old epoch after the role changed")
	}
	if _, err := leaves.codec.Open(context.Background(), dAfter, after.Frame); !errors.Is(err, ErrNotAddressed) {
		t.Errorf("removed member, new epoch: got %v, want ErrNotAddressed", err)
	}
	if _, err := stays.codec.Open(context.Background(), dAfter, after.Frame); err != nil {
		t.Errorf("remaining member, new epoch: %v", err)
	}
	// Revocation is not retroactive: what the member could read, it still can.
	if _, err := leaves.codec.Open(context.Background(), dBefore, before.Frame); err != nil {
		t.Errorf("removed member, old epoch: %v", err)
	}
}
