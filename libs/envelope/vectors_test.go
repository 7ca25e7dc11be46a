package envelope

import (
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"crypto/hkdf"
)

var update = flag.Bool("update", false, "rewrite schemas/testvectors and the FuzzOpen seed corpus")

const vectorFile = "../../schemas/testvectors/envelope_v1.json"

// vectorSet is the JSON layout of schemas/testvectors/envelope_v1.json.
// Byte strings are lowercase hex.
type vectorSet struct {
	Comment    string          `json:"comment"`
	NowMs      int64           `json:"now_ms"`
	WindowMs   int64           `json:"window_ms"`
	Identities []vectorParty   `json:"identities"`
	Roles      []vectorRole    `json:"roles"`
	Wraps      []vectorWrap    `json:"wraps"`
	Keys       []vectorKey     `json:"content_keys"`
	Messages   []vectorMessage `json:"messages"`
}

type vectorParty struct {
	ID          string   `json:"id"`
	Roles       []string `json:"roles"`
	SigningSeed string   `json:"ed25519_seed"`
	SigningPub  string   `json:"ed25519_public"`
	HPKESeed    string   `json:"hpke_ikm"` // DeriveKeyPair input, MLKEM768-X25519
	HPKEPub     string   `json:"hpke_public"`
}

type vectorRole struct {
	Role     string `json:"role"`
	Epoch    uint32 `json:"epoch"`
	HPKESeed string `json:"hpke_ikm"`
	HPKEPub  string `json:"hpke_public"`
}

type vectorWrap struct {
	Key  string `json:"kv_key"`
	Info string `json:"hpke_info"`
	Wrap string `json:"wrap"`
}

type vectorKey struct {
	Key string `json:"k"`
	KID string `json:"kid"`
}

type vectorMessage struct {
	Name         string `json:"name"`
	Receiver     string `json:"receiver"`
	Subject      string `json:"subject"`
	Reply        string `json:"reply,omitempty"`
	Stream       string `json:"stream,omitempty"`
	Sequence     uint64 `json:"sequence,omitempty"`
	StreamTimeMs int64  `json:"stream_time_ms,omitempty"`
	MsgID        string `json:"msg_id,omitempty"`
	ReplyTo      string `json:"reply_to,omitempty"` // name of the request this reply is bound to
	Frame        string `json:"frame"`
	SigningInput string `json:"signing_input,omitempty"`
	Signature    string `json:"signature,omitempty"`
	MessageKey   string `json:"message_key_nonce,omitempty"` // HKDF output: 32-byte key || 12-byte nonce
	Plaintext    string `json:"plaintext,omitempty"`
	Expect       string `json:"expect"` // "accept" or the sentinel's name
}

var vectorNow = time.UnixMilli(1_800_000_000_000)

// TestVectors opens every message of the vector file and checks the result
// byte for byte: accepted plaintexts, derived keys and deterministic
// signatures, and the exact rejection reason of each tampered variant.
func TestVectors(t *testing.T) {
	if *update {
		writeVectors(t)
	}
	raw, err := os.ReadFile(vectorFile)
	if err != nil {
		t.Fatalf("reading vectors: %v", err)
	}
	var vs vectorSet
	if err := json.Unmarshal(raw, &vs); err != nil {
		t.Fatalf("parsing vectors: %v", err)
	}
	keys, dir, wraps := vectorWorld(t, &vs)
	requests := map[string]*Sealed{}
	for _, m := range vs.Messages {
		t.Run(m.Name, func(t *testing.T) {
			checkVector(t, &vs, m, keys, dir, wraps, requests)
		})
	}
}

func checkVector(t *testing.T, vs *vectorSet, m vectorMessage, keys map[string]Keys,
	dir *StaticDirectory, wraps *MemoryWraps, requests map[string]*Sealed) {
	frame := unhex(t, m.Frame)
	c, err := New(Config{Keys: keys[m.Receiver], Directory: dir, Wraps: wraps,
		Now: func() time.Time { return time.UnixMilli(vs.NowMs) }, Window: time.Duration(vs.WindowMs) * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c.start = 0 // vectors were sealed before any receiver start
	d := Delivery{Subject: m.Subject, Reply: m.Reply, Stream: m.Stream, Sequence: m.Sequence,
		MsgID: m.MsgID}
	if m.StreamTimeMs != 0 {
		d.StreamTime = time.UnixMilli(m.StreamTimeMs)
	}
	var o *Opened
	if m.ReplyTo != "" {
		o, err = c.OpenReply(context.Background(), d, frame, requests[m.ReplyTo], "service:codesec")
	} else {
		o, err = c.Open(context.Background(), d, frame)
	}
	if m.Expect != "accept" {
		if err == nil || reasonName(reasonOf(err)) != m.Expect {
			t.Fatalf("got %v, want %s", err, m.Expect)
		}
		return
	}
	if err != nil {
		t.Fatalf("opening: %v", err)
	}
	if got := hex.EncodeToString(o.Body); got != m.Plaintext {
		t.Errorf("plaintext = %s, want %s", got, m.Plaintext)
	}
	hdr, sig, ct, _ := frameParts(frame)
	if got := hex.EncodeToString(signingInput(m.Subject, hdr, ct)); got != m.SigningInput {
		t.Errorf("signing input = %s, want %s", got, m.SigningInput)
	}
	if hex.EncodeToString(sig) != m.Signature {
		t.Errorf("signature = %x, want %s", sig, m.Signature)
	}
	okm, _ := hkdf.Key(sha256.New, o.key[:], o.Header.ID[:], labelMessage, 44)
	if hex.EncodeToString(okm) != m.MessageKey {
		t.Errorf("message key and nonce = %x, want %s", okm, m.MessageKey)
	}
	reencoded, _ := o.Header.AppendBinary(nil)
	if hex.EncodeToString(reencoded) != hex.EncodeToString(hdr) {
		t.Error("header does not re-encode to the bytes received")
	}
	if o.Header.Kind == KindRequest {
		requests[m.Name] = &Sealed{Header: o.Header, Digest: o.Digest, key: o.key}
	}
}

// reasonName returns "ErrX" for a sentinel of [Reasons].
func reasonName(err error) string {
	for name, r := range reasonNames() {
		if errors.Is(err, r) {
			return name
		}
	}

	return fmt.Sprint(err)
}

func reasonNames() map[string]error {
	return map[string]error{
		"ErrTooLarge": ErrTooLarge, "ErrTooManyRecipients": ErrTooManyRecipients,
		"ErrMalformed": ErrMalformed, "ErrUnknownVersion": ErrUnknownVersion,
		"ErrStale": ErrStale, "ErrUnknownSender": ErrUnknownSender,
		"ErrSenderSuspended": ErrSenderSuspended, "ErrSenderRevoked": ErrSenderRevoked,
		"ErrRetiredKey": ErrRetiredKey, "ErrCompromisedKey": ErrCompromisedKey,
		"ErrBadSignature": ErrBadSignature, "ErrSubjectMismatch": ErrSubjectMismatch,
		"ErrNotAddressed": ErrNotAddressed, "ErrNotFresh": ErrNotFresh, "ErrReplay": ErrReplay,
		"ErrWrapMissing": ErrWrapMissing, "ErrWrapInvalid": ErrWrapInvalid,
		"ErrKeyCommitment": ErrKeyCommitment, "ErrDecrypt": ErrDecrypt, "ErrSchema": ErrSchema,
	}
}

// vectorWorld rebuilds the registry, keys and wraps the vectors describe.
func vectorWorld(t testing.TB, vs *vectorSet) (map[string]Keys, *StaticDirectory, *MemoryWraps) {
	t.Helper()
	dir := NewStaticDirectory()
	keys := map[string]Keys{}
	roleKeys := map[string]hpke.PrivateKey{}
	for _, r := range vs.Roles {
		k := deriveHPKE(t, unhex(t, r.HPKESeed))
		roleKeys[r.Role] = k
		dir.SetRoleEpoch(RoleEpoch{Role: r.Role, Epoch: r.Epoch, Public: k.PublicKey()})
	}
	for _, p := range vs.Identities {
		signing := ed25519.NewKeyFromSeed(unhex(t, p.SigningSeed))
		sk := NewStaticKeys(p.ID, 1, signing)
		hk := deriveHPKE(t, unhex(t, p.HPKESeed))
		sk.AddHPKEKey(1, hk)
		for _, r := range p.Roles {
			sk.AddRoleKey(r, 1, roleKeys[r])
		}
		dir.SetParty(Party{ID: p.ID, Kind: "service", Status: StatusActive, Roles: p.Roles})
		dir.SetSigningKey(p.ID, SigningKey{Version: 1, Public: signing.Public().(ed25519.PublicKey)})
		dir.SetRecipientKey(RecipientKey{ID: p.ID, Version: 1, Public: hk.PublicKey()})
		keys[p.ID] = sk
	}
	wraps := NewMemoryWraps()
	for _, w := range vs.Wraps {
		wk, err := ParseWrapKey(w.Key)
		if err != nil {
			t.Fatal(err)
		}
		wraps.Replace(wk, unhex(t, w.Wrap))
	}

	return keys, dir, wraps
}

func deriveHPKE(t testing.TB, ikm []byte) hpke.PrivateKey {
	t.Helper()
	k, err := hpke.MLKEM768X25519().DeriveKeyPair(ikm)
	if err != nil {
		t.Fatal(err)
	}

	return k
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}

	return b
}
