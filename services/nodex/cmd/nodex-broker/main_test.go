package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/broker"
	"github.com/nodexsec/nodex/libs/envelope"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/services/nodex/internal/deploy"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     string
		want    options
		wantErr string
	}{
		{name: "no name", wantErr: "no server name"},
		{name: "name from env", env: "broker-2",
			want: options{name: "broker-2", replicas: 3, port: 4222, clusterPort: 6222}},
		{name: "flags", args: []string{"-name", "n1", "-replicas", "1", "-port", "5222"},
			want: options{name: "n1", replicas: 1, port: 5222, clusterPort: 6222}},
		{name: "unknown flag", args: []string{"-name", "n1", "-bogus"},
			wantErr: "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("NODEX_BROKER_NAME", tt.env)
			t.Setenv("NODEX_BROKER_ROUTES", "")
			got, err := parseFlags(tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.name != tt.want.name || got.replicas != tt.want.replicas ||
				got.port != tt.want.port || got.clusterPort != tt.want.clusterPort {
				t.Errorf("got name %q replicas %d port %d cluster port %d, want %q %d %d %d",
					got.name, got.replicas, got.port, got.clusterPort,
					tt.want.name, tt.want.replicas, tt.want.port, tt.want.clusterPort)
			}
		})
	}
}

// initSecrets writes a deployment with nodex init and returns its broker
// folder.
func initSecrets(t *testing.T) string {
	t.Helper()
	out := t.TempDir()
	if err := deploy.Init(t.Context(), deploy.InitOptions{Out: out, UID: -1, GID: -1}); err != nil {
		t.Fatalf("nodex init: %v", err)
	}

	return filepath.Join(out, "broker")
}

func TestNodeConfigErrors(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	tests := []struct {
		name    string
		file    string // file of the broker folder to replace, "" for none
		data    string
		remove  bool
		wantErr string
	}{
		{name: "issuer seed missing", file: deploy.IssuerSeedFile, remove: true,
			wantErr: "run nodex init"},
		{name: "root key not base64", file: deploy.RootPubFile, data: "not base64!",
			wantErr: "decoding " + deploy.RootPubFile},
		{name: "authority key of another signer", file: deploy.AuthorityKeyFile,
			data: `{"name":"root","seed":"AAAA"}`, wantErr: "does not contain an authority key"},
		{name: "authority key not JSON", file: deploy.AuthorityKeyFile, data: "{",
			wantErr: "does not contain an authority key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := initSecrets(t)
			path := filepath.Join(dir, tt.file)
			var err error
			if tt.remove {
				err = os.Remove(path)
			} else {
				err = os.WriteFile(path, []byte(tt.data), 0o600)
			}
			if err != nil {
				t.Fatal(err)
			}
			_, err = nodeConfig(options{name: "n1", secrets: dir, data: t.TempDir()}, log)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestNodeConfigRoutes(t *testing.T) {
	dir := initSecrets(t)
	o := options{name: "n1", secrets: dir, data: t.TempDir(), replicas: 3,
		routes: " nats-route://a:6222, ,nats-route://b:6222 "}
	cfg, err := nodeConfig(o, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"nats-route://a:6222", "nats-route://b:6222"}
	if !slices.Equal(cfg.Routes, want) {
		t.Errorf("got routes %q, want %q", cfg.Routes, want)
	}
	if cfg.Replicas != 3 || cfg.Name != "n1" || cfg.TLS == nil || cfg.Authority == nil {
		t.Errorf("got replicas %d, name %q, TLS %v, authority set %v; want 3, n1, TLS files, set",
			cfg.Replicas, cfg.Name, cfg.TLS, cfg.Authority != nil)
	}
}

// freePorts reserves n loopback ports and releases them for the nodes.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
		defer l.Close()
	}

	return ports
}

// syncBuffer is a log sink that several nodes write to at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()

	return s.b.String()
}

// TestPrepareCluster starts three nodes from one nodex init folder, as
// compose does, runs each node's preparation at once, and checks the
// seeded registry and the replicas of what the broker creates.
func TestPrepareCluster(t *testing.T) {
	dir := initSecrets(t)
	ports := freePorts(t, 6)
	var routes []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[3+i]))
	}
	var logs syncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	nodes := make([]*broker.Broker, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			o := options{name: fmt.Sprintf("n%d", i+1), cluster: "nodex-test",
				host: "127.0.0.1", port: ports[i], clusterHost: "127.0.0.1",
				clusterPort: ports[3+i], routes: strings.Join(routes, ","), secrets: dir,
				data: t.TempDir(), replicas: 3}
			cfg, err := nodeConfig(o, log)
			if err != nil {
				errs[i] = err
				return
			}
			cfg.JetStreamWait = time.Minute
			if nodes[i], err = broker.StartNode(ctx, cfg); err != nil {
				errs[i] = err
				return
			}
			errs[i] = prepare(ctx, nodes[i], o, log)
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, n := range nodes {
			if n != nil {
				n.Shutdown()
			}
		}
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node n%d: %v", i+1, err)
		}
	}

	// One node holds the heartbeat lease, and its heartbeats count only
	// once the seeded delegation has reached it, so the first fresh one
	// may come a heartbeat interval after prepare returns.
	for deadline := time.Now().Add(15 * time.Second); nodes[2].View().Fresh() != nil; {
		if time.Now().After(deadline) {
			t.Fatalf("registry view of n3 not fresh 15s after prepare: %v",
				nodes[2].View().Fresh())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, id := range []string{identity.DemoAgentID, identity.OperatorID, "codesec", "sandbox"} {
		if _, err := nodes[2].View().Active(id); err != nil {
			t.Errorf("identity %s not active in the seeded registry: %v", id, err)
		}
	}
	js := nodes[1].JetStream()
	for _, name := range []string{events.StreamName, "KV_" + envelope.WrapBucket,
		"KV_" + identity.Bucket} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Errorf("stream %s: %v", name, err)
			continue
		}
		if got := s.CachedInfo().Config.Replicas; got != 3 {
			t.Errorf("stream %s has %d replicas, want 3", name, got)
		}
	}
	if n := strings.Count(logs.String(), `"msg":"registry seeded"`); n != 3 {
		t.Errorf("%d nodes logged the registry seed, want 3", n)
	}

	// Preparing again, as a restarted node does, writes no record twice.
	logs.mu.Lock()
	logs.b.Reset()
	logs.mu.Unlock()
	o := options{name: "n1", secrets: dir, replicas: 3}
	if err := prepare(ctx, nodes[0], o, log); err != nil {
		t.Fatalf("preparing again: %v", err)
	}
	if !strings.Contains(logs.String(), `"written":0`) {
		t.Errorf("second preparation wrote records: %s", logs.String())
	}
}
