//go:build deploy

// Package deploy tests the compose deployment: three broker nodes in a
// JetStream cluster and the six services in their own containers. It runs
// only with the build tag deploy (make test-deploy), drives Docker on this
// host and talks to the containers through loopback ports and the nodex
// program. Every scenario prints a table of what it checked, with counts.
package deploy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/broker"
	"github.com/nodexsec/nodex/libs/identity"
)

// projectPrefix starts the compose project name of every run.
const projectPrefix = "nodexdeploytest"

// project is this run's compose project name; containers, the network and
// the volumes all carry it, so cleanup removes exactly what this run
// created. It is new for every run: when Docker fails to remove a network
// (an endpoint the engine still counts after its container is gone), the
// next run must not depend on that name being free.
var project = projectPrefix + "-" + runSuffix()

// runSuffix is eight random hex digits.
func runSuffix() string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}

	return hex.EncodeToString(b[:])
}

// clientURL lists the three brokers' ports that compose publishes on loopback.
const clientURL = "tls://127.0.0.1:14221,tls://127.0.0.1:14222,tls://127.0.0.1:14223"

// majorityURL lists broker-1 and broker-2, which stay together in every
// scenario, for checks that must not depend on the node under test.
const majorityURL = "tls://127.0.0.1:14221,tls://127.0.0.1:14222"

type deployment struct {
	dir     string // deploy/
	secrets string // deploy/compose/secrets
	nodex   string // the nodex program built for the host
	compose []string
}

func newDeployment(t testing.TB) *deployment {
	t.Helper()
	dir := os.Getenv("NODEX_DEPLOY_DIR")
	bin := os.Getenv("NODEX_BIN")
	if dir == "" || bin == "" {
		t.Fatal("NODEX_DEPLOY_DIR and NODEX_BIN are not set: run make test-deploy")
	}
	compose := strings.Fields(os.Getenv("NODEX_COMPOSE"))
	if len(compose) == 0 {
		compose = []string{"docker-compose"}
	}
	d := &deployment{
		dir: dir, secrets: filepath.Join(dir, "compose", "secrets"), nodex: bin,
		compose: append(compose, "-p", project, "-f",
			filepath.Join(dir, "compose", "docker-compose.yml")),
	}
	for _, f := range []string{d.secrets, bin} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%v: run make images certs first", err)
		}
	}

	return d
}

// run runs a command and returns its combined output.
func run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err,
			out.String())
	}

	return out.String(), nil
}

func (d *deployment) composeCmd(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	all := append(append([]string{}, d.compose[1:]...), args...)
	out, err := run(ctx, d.compose[0], all...)
	if err != nil {
		t.Fatal(err)
	}

	return out
}

func docker(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := run(ctx, "docker", args...)
	if err != nil {
		t.Fatal(err)
	}

	return out
}

// startRunner starts sandbox-runner replica index with runner.sh.
func (d *deployment) startRunner(t testing.TB, index int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(d.dir, "compose", "runner.sh"),
		fmt.Sprint(index))
	cmd.Env = append(os.Environ(), "PROJECT="+project)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("starting sandbox-runner %d: %v: %s", index, err, out)
	}
}

func runnerName(index int) string { return fmt.Sprintf("%s_sandbox-runner_%d", project, index) }

func brokerName(index int) string { return fmt.Sprintf("%s_broker-%d_1", project, index) }

// serviceName is the container of the first replica of compose service name.
func serviceName(name string) string { return fmt.Sprintf("%s_%s_1", project, name) }

// up starts the deployment and removes every container, network and volume
// of the project when the test ends.
func (d *deployment) up(t testing.TB) {
	t.Helper()
	sweepEarlierRuns(t)
	t.Cleanup(func() { d.down(t, true) })
	d.composeCmd(t, "up", "-d")
	d.startRunner(t, 1)
	d.waitReady(t, 3*time.Minute)
	d.waitReplicated(t, 2*time.Minute)
}

// waitReplicated waits until every stream of the account has three
// replicas, all current. Streams that services create at one replica are
// raised by the brokers within seconds, and a node lost before that would
// take such a stream with it.
func (d *deployment) waitReplicated(t testing.TB, limit time.Duration) {
	t.Helper()
	_, js := d.operator(t, clientURL)
	deadline := time.Now().Add(limit)
	pending := "unknown"
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		pending = unreplicated(ctx, js)
		cancel()
		if pending == "" {
			return
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("streams not replicated three times after %s: %s", limit, pending)
}

// unreplicated names the streams without three current replicas, or
// returns "" when there are none.
func unreplicated(ctx context.Context, js jetstream.JetStream) string {
	var pending []string
	names := js.StreamNames(ctx)
	for name := range names.Name() {
		s, err := js.Stream(ctx, name)
		if err != nil {
			pending = append(pending, name+" ("+err.Error()+")")
			continue
		}
		info := s.CachedInfo()
		ok := info.Config.Replicas == 3 && info.Cluster != nil &&
			len(info.Cluster.Replicas) == 2
		if ok {
			for _, r := range info.Cluster.Replicas {
				ok = ok && r.Current && !r.Offline
			}
		}
		if !ok {
			pending = append(pending, name)
		}
	}
	if err := names.Err(); err != nil {
		pending = append(pending, "listing streams: "+err.Error())
	}

	return strings.Join(pending, ", ")
}

// down stops the deployment; volumes too when removeVolumes is set.
func (d *deployment) down(t testing.TB, removeVolumes bool) {
	t.Helper()
	for i := 1; i <= 2; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, _ = run(ctx, "docker", "rm", "-f", runnerName(i))
		cancel()
	}
	args := []string{"down", "--remove-orphans"}
	if removeVolumes {
		args = append(args, "-v")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_, err := run(ctx, d.compose[0], append(append([]string{}, d.compose[1:]...), args...)...)
	if err == nil {
		return
	}
	// Docker sometimes keeps an endpoint of a removed container and then
	// rejects removing the network. That network contains no container and
	// no port, and the next run uses another project name, so it is only
	// logged. Anything else left running fails the test.
	left, lerr := run(ctx, "docker", "ps", "-aq", "--filter",
		"label=com.docker.compose.project="+project)
	if lerr != nil || strings.TrimSpace(left) != "" ||
		!strings.Contains(err.Error(), "active endpoints") {
		t.Fatal(err)
	}
	t.Logf("network %s_nodex stays after down (restarting dockerd frees it): %v", project, err)
}

// sweepEarlierRuns removes the containers, volumes and networks that
// earlier runs left behind (a run killed before its cleanup keeps its
// brokers on the published ports). It removes a run still in progress on
// this Docker host too: two runs cannot share the published ports anyway. A network Docker refuses to remove is
// logged with its name and left: it takes no port, and this run's network
// has another name.
func sweepEarlierRuns(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	list := func(args ...string) []string {
		out, err := run(ctx, "docker", args...)
		if err != nil {
			t.Fatalf("listing earlier deployments: %v", err)
		}

		return strings.Fields(out)
	}
	label := "label=com.docker.compose.project"
	var containers []string
	for _, c := range list("ps", "-a", "--filter", label, "--format",
		`{{.ID}}/{{.Label "com.docker.compose.project"}}`) {
		id, name, _ := strings.Cut(c, "/")
		if strings.HasPrefix(name, projectPrefix) {
			containers = append(containers, id)
		}
	}
	if len(containers) > 0 {
		if _, err := run(ctx, "docker", append([]string{"rm", "-f", "-v"},
			containers...)...); err != nil {
			t.Fatalf("removing %d containers of earlier deployments: %v", len(containers), err)
		}
		t.Logf("removed %d containers of earlier deployments", len(containers))
	}
	for _, v := range list("volume", "ls", "-q", "--filter", "name="+projectPrefix) {
		if _, err := run(ctx, "docker", "volume", "rm", v); err != nil {
			t.Logf("volume %s of an earlier deployment stays: %v", v, err)
		}
	}
	for _, n := range list("network", "ls", "--format", "{{.Name}}", "--filter",
		"name="+projectPrefix) {
		if _, err := run(ctx, "docker", "network", "rm", n); err != nil {
			t.Logf("network %s of an earlier deployment stays (restarting dockerd "+
				"frees it): %v", n, err)
		}
	}
}

// waitReady waits until a benign nodex run succeeds end to end.
func (d *deployment) waitReady(t testing.TB, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	var last string
	for time.Now().Before(deadline) {
		out, err := d.nodexRun(t, "print(6*7)\n")
		if err == nil && strings.TrimSpace(out) == "42" {
			return
		}
		last = out
		time.Sleep(2 * time.Second)
	}
	t.Fatalf("deployment not ready after %s: last nodex run output: %s", limit, last)
}

// nodexCmd runs the host's nodex program against the deployment with creds.
func (d *deployment) nodexCmd(ctx context.Context, creds string, args ...string,
) (string, error) {
	cmd := exec.CommandContext(ctx, d.nodex, append(args, "--server", clientURL,
		"--creds", creds, "--home", d.secrets)...)
	// The cluster's stale bound, as the deployment's own parties use it.
	cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+filepath.Join(d.secrets, "tls", "ca.crt"),
		identity.StaleAfterEnv+"=20s")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("nodex %s: %w: %s", args[0], err, stderr.String())
	}

	return stdout.String(), nil
}

// nodexRun runs a Python program as the demo agent and returns its stdout.
func (d *deployment) nodexRun(t testing.TB, code string) (string, error) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "prog.py")
	if err := os.WriteFile(f, []byte(code), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	return d.nodexCmd(ctx, d.creds(identity.DemoAgentID), "run", f)
}

func (d *deployment) creds(id string) string {
	switch id {
	case identity.OperatorID:
		return filepath.Join(d.secrets, "operator", id+".creds")
	case identity.DemoAgentID:
		return filepath.Join(d.secrets, "agent", id+".creds")
	}

	return filepath.Join(d.secrets, "identities", "creds", id+".creds")
}

// operator connects to the cluster as the operator over TLS; url picks
// the nodes (clientURL for all three).
func (d *deployment) operator(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	creds, err := identity.LoadCreds(d.creds(identity.OperatorID))
	if err != nil {
		t.Fatal(err)
	}
	// A node that has just rejoined may stall the first connections while
	// it catches up, so connecting is retried for a minute.
	var nc *nats.Conn
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		nc, err = broker.Connect(ctx, url, creds,
			nats.RootCAs(filepath.Join(d.secrets, "tls", "ca.crt")))
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}

	return nc, js
}

// table prints one scenario's checks as an aligned table.
type table struct {
	t    testing.TB
	name string
	rows [][3]string
}

func (tb *table) add(check, count string, ok bool) {
	status := "ok"
	if !ok {
		status = "FAILED"
		tb.t.Errorf("%s: %s (%s)", tb.name, check, count)
	}
	tb.rows = append(tb.rows, [3]string{check, count, status})
}

func (tb *table) print() {
	var b strings.Builder
	fmt.Fprintf(&b, "\nscenario: %s\n%-52s %-40s %s\n", tb.name, "check", "count", "result")
	for _, r := range tb.rows {
		fmt.Fprintf(&b, "%-52s %-40s %s\n", r[0], r[1], r[2])
	}
	fmt.Print(b.String())
}

// insideConn is an operator connection whose socket lives in a container's
// network namespace.
type insideConn struct {
	nc *nats.Conn
	js jetstream.JetStream
}

// connectInside connects as the operator to the broker of container
// through 127.0.0.1:4222 inside the container's network namespace. The
// socket keeps that namespace, so the connection survives the container
// being disconnected from the compose network, as a client on the
// broker's own host would. Reconnects are off: a new connection to a
// cut-off node would fail for other reasons than the one under test.
func (d *deployment) connectInside(t testing.TB, container string) *insideConn {
	t.Helper()
	pid := strings.TrimSpace(docker(t, "inspect", "-f", "{{.State.Pid}}", container))
	dialer := netnsDialer{path: "/proc/" + pid + "/ns/net"}
	creds, err := identity.LoadCreds(d.creds(identity.OperatorID))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nc, err := broker.Connect(ctx, "tls://127.0.0.1:4222", creds,
		nats.RootCAs(filepath.Join(d.secrets, "tls", "ca.crt")),
		nats.SetCustomDialer(dialer), nats.NoReconnect())
	if err != nil {
		t.Fatalf("connecting inside %s: %v", container, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}

	return &insideConn{nc: nc, js: js}
}

// netnsDialer dials TCP from inside the network namespace at path. It
// needs CAP_SYS_ADMIN, which make test-deploy has as root.
type netnsDialer struct{ path string }

// Dial implements nats.CustomDialer. The dial runs on a locked thread that
// joins the namespace and is never unlocked, so Go ends that thread
// instead of reusing it in the wrong namespace.
func (n netnsDialer) Dial(network, address string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open(n.path)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer f.Close()
		if _, _, errno := syscall.Syscall(sysSetns, f.Fd(), syscall.CLONE_NEWNET,
			0); errno != 0 {
			done <- result{err: fmt.Errorf("joining network namespace %s: %w", n.path, errno)}
			return
		}
		c, err := net.DialTimeout(network, address, 10*time.Second)
		done <- result{conn: c, err: err}
	}()
	r := <-done

	return r.conn, r.err
}
