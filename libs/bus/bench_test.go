package bus

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"

	"github.com/nats-io/nats.go"

	"github.com/nodexsec/nodex/libs/envelope"
	"github.com/nodexsec/nodex/libs/envelope/envtest"
	"github.com/nodexsec/nodex/libs/testkit"
)

type benchBody struct {
	Data string `json:"data"`
}

// BenchmarkSecureBus measures raw and secure figures in one run on the
// embedded server with 1 KiB bodies. It reports publish-to-receive
// throughput over core NATS, the receiver's and the full crypto floor, their
// ratios, request/reply p50 and p99, and envelope bytes per message. The
// p50 delta is divided by the median full floor (full_floor_p50_us). Each
// phase runs once with a fixed size, so b.N is not used.
func BenchmarkSecureBus(b *testing.B) {
	const msgs, rtts = 10_000, 2_000
	srv := testkit.NATSServer(b)
	ctx := context.Background()
	ws, err := NewWrapStore(ctx, testkit.JetStream(b, srv), 0)
	if err != nil {
		b.Fatal(err)
	}
	w := envtest.NewWorld(ws)
	sender := w.AddParty(b, "agent-1", "agent", "agent")
	receiver := w.AddParty(b, "codesec-1", "service", "service:codesec")
	body, _ := json.Marshal(benchBody{Data: strings.Repeat("x", 1024-12)})

	cpu0 := processCPU()
	rawRate := rawPubRecv(b, srv.ClientURL(), body, msgs)
	rawCPU := (processCPU() - cpu0) / msgs
	// The floor is timed right before and after the secure run and
	// averaged, so that load from other processes on the machine affects
	// both sides of the ratio alike: the throughput ratio uses the mean
	// floors and the p50 ratio the median one.
	cpu0 = processCPU()
	recvBefore, fullBefore, p50Before := cryptoFloor(b, sender, body)
	floorCPU := processCPU() - cpu0
	cpu0 = processCPU()
	secRate, frameLen := securePubRecv(b, srv.ClientURL(), sender, receiver, body, msgs)
	secCPU := (processCPU() - cpu0) / msgs
	cpu0 = processCPU()
	recvAfter, fullAfter, p50After := cryptoFloor(b, sender, body)
	floorCPU = (floorCPU + processCPU() - cpu0) / (2 * floorRounds)
	recvFloor, fullFloor := (recvBefore+recvAfter)/2, (fullBefore+fullAfter)/2
	fullFloorP50 := (p50Before + p50After) / 2
	rawP50, rawP99 := rawRoundTrips(b, srv.ClientURL(), body, rtts)
	secP50, secP99 := secureRoundTrips(b, srv, sender, receiver, body, rtts)

	b.ReportMetric(rawRate, "raw_msgs/s")
	b.ReportMetric(secRate, "secure_msgs/s")
	b.ReportMetric(1/recvFloor.Seconds(), "recv_floor_msgs/s")
	b.ReportMetric(float64(recvFloor.Nanoseconds())/1e3, "recv_floor_us")
	b.ReportMetric(float64(fullFloor.Nanoseconds())/1e3, "full_floor_us")
	b.ReportMetric(float64(fullFloorP50.Nanoseconds())/1e3, "full_floor_p50_us")
	b.ReportMetric(secRate*recvFloor.Seconds(), "secure/recv_floor")
	b.ReportMetric(secRate/rawRate, "secure/raw")
	// CPU time of the whole process (sender, embedded server and receiver)
	// per message does not depend on how much CPU other processes take.
	b.ReportMetric(float64(rawCPU.Nanoseconds())/1e3, "raw_cpu_us/msg")
	b.ReportMetric(float64(secCPU.Nanoseconds())/1e3, "secure_cpu_us/msg")
	b.ReportMetric(float64(floorCPU.Nanoseconds())/1e3, "full_floor_cpu_us")
	b.ReportMetric(float64(secCPU-rawCPU)/float64(floorCPU), "cpu_overhead/full_floor_cpu")
	b.ReportMetric(float64(rawP50.Microseconds()), "raw_p50_us")
	b.ReportMetric(float64(rawP99.Microseconds()), "raw_p99_us")
	b.ReportMetric(float64(secP50.Microseconds()), "secure_p50_us")
	b.ReportMetric(float64(secP99.Microseconds()), "secure_p99_us")
	b.ReportMetric(float64((secP50-rawP50).Nanoseconds())/float64(fullFloorP50.Nanoseconds()),
		"p50_delta/full_floor")
	b.ReportMetric(float64(frameLen-len(body)), "envelope_bytes/msg")
}

// rawPubRecv returns msgs/s from first publish to last receive, plain NATS,
// with a JSON decode per message as the secure path has.
func rawPubRecv(b *testing.B, url string, body []byte, n int) float64 {
	pubConn, subConn := connect(b, url), connect(b, url)
	var got atomic.Int64
	done := make(chan struct{})
	_, err := subConn.Subscribe("bench.raw", func(m *nats.Msg) {
		var v benchBody
		_ = json.Unmarshal(m.Data, &v)
		if got.Add(1) == int64(n) {
			close(done)
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	_ = subConn.Flush()
	start := time.Now()
	for range n {
		_ = pubConn.Publish("bench.raw", body)
	}
	<-done

	return float64(n) / time.Since(start).Seconds()
}

// securePubRecv seals each body as a request and opens it on the receiver.
func securePubRecv(b *testing.B, url string, sender, receiver *envtest.Party, body []byte,
	n int) (float64, int) {
	pubConn, subConn := connect(b, url), connect(b, url)
	sc, rc := sender.Codec(b, nil), receiver.Codec(b, nil)
	var got, failed atomic.Int64
	done := make(chan struct{})
	_, err := subConn.Subscribe("nodex.v1.codesec.bench", func(m *nats.Msg) {
		o, err := rc.Open(context.Background(), envelope.Delivery{Subject: m.Subject,
			Reply: m.Reply}, m.Data)
		var v benchBody
		if err != nil || o.Decode(&v) != nil {
			failed.Add(1)
		}
		if got.Add(1) == int64(n) {
			close(done)
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	_ = subConn.Flush()
	msg := envelope.Message{Kind: envelope.KindRequest, Subject: "nodex.v1.codesec.bench",
		To: []envelope.Target{envelope.ToRole("service:codesec")}, ContentType: envelope.ContentTypeJSON,
		ReplySubject: "_INBOX.bench", Body: body}
	// The first seal writes the epoch's wrap; keep it out of the timing.
	first, err := sc.Seal(context.Background(), msg)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for range n {
		s, err := sc.Seal(context.Background(), msg)
		if err != nil {
			b.Fatal(err)
		}
		_ = pubConn.PublishMsg(&nats.Msg{Subject: msg.Subject, Reply: msg.ReplySubject, Data: s.Frame})
	}
	<-done
	rate := float64(n) / time.Since(start).Seconds()
	if f := failed.Load(); f != 0 {
		b.Fatalf("%d of %d secure messages failed to open", f, n)
	}

	return rate, len(first.Frame)
}

// cryptoFloor times the primitives per message: the receiver's (verify,
// SHA-256 of the ciphertext, HKDF, AES-GCM open, JSON decode) and the full
// floor (the receiver's plus sign and seal), as means over the rounds, and
// the median of the full floor of each round. Latency p50s are compared
// with the median. A mean over a loop absorbs every preemption by another
// process while a p50 skips the slow rounds, so on a loaded machine a mean
// floor overstates the floor and the p50 ratio looks better than it is.
func cryptoFloor(b *testing.B, sender *envtest.Party, body []byte) (recv, full,
	fullP50 time.Duration) {
	const n = floorRounds
	_, priv := sender.Keys.SigningKey()
	pub := priv.Public().(ed25519.PublicKey)
	key := make([]byte, 32)
	id := make([]byte, 16)
	input := make([]byte, 300)
	okm, _ := hkdf.Key(sha256.New, key, id, "nodex/v1/msg", 44)
	block, _ := aes.NewCipher(okm[:32])
	aead, _ := cipher.NewGCM(block)
	ct := aead.Seal(nil, okm[32:], body, input[:200])
	sig := ed25519.Sign(priv, input)

	recvEach := make([]time.Duration, n)
	start := time.Now()
	for i := range n {
		t := time.Now()
		_ = ed25519.Verify(pub, input, sig)
		_ = sha256.Sum256(ct)
		okm, _ := hkdf.Key(sha256.New, key, id, "nodex/v1/msg", 44)
		block, _ := aes.NewCipher(okm[:32])
		g, _ := cipher.NewGCM(block)
		plain, _ := g.Open(nil, okm[32:], ct, input[:200])
		var v benchBody
		_ = json.Unmarshal(plain, &v)
		recvEach[i] = time.Since(t)
	}
	recv = time.Since(start) / n

	fullEach := make([]time.Duration, n)
	start = time.Now()
	for i := range n {
		t := time.Now()
		okm, _ := hkdf.Key(sha256.New, key, id, "nodex/v1/msg", 44)
		block, _ := aes.NewCipher(okm[:32])
		g, _ := cipher.NewGCM(block)
		c := g.Seal(nil, okm[32:], body, input[:200])
		_ = sha256.Sum256(c)
		_ = ed25519.Sign(priv, input)
		fullEach[i] = recvEach[i] + time.Since(t)
	}
	full = recv + time.Since(start)/n
	fullP50, _ = percentiles(fullEach)

	return recv, full, fullP50
}

func rawRoundTrips(b *testing.B, url string, body []byte, n int) (p50, p99 time.Duration) {
	svc, cli := connect(b, url), connect(b, url)
	_, err := svc.Subscribe("bench.rtt", func(m *nats.Msg) {
		var v benchBody
		_ = json.Unmarshal(m.Data, &v)
		out, _ := json.Marshal(v)
		_ = m.Respond(out)
	})
	if err != nil {
		b.Fatal(err)
	}
	_ = svc.Flush()
	samples := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		if _, err := cli.Request("bench.rtt", body, 5*time.Second); err != nil {
			b.Fatal(err)
		}
		samples = append(samples, time.Since(start))
	}

	return percentiles(samples)
}

func secureRoundTrips(b *testing.B, srv interface{ ClientURL() string }, sender,
	receiver *envtest.Party, body []byte, n int) (p50, p99 time.Duration) {
	mk := func(p *envtest.Party) *Client {
		c, err := New(Config{Conn: connect(b, srv.ClientURL()), Codec: p.Codec(b, nil),
			RequestsPerSecond: 1e9, RequestBurst: 1 << 30})
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	svc, cli := mk(receiver), mk(sender)
	err := svc.Handle("nodex.v1.codesec.rtt", "codesec", func(_ context.Context,
		r *Request) (any, error) {
		var v benchBody
		err := r.Decode(&v)
		return v, err
	})
	if err != nil {
		b.Fatal(err)
	}
	_ = svc.NATS().Flush()
	var in benchBody
	_ = json.Unmarshal(body, &in)
	samples := make([]time.Duration, 0, n)
	for i := range n + 1 {
		start := time.Now()
		var out benchBody
		if err := cli.Request(context.Background(), "nodex.v1.codesec.rtt", "service:codesec",
			in, &out); err != nil {
			b.Fatal(err)
		}
		if i > 0 { // the first request writes the epoch's wrap
			samples = append(samples, time.Since(start))
		}
	}

	return percentiles(samples)
}

// floorRounds is how many messages each crypto floor phase times.
const floorRounds = 2_000

// processCPU returns the user and system CPU time this process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}

	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func percentiles(s []time.Duration) (p50, p99 time.Duration) {
	slices.Sort(s)

	return s[len(s)/2], s[len(s)*99/100]
}

func connect(b *testing.B, url string) *nats.Conn {
	nc, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)

	return nc
}

// BenchmarkRequestReply measures only the request/reply round trips of
// BenchmarkSecureBus: raw NATS p50, secure p50 and the median full crypto
// floor, timed before the round trips. Each iteration runs rtts round trips
// of each kind, so interleaved runs of two builds take a few seconds each.
func BenchmarkRequestReply(b *testing.B) {
	const rtts = 2_000
	srv := testkit.NATSServer(b)
	ctx := context.Background()
	ws, err := NewWrapStore(ctx, testkit.JetStream(b, srv), 0)
	if err != nil {
		b.Fatal(err)
	}
	w := envtest.NewWorld(ws)
	sender := w.AddParty(b, "agent-1", "agent", "agent")
	receiver := w.AddParty(b, "codesec-1", "service", "service:codesec")
	body, _ := json.Marshal(benchBody{Data: strings.Repeat("x", 1024-12)})

	var (
		rawP50, secP50, floorP50 time.Duration
		rawCPU, secCPU           time.Duration
	)
	for b.Loop() {
		_, _, floorP50 = cryptoFloor(b, sender, body)
		cpu0 := processCPU()
		rawP50, _ = rawRoundTrips(b, srv.ClientURL(), body, rtts)
		cpu1 := processCPU()
		secP50, _ = secureRoundTrips(b, srv, sender, receiver, body, rtts)
		rawCPU, secCPU = (cpu1-cpu0)/rtts, (processCPU()-cpu1)/rtts
	}
	// CPU time is the whole process's per round trip: both clients, the
	// embedded server and the Go scheduler's idle spinning.
	b.ReportMetric(float64(rawCPU.Nanoseconds())/1e3, "raw_cpu_us/rtt")
	b.ReportMetric(float64(secCPU.Nanoseconds())/1e3, "secure_cpu_us/rtt")
	b.ReportMetric(float64(rawP50.Microseconds()), "raw_p50_us")
	b.ReportMetric(float64(secP50.Microseconds()), "secure_p50_us")
	b.ReportMetric(float64(floorP50.Nanoseconds())/1e3, "full_floor_p50_us")
	b.ReportMetric(float64((secP50-rawP50).Nanoseconds())/float64(floorP50.Nanoseconds()),
		"p50_delta/full_floor")
}
