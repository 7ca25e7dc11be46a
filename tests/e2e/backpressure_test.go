package e2e

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/agent"
	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/identity"
)

// The sandbox-runner of nodex dev runs 2 programs at once and queues 8
// more (its Slots and Queue defaults); past that it replies sandbox_busy.
const admittedRuns = 2 + 8

// sleeper is a program that holds its sandbox slot for seconds.
func sleeper(seconds string) agent.Submission {
	return agent.Submission{Language: "python", Entrypoint: "main.py",
		Files: []agent.SourceFile{{Name: "main.py",
			Content: "import time\ntime.sleep(" + seconds + ")\nprint('done')\n"}}}
}

// submitAll submits n copies of s and returns their bundle ids.
func submitAll(t *testing.T, a *agent.Agent, s agent.Submission, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		sub, err := a.Submit(context.Background(), s)
		if err != nil {
			t.Fatalf("submitting run %d: %v", i, err)
		}
		ids[i] = sub.BundleID
	}

	return ids
}

// TestRunsPastAdmissionAllSucceed starts more runs at once than the
// sandbox-runner admits. The SDK retries the rejected ones after
// sandbox_busy, so every run succeeds.
func TestRunsPastAdmissionAllSucceed(t *testing.T) {
	sys := startSystem(t)
	ctx := context.Background()
	a, err := agent.Open(ctx, agent.Config{URL: sys.url,
		CredsFile: sys.credsPath(identity.DemoAgentID)})
	if err != nil {
		t.Fatalf("opening agent: %v", err)
	}
	t.Cleanup(func() { _ = a.Close(context.Background()) })

	const runs = admittedRuns + 6
	ids := submitAll(t, a, sleeper("0.5"), runs)
	var wg sync.WaitGroup
	errc := make(chan error, runs)
	for _, id := range ids {
		wg.Go(func() {
			res, err := a.Exec(ctx, id)
			if err == nil && res.Stdout != "done\n" {
				err = errors.New("run " + res.RunID + " printed " + res.Stdout)
			}
			errc <- err
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Errorf("run failed: %v", err)
		}
	}
	stats := a.BusyStats()
	if stats.Retries == 0 {
		t.Errorf("%d runs at once met no sandbox_busy; the test did not pass admission", runs)
	}
	if stats.GiveUps != 0 {
		t.Errorf("%d runs gave up on sandbox_busy, want 0", stats.GiveUps)
	}
}

// TestBusyRunDeadlineGivesUp fills the sandbox-runner's slots and queue,
// then runs one more program with a short deadline: it gives up with a
// BusyError that names the cause.
func TestBusyRunDeadlineGivesUp(t *testing.T) {
	sys := startSystem(t)
	ctx := context.Background()
	a, err := agent.Open(ctx, agent.Config{URL: sys.url,
		CredsFile: sys.credsPath(identity.DemoAgentID)})
	if err != nil {
		t.Fatalf("opening agent: %v", err)
	}
	t.Cleanup(func() { _ = a.Close(context.Background()) })

	// Twice as many 6 s runs as the runner admits keep it full for the
	// first 6 s. A queued run whose own deadline ended frees its place, and
	// one of the fill runs retrying after sandbox_busy takes it again.
	ids := submitAll(t, a, sleeper("6"), 2*admittedRuns)
	extra := submitAll(t, a, sleeper("0"), 1)[0]
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	fill, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	for _, id := range ids {
		wg.Go(func() { _, _ = a.Exec(fill, id) })
	}
	// The fill runs are admitted as they arrive. Until the runner is full,
	// the extra run may still be admitted, so it runs or times out in the
	// queue. Once it is full, the extra run meets sandbox_busy until its
	// deadline.
	var busy *agent.BusyError
	end := time.Now().Add(30 * time.Second)
	for time.Now().Before(end) {
		short, stop := context.WithTimeout(ctx, 2*time.Second)
		_, err = a.Exec(short, extra)
		stop()
		if errors.As(err, &busy) {
			break
		}
		t.Logf("extra run before the runner was full: %v", err)
	}
	if !errors.As(err, &busy) {
		t.Fatalf("run with a 2 s deadline on a full runner: got %v, want a BusyError", err)
	}
	if !errors.Is(err, errs.SandboxBusy) {
		t.Errorf("BusyError %v does not match errs.SandboxBusy", err)
	}
	if busy.Attempts < 2 {
		t.Errorf("gave up after %d attempts, want retries within the 2 s deadline", busy.Attempts)
	}
	if !strings.Contains(err.Error(), "sandbox busy") {
		t.Errorf("error %q does not say the sandbox was busy", err)
	}
	if a.BusyStats().GiveUps == 0 {
		t.Error("BusyStats counts no give-up")
	}
}

// TestSuspendedAgentRunFailsFast suspends an agent while its run is in
// flight. The server closes the agent's connection and the sandbox-runner
// kills the run, so Exec ends at once instead of waiting for its deadline.
// It ends with ErrConnectionClosed, or with the runner's reply for the
// killed run when that reply arrives before the close.
func TestSuspendedAgentRunFailsFast(t *testing.T) {
	sys := startSystem(t)
	ctx := context.Background()
	op := sys.openBuiltin(t, identity.OperatorID)
	creds := sys.newAgent(t, op, "agent-suspended-mid-run", identity.RoleAgent)
	var a *agent.Agent
	eventually(t, "new agent connects", 15*time.Second, func() bool {
		var err error
		a, err = agent.Open(ctx, agent.Config{URL: sys.url, Creds: creds})
		return err == nil
	})
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	// Services learn of the new identity through their own registry watch.
	var bundleID string
	eventually(t, "codesec accepts the new agent", 30*time.Second, func() bool {
		short, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		sub, err := a.Submit(short, sleeper("20"))
		if err != nil {
			t.Logf("submitting: %v", err)
			return false
		}
		bundleID = sub.BundleID
		return true
	})

	type outcome struct {
		reply *agent.ExecReply
		err   error
	}
	done := make(chan outcome, 1)
	start := time.Now()
	go func() {
		long, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		reply, err := a.Exec(long, bundleID)
		done <- outcome{reply: reply, err: err}
	}()
	time.Sleep(time.Second)
	if err := sys.admin(t, op).Suspend(ctx, creds.ID); err != nil {
		t.Fatalf("suspending %s: %v", creds.ID, err)
	}

	select {
	case out := <-done:
		killed := out.err == nil && out.reply != nil && out.reply.Reason == "killed"
		if !errors.Is(out.err, agent.ErrConnectionClosed) && !killed {
			t.Errorf("Exec of a suspended agent: got %+v, %v; want ErrConnectionClosed or "+
				"a reply for the killed run", out.reply, out.err)
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Errorf("Exec returned after %s, want well before its 2 minute deadline", d)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("Exec of a suspended agent still waiting after 90 s")
	}
}
