package envelope

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"crypto/hkdf"
)

// writeVectors regenerates the vector file and the FuzzOpen seed corpus.
// HPKE encapsulation is randomized, so the wraps change on every run; the
// frames, signatures and derived keys do not.
func writeVectors(t *testing.T) {
	t.Helper()
	g := &vectorGen{t: t, vs: vectorSet{
		Comment: "NodeX envelope v1 test vectors; see schemas/envelope.md. Byte strings are hex.",
		NowMs:   vectorNow.UnixMilli(), WindowMs: DefaultWindow.Milliseconds(),
	}}
	g.party("agent-1", "agent")
	g.party("codesec-1", "service:codesec")
	g.party("monitor-1", "service:monitor")
	g.role("service:codesec")
	g.role("service:monitor")
	g.role("agent")

	ts := vectorNow.UnixMilli() - 2000
	reqKey, evKey, jobKey := ContentKey{0x11}, ContentKey{0x22}, ContentKey{0x33}
	req := g.seal("request", "agent-1", "nodex.v1.codesec.submit", &Header{Kind: KindRequest,
		ID: [16]byte{0xa1}, Timestamp: ts, ReplySubject: "_INBOX.agent-1.r1",
		Recipients: []Recipient{{RecipientRole, "service:codesec", 1}}}, reqKey,
		`{"language":"python"}`)
	g.accept(req, vectorMessage{Receiver: "codesec-1", Reply: "_INBOX.agent-1.r1"})

	rk := reqKey.replyKey(req.Header.ID)
	reply := g.seal("reply", "codesec-1", "_INBOX.agent-1.r1", &Header{Kind: KindReply,
		ID: [16]byte{0xa2}, Timestamp: ts + 5, RequestDigest: req.Digest,
		Recipients: []Recipient{{RecipientIdentity, "agent-1", 0}}}, rk, `{"bundle_id":"b1"}`)
	g.accept(reply, vectorMessage{Receiver: "agent-1", ReplyTo: "request"})

	ev := g.seal("event", "codesec-1", "nodex.v1.events.codesec.submitted", &Header{
		Kind: KindEvent, ID: [16]byte{0xa3}, Timestamp: ts,
		Recipients: []Recipient{{RecipientRole, "service:monitor", 1}}}, evKey, `{"ok":true}`)
	evDelivery := vectorMessage{Receiver: "monitor-1", Stream: "NODEX_EVENTS", Sequence: 5,
		StreamTimeMs: ts + 3, MsgID: ev.MsgID()}
	g.accept(ev, evDelivery)

	job := g.seal("job", "codesec-1", "nodex.v1.sandbox.jobs.run", &Header{Kind: KindJob,
		ID: [16]byte{0xa4}, Timestamp: ts, Expires: vectorNow.UnixMilli() + 60_000,
		Recipients: []Recipient{{RecipientIdentity, "monitor-1", 1}}}, jobKey, `{"bundle":"b1"}`)
	g.accept(job, vectorMessage{Receiver: "monitor-1", Stream: "SANDBOX_JOBS", Sequence: 1,
		StreamTimeMs: ts, MsgID: job.MsgID()})

	g.tamperedRequests(req, reqKey)
	g.tamperedStream(ev, evDelivery, evKey, ts)
	g.write()
}

type vectorGen struct {
	t       *testing.T
	vs      vectorSet
	signers map[string]ed25519.PrivateKey
	sealed  map[string]*Sealed
}

func (g *vectorGen) party(id string, roles ...string) {
	signing := ed25519.NewKeyFromSeed(seed(id + "/sign/1"))
	hk := deriveHPKE(g.t, seed(id+"/hpke/1"))
	g.vs.Identities = append(g.vs.Identities, vectorParty{ID: id, Roles: roles,
		SigningSeed: hex.EncodeToString(seed(id + "/sign/1")),
		SigningPub:  hex.EncodeToString(signing.Public().(ed25519.PublicKey)),
		HPKESeed:    hex.EncodeToString(seed(id + "/hpke/1")),
		HPKEPub:     hex.EncodeToString(hk.PublicKey().Bytes())})
	if g.signers == nil {
		g.signers, g.sealed = map[string]ed25519.PrivateKey{}, map[string]*Sealed{}
	}
	g.signers[id] = signing
}

func (g *vectorGen) role(name string) {
	s := seed(name + "/epoch/1")
	g.vs.Roles = append(g.vs.Roles, vectorRole{Role: name, Epoch: 1,
		HPKESeed: hex.EncodeToString(s),
		HPKEPub:  hex.EncodeToString(deriveHPKE(g.t, s).PublicKey().Bytes())})
}

// seal completes h, stores the wraps of its key (except for replies) and
// seals body.
func (g *vectorGen) seal(name, sender, subject string, h *Header, key ContentKey,
	body string) *Sealed {
	h.Version, h.Sender, h.SenderKeyVersion, h.KID = Version, sender, 1, key.KID()
	h.ContentType = ContentTypeJSON
	g.vs.Keys = append(g.vs.Keys, vectorKey{Key: hex.EncodeToString(key[:]),
		KID: hex.EncodeToString(h.KID[:])})
	if h.Kind != KindReply {
		for _, r := range h.Recipients {
			g.wrap(sender, h.KID, r, key)
		}
	}
	s, err := sealFrame(subject, h, &key, g.signers[sender], []byte(body))
	if err != nil {
		g.t.Fatal(err)
	}
	g.sealed[name] = s

	return s
}

func (g *vectorGen) wrap(sender string, kid [32]byte, r Recipient, key ContentKey) {
	var ikm []byte
	if r.Type == RecipientRole {
		ikm = seed(fmt.Sprintf("%s/epoch/%d", r.Name, r.Version))
	} else {
		ikm = seed(r.Name + "/hpke/1")
	}
	info := wrapInfo(kid, sender, 1, r)
	w, err := wrapKey(deriveHPKE(g.t, ikm).PublicKey(), &key, info)
	if err != nil {
		g.t.Fatal(err)
	}
	g.vs.Wraps = append(g.vs.Wraps, vectorWrap{Key: WrapKey{sender, kid, r}.String(),
		Info: hex.EncodeToString(info), Wrap: hex.EncodeToString(w)})
}

// accept records s as a message the receiver must open, with every
// intermediate value.
func (g *vectorGen) accept(s *Sealed, m vectorMessage) {
	var name string
	for n, v := range g.sealed {
		if v == s {
			name = n
		}
	}
	hdr, sig, ct, _ := frameParts(s.Frame)
	okm, _ := hkdf.Key(sha256.New, s.key[:], s.Header.ID[:], labelMessage, 44)
	aead, nonce := messageAEAD(&s.key, s.Header.ID)
	plain, err := aead.Open(nil, nonce, ct, hdr)
	if err != nil {
		g.t.Fatal(err)
	}
	m.Name, m.Subject, m.Frame, m.Expect = name, g.subjectOf(s), hex.EncodeToString(s.Frame), "accept"
	m.SigningInput = hex.EncodeToString(signingInput(m.Subject, hdr, ct))
	m.Signature = hex.EncodeToString(sig)
	m.MessageKey = hex.EncodeToString(okm)
	m.Plaintext = hex.EncodeToString(plain)
	g.vs.Messages = append(g.vs.Messages, m)
}

// subjectOf finds the subject s was signed for by checking the signature.
func (g *vectorGen) subjectOf(s *Sealed) string {
	hdr, sig, ct, _ := frameParts(s.Frame)
	for _, sub := range []string{"nodex.v1.codesec.submit", "_INBOX.agent-1.r1",
		"nodex.v1.events.codesec.submitted", "nodex.v1.sandbox.jobs.run"} {
		pub := g.signers[s.Header.Sender].Public().(ed25519.PublicKey)
		if ed25519.Verify(pub, signingInput(sub, hdr, ct), sig) {
			return sub
		}
	}
	g.t.Fatal("no subject matches")

	return ""
}

func (g *vectorGen) reject(name string, frame []byte, m vectorMessage, reason string) {
	m.Name, m.Frame, m.Expect = name, hex.EncodeToString(frame), reason
	g.vs.Messages = append(g.vs.Messages, m)
}

func (g *vectorGen) tamperedRequests(req *Sealed, key ContentKey) {
	base := vectorMessage{Receiver: "codesec-1", Subject: "nodex.v1.codesec.submit",
		Reply: "_INBOX.agent-1.r1"}
	flip := func(i int) []byte {
		f := clone(req.Frame)
		f[(i+len(f))%len(f)] ^= 0x01
		return f
	}
	hlen := int(binary.BigEndian.Uint16(req.Frame))
	g.reject("request/flipped-ciphertext", flip(-1), base, "ErrBadSignature")
	g.reject("request/flipped-signature", flip(2+hlen), base, "ErrBadSignature")
	g.reject("request/flipped-timestamp", flip(2+2+16+7), base, "ErrBadSignature")
	g.reject("request/version-2", func() []byte { f := clone(req.Frame); f[2] = 2; return f }(),
		base, "ErrUnknownVersion")
	g.reject("request/truncated", req.Frame[:60], base, "ErrMalformed")
	g.reject("request/header-length", func() []byte {
		f := clone(req.Frame)
		binary.BigEndian.PutUint16(f, uint16(hlen+1))
		return f
	}(), base, "ErrMalformed")
	other := base
	other.Subject = "nodex.v1.codesec.revoke"
	g.reject("request/other-subject", req.Frame, other, "ErrBadSignature")
	redirected := base
	redirected.Reply = "_INBOX.eve.r1"
	g.reject("request/other-reply-subject", req.Frame, redirected, "ErrSubjectMismatch")
	notMine := base
	notMine.Receiver = "monitor-1"
	g.reject("request/not-addressed", req.Frame, notMine, "ErrNotAddressed")
	h := *req.Header
	h.ID = [16]byte{0xb1}
	wrong, err := sealFrame(base.Subject, &h, &ContentKey{0x99}, g.signers["agent-1"],
		[]byte(`{}`))
	if err != nil {
		g.t.Fatal(err)
	}
	g.reject("request/wrong-content-key", wrong.Frame, base, "ErrDecrypt")
	_ = key
}

func (g *vectorGen) tamperedStream(ev *Sealed, d vectorMessage, key ContentKey, ts int64) {
	m := d
	m.Subject = "nodex.v1.events.codesec.submitted"
	wrongID := m
	wrongID.MsgID = "00" + m.MsgID[2:]
	g.reject("event/other-msg-id", ev.Frame, wrongID, "ErrNotFresh")
	late := m
	late.StreamTimeMs = ts + DefaultWindow.Milliseconds() + 1
	g.reject("event/stored-late", ev.Frame, late, "ErrNotFresh")
	h := *ev.Header
	h.Kind, h.ID, h.Expires = KindJob, [16]byte{0xb2}, vectorNow.UnixMilli()-1
	expired, err := sealFrame("nodex.v1.sandbox.jobs.run", &h, &key, g.signers["codesec-1"],
		[]byte(`{}`))
	if err != nil {
		g.t.Fatal(err)
	}
	job := vectorMessage{Receiver: "monitor-1", Subject: "nodex.v1.sandbox.jobs.run",
		Stream: "SANDBOX_JOBS", Sequence: 2, StreamTimeMs: ts, MsgID: expired.MsgID()}
	g.reject("job/expired", expired.Frame, job, "ErrNotFresh")
}

func (g *vectorGen) write() {
	raw, err := json.MarshalIndent(g.vs, "", "  ")
	if err != nil {
		g.t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(vectorFile), 0o755); err != nil {
		g.t.Fatal(err)
	}
	if err := os.WriteFile(vectorFile, append(raw, '\n'), 0o644); err != nil {
		g.t.Fatal(err)
	}
	corpus := filepath.Join("testdata", "fuzz", "FuzzOpen")
	if err := os.MkdirAll(corpus, 0o755); err != nil {
		g.t.Fatal(err)
	}
	for i, m := range g.vs.Messages {
		stream := m.Stream != ""
		content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nbool(%v)\n",
			unhex(g.t, m.Frame), stream)
		p := filepath.Join(corpus, fmt.Sprintf("vector-%02d", i))
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			g.t.Fatal(err)
		}
	}
}
