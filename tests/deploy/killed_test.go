//go:build deploy

package deploy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/agent"
	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/services/incident/incident"
	"github.com/nodexsec/nodex/services/monitor/monitor"
)

// Names of the throwaway agent and the key it is denied in the scenario
// "service killed mid-load". The deployment starts with empty volumes, so
// neither exists before.
const (
	killLoadAgent = "agent-kill-load"
	killLoadKey   = "openai-kill-load"
)

// incidentConsumer is the incident service's durable consumer on
// NODEX_THREATS, as its configuration sets it by default.
const incidentConsumer = "incident-threats"

// Shape of the denial load. The monitor's authz-repeated-denials rule raises
// UNAUTHORIZED_ACCESS at 5 denials of one identity within 60 s, and its
// keyvault-retrieve-rate rule raises API_ABUSE at 30 keyvault.retrieve events
// within 60 s. The load stays below 30 retrievals, so the only threat it can
// raise is UNAUTHORIZED_ACCESS, and the agent gets exactly one incident.
const (
	loadMaxDenials  = 20
	loadInterval    = 400 * time.Millisecond
	killAfterDenied = 3
	// monitorDownFor keeps the monitor stopped long enough for the
	// threshold's worth of events to pile up unread in NODEX_EVENTS.
	monitorDownFor = 3 * time.Second
)

// Phases of the load relative to the monitor's kill.
const (
	phaseBeforeKill = iota
	phaseDown
	phaseAfterStart
)

// denialLoad retrieves a key the agent has no role for, once every
// loadInterval, and counts the outcomes per phase.
type denialLoad struct {
	mu      sync.Mutex
	phase   int
	denied  [3]int
	values  int // retrievals that returned a key value; must stay 0
	other   int
	lastErr error
	reached chan struct{} // closed at killAfterDenied denials
	done    chan struct{}
}

func startDenialLoad(ag *agent.Agent) *denialLoad {
	l := &denialLoad{reached: make(chan struct{}), done: make(chan struct{})}
	go l.run(ag)

	return l
}

// run stops at loadMaxDenials denials, or after three other failures in a
// row: the incident service suspends the agent once the threat arrives,
// which closes its connection.
func (l *denialLoad) run(ag *agent.Agent) {
	defer close(l.done)
	var reachedOnce sync.Once
	total, otherInRow := 0, 0
	for total < loadMaxDenials && otherInRow < 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		k, err := ag.RetrieveKey(ctx, killLoadKey, "deploy test: denied load")
		cancel()
		l.mu.Lock()
		switch {
		case err == nil && k != nil && k.Value != "":
			l.values++
			otherInRow = 0
		case errors.Is(err, errs.AccessDenied):
			l.denied[l.phase]++
			total++
			otherInRow = 0
		default:
			l.other++
			l.lastErr = err
			otherInRow++
		}
		l.mu.Unlock()
		if total >= killAfterDenied {
			reachedOnce.Do(func() { close(l.reached) })
		}
		time.Sleep(loadInterval)
	}
	reachedOnce.Do(func() { close(l.reached) })
}

func (l *denialLoad) setPhase(p int) {
	l.mu.Lock()
	l.phase = p
	l.mu.Unlock()
}

func scenarioServiceKilled(t *testing.T, d *deployment, _ *writer) {
	tb := &table{t: t, name: "service killed mid-load"}
	defer tb.print()
	op := d.creds(identity.OperatorID)
	dir := t.TempDir()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	keyFile := filepath.Join(dir, "key")
	fakeKey := "sk-" + strings.Repeat("a1B2", 5) + "T3BlbkFJ" + strings.Repeat("Z9y8", 5)
	if err := os.WriteFile(keyFile, []byte(fakeKey), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.nodexCmd(ctx, op, "keys", "store", "openai", killLoadKey,
		"--file", keyFile); err != nil {
		t.Fatalf("storing key %s: %v", killLoadKey, err)
	}
	if _, err := d.nodexCmd(ctx, op, "agent", "create", killLoadAgent, "--out", dir); err != nil {
		t.Fatalf("creating agent %s: %v", killLoadAgent, err)
	}
	ag, err := agent.Open(ctx, agent.Config{
		URL: clientURL, CredsFile: filepath.Join(dir, killLoadAgent+".creds"),
		NATSOptions: []nats.Option{nats.RootCAs(filepath.Join(d.secrets, "tls", "ca.crt"))},
	})
	if err != nil {
		t.Fatalf("connecting as %s: %v", killLoadAgent, err)
	}
	defer func() { _ = ag.Close(context.Background()) }()

	monitorName := serviceName("monitor")
	startedBefore := strings.TrimSpace(docker(t, "inspect", "-f", "{{.State.StartedAt}}",
		monitorName))
	load := startDenialLoad(ag)
	<-load.reached
	load.setPhase(phaseDown)
	docker(t, "kill", monitorName)
	time.Sleep(monitorDownFor)
	docker(t, "start", monitorName)
	load.setPhase(phaseAfterStart)
	state := strings.Fields(docker(t, "inspect", "-f", "{{.State.Running}} {{.State.StartedAt}}",
		monitorName))
	restarted := len(state) == 2 && state[0] == "true" && state[1] != startedBefore
	tb.add("monitor killed and started again",
		fmt.Sprintf("down %s, running and restarted: %t", monitorDownFor, restarted), restarted)

	select {
	case <-load.done:
	case <-time.After(2 * time.Minute):
		t.Fatal("denial load still running after 2 minutes")
	}
	denied := load.denied[0] + load.denied[1] + load.denied[2]
	tb.add("key retrievals denied, none returned a value",
		fmt.Sprintf("%d denied (%d before kill, %d down, %d after start), %d values",
			denied, load.denied[phaseBeforeKill], load.denied[phaseDown],
			load.denied[phaseAfterStart], load.values),
		load.values == 0 && load.denied[phaseBeforeKill] > 0 && load.denied[phaseDown] > 0 &&
			denied >= 5)
	if load.other > 0 {
		t.Logf("%d retrievals failed other than by denial (the suspension ends the load); "+
			"last: %v", load.other, load.lastErr)
	}

	_, js := d.operator(t, clientURL)
	drained, ok := waitDrained(t, js, events.StreamName, monitor.ConsumerName, 2*time.Minute)
	tb.add(monitor.ConsumerName+" drained to the stream's end", drained, ok)

	checkKillThreats(t, tb, d)
	checkKillIncident(t, tb, d, js)
}

// checkKillThreats checks that the load raised one threat per rule and
// that the threat counted no denial twice.
func checkKillThreats(t *testing.T, tb *table, d *deployment) {
	// The monitor publishes a threat revision at power-of-two counts and
	// 10 s after the last one, so the final count may trail the events.
	var threats []monitor.Threat
	var stored, distinct int
	var err error
	count := -1
	deadline := time.Now().Add(45 * time.Second)
	for time.Now().Before(deadline) {
		threats, err = d.agentThreats(killLoadAgent)
		if err == nil {
			stored, distinct, err = d.denialEvents(killLoadAgent)
		}
		count = -1
		for _, th := range threats {
			if th.RuleID == "authz-repeated-denials" {
				count = max(count, th.Count)
			}
		}
		if err == nil && count == distinct {
			break
		}
		time.Sleep(3 * time.Second)
	}
	if err != nil {
		t.Errorf("reading threats and events of %s: %v", killLoadAgent, err)
	}

	ids := map[string]map[string]bool{}
	for _, th := range threats {
		key := th.Type + "/" + th.RuleID
		if ids[key] == nil {
			ids[key] = map[string]bool{}
		}
		ids[key][th.ID] = true
	}
	var groups []string
	oneIDEach := len(ids) > 0
	for key, set := range ids {
		groups = append(groups, fmt.Sprintf("%s: %d", key, len(set)))
		oneIDEach = oneIDEach && len(set) == 1
	}
	slices.Sort(groups)
	_, unauthorized := ids["UNAUTHORIZED_ACCESS/authz-repeated-denials"]
	tb.add("threat ids per (type, rule) for the agent", orNoThreats(groups),
		oneIDEach && unauthorized)
	tb.add("threat count within distinct denial events",
		fmt.Sprintf("count %d, %d distinct of %d stored", count, distinct, stored),
		count >= 5 && count <= distinct)
}

func orNoThreats(groups []string) string {
	if len(groups) == 0 {
		return "no threats"
	}

	return strings.Join(groups, ", ")
}

// checkKillIncident checks that the incident service opened one incident
// for the agent once it had read every threat revision.
func checkKillIncident(t *testing.T, tb *table, d *deployment, js jetstream.JetStream) {
	drained, ok := waitDrained(t, js, monitor.ThreatStream, incidentConsumer, 2*time.Minute)
	if !ok {
		t.Logf("%s not drained: %s", incidentConsumer, drained)
	}
	var list []incident.Summary
	var err error
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		list, err = d.agentIncidents(killLoadAgent)
		if err == nil && len(list) > 0 {
			break
		}
		time.Sleep(2 * time.Second)
	}
	var types []string
	for _, in := range list {
		types = append(types, fmt.Sprintf("%s %s", in.Type, in.State))
	}
	tb.add("incidents opened for the agent",
		fmt.Sprintf("%d (%s)", len(list), strings.Join(types, ", ")),
		err == nil && len(list) == 1 && list[0].Type == "UNAUTHORIZED_ACCESS")
	if err != nil {
		t.Logf("listing incidents of %s: %v", killLoadAgent, err)
	}
}

// waitDrained waits until the durable consumer on stream has no message
// pending or unacknowledged and its ack floor reached the stream's last
// sequence. It returns the consumer's last state as text and whether it
// drained within limit.
func waitDrained(t *testing.T, js jetstream.JetStream, stream, consumer string,
	limit time.Duration,
) (string, bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	last := "unknown"
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		// The stream is read first, so a message stored between the two
		// reads cannot make a lagging consumer look drained.
		s, err := js.Stream(ctx, stream)
		var c jetstream.Consumer
		if err == nil {
			c, err = js.Consumer(ctx, stream, consumer)
		}
		cancel()
		if err != nil {
			last = errText(err)
		} else {
			lastSeq := s.CachedInfo().State.LastSeq
			info := c.CachedInfo()
			last = fmt.Sprintf("ack floor %d of %d, %d pending, %d unacked",
				info.AckFloor.Stream, lastSeq, info.NumPending, info.NumAckPending)
			if info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream >= lastSeq {
				return last, true
			}
		}
		if time.Now().After(deadline) {
			return last, false
		}
		time.Sleep(time.Second)
	}
}

// agentThreats lists the threats about id as the operator.
func (d *deployment) agentThreats(id string) ([]monitor.Threat, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := d.nodexCmd(ctx, d.creds(identity.OperatorID), "threats", "list",
		"--identity", id, "--json")
	if err != nil {
		return nil, err
	}
	var reply struct {
		Threats []monitor.Threat `json:"threats"`
	}
	if err := json.Unmarshal([]byte(out), &reply); err != nil {
		return nil, fmt.Errorf("decoding threats list output: %w", err)
	}

	return reply.Threats, nil
}

// agentIncidents lists the incidents about id as the operator.
func (d *deployment) agentIncidents(id string) ([]incident.Summary, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := d.nodexCmd(ctx, d.creds(identity.OperatorID), "incidents", "list",
		"--identity", id, "--json")
	if err != nil {
		return nil, err
	}
	var reply incident.ListReply
	if err := json.Unmarshal([]byte(out), &reply); err != nil {
		return nil, fmt.Errorf("decoding incidents list output: %w", err)
	}

	return reply.Incidents, nil
}

// denialEvents counts the stored authz.decision failures about id in
// NODEX_EVENTS, and how many distinct event ids they carry.
func (d *deployment) denialEvents(id string) (stored, distinct int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := d.nodexCmd(ctx, d.creds(identity.OperatorID), "events", "tail",
		"--type", authz.EventType, "--identity", id, "--limit", "10000", "--json")
	if err != nil {
		return 0, 0, err
	}
	ids := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		var ev monitor.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return 0, 0, fmt.Errorf("decoding events tail line: %w", err)
		}
		if ev.Subject == id && ev.Status == events.StatusFailure {
			stored++
			ids[ev.ID] = true
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}

	return stored, len(ids), nil
}
