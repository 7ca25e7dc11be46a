package bus

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/nodexsec/nodex/libs/envelope"
	"github.com/nodexsec/nodex/libs/envelope/envtest"
	"github.com/nodexsec/nodex/libs/testkit"
)

// hostileServer accepts one NATS client on loopback, sends nonce in its
// INFO and returns the signature the client's CONNECT carries.
func hostileServer(t *testing.T, nonce string) (url string, sig <-chan []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	out := make(chan []byte, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		info, _ := json.Marshal(map[string]any{"server_id": "hostile", "version": "2.15.3",
			"proto": 1, "headers": true, "max_payload": 1 << 20, "auth_required": true,
			"nonce": nonce})
		fmt.Fprintf(conn, "INFO %s\r\n", info)
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			return
		}
		var connect struct {
			Sig string `json:"sig"`
		}
		_ = json.Unmarshal([]byte(strings.TrimPrefix(line, "CONNECT ")), &connect)
		raw, _ := base64.RawURLEncoding.DecodeString(connect.Sig)
		out <- raw
		fmt.Fprint(conn, "-ERR 'Authorization Violation'\r\n")
	}()

	return "nats://" + ln.Addr().String(), out
}

// TestAttackServerNonceIsSigningInput plays a NATS server that sends an
// envelope's signing input as its connection nonce. The client signs it
// with its NATS key, which is not the envelope key, so the signature
// proves nothing about any envelope.
func TestAttackServerNonceIsSigningInput(t *testing.T) {
	w := envtest.NewWorld(nil)
	agent := w.AddParty(t, "agent-1", "agent")
	w.AddParty(t, "codesec-1", "service", "service:codesec")
	codec := agent.Codec(t, nil)
	req, err := codec.Seal(context.Background(), envelope.Message{Kind: envelope.KindRequest,
		Subject: "nodex.v1.codesec.submit", To: []envelope.Target{envelope.ToRole("service:codesec")},
		ContentType: envelope.ContentTypeJSON, ReplySubject: "_INBOX.agent-1.x", Body: []byte("{}")})
	if err != nil {
		t.Fatal(err)
	}
	n := int(binary.BigEndian.Uint16(req.Frame))
	hdr, ct := req.Frame[2:2+n], req.Frame[2+n+ed25519.SignatureSize:]
	input := signingInputForTest("nodex.v1.codesec.submit", hdr, ct)

	natsKey, _ := nkeys.CreateUser()
	natsPub, _ := natsKey.PublicKey()
	url, sigs := hostileServer(t, string(input))
	_, _ = nats.Connect(url, nats.Nkey(natsPub, natsKey.Sign), nats.MaxReconnects(0),
		nats.Timeout(2*time.Second))
	var sig []byte
	select {
	case sig = <-sigs:
	case <-time.After(5 * time.Second):
		t.Fatal("client sent no CONNECT signature")
	}
	// JSON carries the nonce as a string: nats.go signs its UTF-8 bytes.
	var signed string
	raw, _ := json.Marshal(string(input))
	_ = json.Unmarshal(raw, &signed)

	if ed25519.Verify(codec.SigningPublicKey(), []byte(signed), sig) {
		t.Fatal("the connection signature verifies under the envelope key")
	}
	forged := append(append(append([]byte{}, req.Frame[:2+n]...), sig...), ct...)
	receiver := w.AddParty(t, "codesec-2", "service", "service:codesec")
	_, err = receiver.Codec(t, nil).Open(context.Background(), envelope.Delivery{
		Subject: "nodex.v1.codesec.submit", Reply: "_INBOX.agent-1.x"}, forged)
	if !errors.Is(err, envelope.ErrBadSignature) {
		t.Errorf("envelope with the connection signature: got %v, want ErrBadSignature", err)
	}
}

func TestNewRejectsSharedKey(t *testing.T) {
	w := envtest.NewWorld(nil)
	p := w.AddParty(t, "agent-1", "agent")
	// A NATS user key made from the envelope key's own seed.
	kp, err := nkeys.FromRawSeed(nkeys.PrefixByteUser, envtest.Seed("agent-1/sign/1"))
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT,
		NoLog: true, NoSigs: true, Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready after 10s")
	}
	t.Cleanup(srv.Shutdown)
	nc := testkit.Connect(t, srv, nats.Nkey(pub, kp.Sign))

	_, err = New(Config{Conn: nc, Codec: p.Codec(t, nil)})
	if !errors.Is(err, ErrSharedKey) {
		t.Errorf("got %v, want ErrSharedKey", err)
	}
}

// signingInputForTest mirrors the envelope's signing input, which the
// package does not export: "nodex/v1/envelope\x00" || subject || header ||
// SHA-256(ciphertext).
func signingInputForTest(subject string, hdr, ct []byte) []byte {
	sum := sha256Sum(ct)
	in := []byte("nodex/v1/envelope\x00" + subject)
	in = append(in, hdr...)

	return append(in, sum[:]...)
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }
