package sandbox_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/bundle"
	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/envelope"
	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/party"
	"github.com/nodexsec/nodex/libs/stack"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/app"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/ports/busport"
	"github.com/nodexsec/nodex/services/sandbox-runner/sandbox"
)

var initPath string

// testIDBase gives this test process its own 64 host ids, apart from other
// test processes that may run on this machine at the same time.
var testIDBase = 1<<21 + (os.Getpid()%8192)*64

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "nodex-service-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	_ = os.Chmod(dir, 0o755)
	initPath = filepath.Join(dir, "sandbox-init")
	cmd := exec.Command("go", "build", "-o", initPath, "../cmd/sandbox-init")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building sandbox-init: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// agentPolicy allows agents to exec and nothing else.
const agentPolicy = `package nodex.authz

import rego.v1

default decision := {"allow": false, "reasons": ["not allowed"]}

decision := {"allow": true, "reasons": ["agent exec"]} if {
	input.subject.kind == "agent"
	input.subject.status == "active"
	input.action == "exec"
}
`

type world struct {
	stack          *stack.Stack
	codesec, agent *party.Party
	sandboxCreds   *identity.Credentials
}

// startWorld starts a stack, the sandbox service with a test policy, and
// parties for codesec and the demo agent.
func startWorld(t testing.TB) *world {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := stack.Start(ctx, stack.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("starting stack: %v", err)
	}
	open := func(id string) *party.Party {
		p, err := s.Open(ctx, id, false)
		if err != nil {
			t.Fatalf("opening %s: %v", id, err)
		}
		return p
	}
	sb, cs, ag := open("sandbox"), open("codesec"), open(identity.DemoAgentID)
	// codesec owns and creates the bundle store and the revocation list.
	if _, err := bundle.OpenStore(ctx, cs.JS, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := bundle.OpenRevocations(ctx, cs.JS, 0); err != nil {
		t.Fatal(err)
	}
	engine := authz.New(authz.Options{})
	if err := engine.Load(ctx, authz.PolicySet{Revision: "test",
		Modules: map[string]string{"authz.rego": agentPolicy}}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- sandbox.Run(ctx, sandbox.Deps{
			Config: sandbox.Config{InitPath: initPath, Slots: 2, Queue: 2, HostIDBase: testIDBase}, Client: sb.Bus,
			Directory: &identity.Directory{View: sb.View}, Creds: sb.Creds, Registry: sb.View, Decider: engine,
			Events: sb.Events, Log: slog.New(slog.DiscardHandler),
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("sandbox.Run: %v", err)
		}
		for _, p := range []*party.Party{ag, cs, sb} {
			_ = p.Close(context.Background())
		}
		s.Close()
	})
	waitForService(t, ag)
	return &world{stack: s, codesec: cs, agent: ag, sandboxCreds: sb.Creds}
}

// waitForService polls exec with an unknown bundle until the handler replies.
func waitForService(t testing.TB, ag *party.Party) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var rep app.ExecReply
		err := ag.Bus.Request(context.Background(), busport.SubjectExec, "service:sandbox",
			app.ExecRequest{BundleID: uuid.NewString()}, &rep)
		if errors.Is(err, errs.NotFound) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("sandbox service did not answer")
}

// seal seals a python bundle as codesec, to the sandbox's HPKE key, and stores it.
func (w *world) seal(t testing.TB, code string) string {
	t.Helper()
	ctx := context.Background()
	id := uuid.NewString()
	signing := w.codesec.Creds.CurrentSigningKey()
	hpkeKey := w.sandboxCreds.HPKEKeys[len(w.sandboxCreds.HPKEKeys)-1].Key
	b, _, err := bundle.Seal(bundle.Manifest{ID: id, Language: "python", Entrypoint: "main.py",
		Author: identity.DemoAgentID, Created: time.Now().Add(-time.Minute), Expires: time.Now().Add(time.Hour)},
		bundle.Contents{Files: []bundle.File{{Name: "main.py", Data: []byte(code)}}},
		bundle.Signer{ID: "codesec", KeyVersion: signing.Version, Key: signing.Key}, hpkeKey.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	store, err := bundle.OpenStore(ctx, w.codesec.JS, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Put(ctx, id, b); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestServiceExecOverTheBus(t *testing.T) {
	w := startWorld(t)
	ctx := context.Background()
	id := w.seal(t, "print(6 * 7)")
	var rep app.ExecReply
	if err := w.agent.Bus.Request(ctx, busport.SubjectExec, "service:sandbox",
		app.ExecRequest{BundleID: id}, &rep); err != nil {
		t.Fatalf("exec: %v", err)
	}
	if rep.Stdout != "42\n" || rep.Reason != "exited" || rep.Receipt == nil {
		t.Fatalf("got %+v, want stdout 42 and a receipt", rep)
	}
	body, _ := json.Marshal(rep)
	checkKeys(t, "exec-reply.schema.json", body)
	checkKeys(t, "receipt.schema.json", rep.Receipt.Body)
	pub := w.sandboxCreds.CurrentSigningKey().Key.Public().(ed25519.PublicKey)
	raw, _ := json.Marshal(rep.Receipt)
	r, err := sandbox.VerifyReceipt(raw, pub)
	if err != nil {
		t.Fatalf("verifying receipt: %v", err)
	}
	if r.BundleID != id || r.Agent != identity.DemoAgentID {
		t.Errorf("receipt names bundle %s agent %s, want %s %s", r.BundleID, r.Agent, id, identity.DemoAgentID)
	}
}

func TestServiceJobResultReachesCaller(t *testing.T) {
	w := startWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := w.seal(t, "print('async')")
	job := busport.JobRequest{JobID: uuid.NewString(), BundleID: id}
	if _, err := w.agent.Bus.PublishJob(ctx, busport.SubjectJobs, "service:sandbox", job,
		time.Now().Add(time.Minute)); err != nil {
		t.Fatalf("publishing job: %v", err)
	}
	// Agents read results through their own consumer in deployment; the test
	// reads the stream with the server's own JetStream context.
	js := w.stack.Broker.JetStream()
	cons, err := js.CreateOrUpdateConsumer(ctx, busport.StreamResults, jetstream.ConsumerConfig{
		FilterSubject: busport.ResultsSubject(identity.DemoAgentID), AckPolicy: jetstream.AckNonePolicy})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(20 * time.Second))
	if err != nil {
		t.Fatalf("waiting for the job result: %v", err)
	}
	md, _ := msg.Metadata()
	opened, err := w.agent.Codec.Open(ctx, envelope.Delivery{Subject: msg.Subject(), Stream: md.Stream,
		Sequence: md.Sequence.Stream, StreamTime: md.Timestamp,
		MsgID: msg.Headers().Get(jetstream.MsgIDHeader)}, msg.Data())
	if err != nil {
		t.Fatalf("opening the result as the agent: %v", err)
	}
	var res busport.JobResult
	if err := opened.Decode(&res); err != nil {
		t.Fatal(err)
	}
	checkKeys(t, "job-result.schema.json", opened.Body)
	if res.JobID != job.JobID || res.Result == nil || res.Result.Stdout != "async\n" {
		t.Errorf("got %+v, want job %s with stdout async", res, job.JobID)
	}
	if _, err := w.codesec.Codec.Open(ctx, envelope.Delivery{Subject: msg.Subject(), Stream: md.Stream,
		Sequence: md.Sequence.Stream, StreamTime: md.Timestamp,
		MsgID: msg.Headers().Get(jetstream.MsgIDHeader)}, msg.Data()); err == nil {
		t.Error("another identity opened the agent's result")
	}
}

// runningPrograms counts the processes that run as one of this test's slot
// program uids (HostIDBase+2n+1, see executor.Config).
func runningPrograms(t *testing.T, slots int) int {
	t.Helper()
	dirs, err := filepath.Glob("/proc/[0-9]*/status")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for n := range slots {
		want[strconv.Itoa(testIDBase+2*n+1)] = true
	}
	count := 0
	for _, path := range dirs {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // the process ended meanwhile
		}
		for _, line := range strings.Split(string(b), "\n") {
			if uids, ok := strings.CutPrefix(line, "Uid:"); ok {
				if f := strings.Fields(uids); len(f) > 0 && want[f[0]] {
					count++
				}
			}
		}
	}
	return count
}

// collectEvents consumes the sandbox's events as the monitor identity, to
// which events are sealed, and sends each one on the returned channel.
func collectEvents(t *testing.T, w *world) <-chan events.SecurityEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	mon, err := w.stack.Open(ctx, "monitor", false)
	if err != nil {
		t.Fatalf("opening monitor: %v", err)
	}
	t.Cleanup(func() { _ = mon.Close(context.Background()) })
	out := make(chan events.SecurityEvent, 64)
	err = mon.Bus.Consume(ctx, bus.ConsumeConfig{Stream: events.StreamName,
		Consumer: jetstream.ConsumerConfig{Durable: "test-contain",
			FilterSubject: "nodex.v1.events.sandbox.>"}},
		func(_ context.Context, m *bus.Message) error {
			var ev events.SecurityEvent
			if err := m.Decode(&ev); err != nil {
				return fmt.Errorf("%w: %v", bus.ErrPoison, err)
			}
			out <- ev
			return nil
		})
	if err != nil {
		t.Fatalf("consuming events: %v", err)
	}
	return out
}

func TestServiceSuspensionKillsRuns(t *testing.T) {
	w := startWorld(t)
	evs := collectEvents(t, w)
	ctx := context.Background()
	id := w.seal(t, "import time\ntime.sleep(60)\n")
	// Two runs fill both slots and a third waits for one. The agent's
	// connection closes with the suspension, so no reply is awaited.
	for range 3 {
		go func() {
			var rep app.ExecReply
			_ = w.agent.Bus.Request(ctx, busport.SubjectExec, "service:sandbox",
				app.ExecRequest{BundleID: id}, &rep)
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for runningPrograms(t, 2) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the two runs did not start within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := w.stack.Admin.Suspend(ctx, identity.DemoAgentID); err != nil {
		t.Fatalf("suspending the agent: %v", err)
	}

	// The runs would last 60s, past the wall-time ceiling of 10s, so only
	// the containment can end them with reason killed.
	var contained *events.SecurityEvent
	var killed []events.SecurityEvent
	timeout := time.After(60 * time.Second)
	for contained == nil || len(killed) < 2 {
		select {
		case ev := <-evs:
			switch ev.Type {
			case "sandbox.identity_contained":
				contained = &ev
			case "sandbox.exec":
				killed = append(killed, ev)
			}
		case <-timeout:
			t.Fatalf("after 60s: containment event %v, exec events %+v", contained, killed)
		}
	}
	if got := contained.Metadata["cause"]; got != app.CauseSuspended {
		t.Errorf("containment cause %q, want %q", got, app.CauseSuspended)
	}
	if got := contained.Metadata["runs_cancelled"]; got != "3" {
		t.Errorf("containment cancelled %s runs, want 3 (two running, one queued)", got)
	}
	if contained.Subject != identity.DemoAgentID {
		t.Errorf("containment names %q, want %q", contained.Subject, identity.DemoAgentID)
	}
	for _, ev := range killed {
		if ev.Metadata["reason"] != "killed" || ev.Metadata["kill_cause"] != app.CauseSuspended {
			t.Errorf("run ended with reason %q, cause %q; want killed, %s",
				ev.Metadata["reason"], ev.Metadata["kill_cause"], app.CauseSuspended)
		}
	}
	if n := runningPrograms(t, 2); n != 0 {
		t.Errorf("%d sandboxed programs still run after the containment", n)
	}
}
