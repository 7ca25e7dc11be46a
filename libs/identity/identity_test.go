package identity_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/envelope"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/testkit"
)

// fixture is a bootstrapped registry on an embedded server.
type fixture struct {
	setup *identity.Setup
	kv    jetstream.KeyValue
	admin *identity.Admin
	auth  *identity.AuthorityWriter
}

func newFixture(t *testing.T) *fixture {
	t.Helper()

	ctx := context.Background()
	js := testkit.JetStream(t, testkit.NATSServer(t))
	setup, err := identity.Bootstrap(t.TempDir())
	if err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	kv, err := identity.EnsureBucket(ctx, js)
	if err != nil {
		t.Fatalf("EnsureBucket: %v", err)
	}
	if err := setup.Publish(ctx, kv); err != nil {
		t.Fatalf("Publish: %v", err)
	}

	return &fixture{
		setup: setup, kv: kv, admin: identity.NewAdmin(kv, setup.Root),
		auth: identity.NewAuthorityWriter(kv, setup.Authority),
	}
}

func (f *fixture) watch(t *testing.T, opts identity.ViewOptions) *identity.View {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := identity.Watch(ctx, f.kv, f.setup.Root.Public(), opts)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	t.Cleanup(v.Close)

	return v
}

// eventually polls cond every 10ms until it holds or 5s pass.
func eventually(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()

	start := time.Now()
	for time.Since(start) < 5*time.Second {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: not true after 5s", what)

	return 0
}

func TestCredsRoundTrip(t *testing.T) {
	t.Parallel()

	setup, err := identity.Bootstrap(t.TempDir())
	if err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	path := setup.CredsPath("codesec")
	st, err := os.Stat(path)
	if err != nil {
		t.Fatalf("stat: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("creds mode = %04o, want 0600", st.Mode().Perm())
	}
	c, err := identity.LoadCreds(path)
	if err != nil {
		t.Fatalf("LoadCreds: %v", err)
	}
	want := setup.Creds["codesec"]
	if !c.CurrentSigningKey().Key.Equal(want.CurrentSigningKey().Key) {
		t.Error("signing key changed in the round trip")
	}
	if string(c.NATSSeed) != string(want.NATSSeed) {
		t.Error("nkey seed changed in the round trip")
	}
	ek, _ := c.CurrentHPKEKey().Key.Bytes()
	wk, _ := want.CurrentHPKEKey().Key.Bytes()
	if string(ek) != string(wk) {
		t.Error("HPKE key changed in the round trip")
	}
}

func TestCredsModeRejected(t *testing.T) {
	t.Parallel()

	setup, err := identity.Bootstrap(t.TempDir())
	if err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	path := setup.CredsPath("agent-demo")
	for _, mode := range []os.FileMode{0o640, 0o604, 0o644} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := identity.LoadCreds(path)
		if !errors.Is(err, identity.ErrCredsMode) {
			t.Fatalf("mode %04o: err = %v, want ErrCredsMode", mode, err)
		}
		if !strings.Contains(err.Error(), "chmod 600 "+path) {
			t.Errorf("mode %04o: error %q does not say chmod 600 PATH", mode, err)
		}
	}
}

func TestBootstrapReloads(t *testing.T) {
	t.Parallel()

	dir := t.TempDir()
	first, err := identity.Bootstrap(dir)
	if err != nil {
		t.Fatalf("first Bootstrap: %v", err)
	}
	second, err := identity.Bootstrap(dir)
	if err != nil {
		t.Fatalf("second Bootstrap: %v", err)
	}
	if !first.Root.Public().Equal(second.Root.Public()) {
		t.Error("root key changed across starts")
	}
	for _, id := range append(identity.Services, "agent-demo", "operator") {
		c, ok := second.Creds[id]
		if !ok {
			t.Errorf("no credentials for %q", id)
			continue
		}
		if string(c.NATSSeed) != string(first.Creds[id].NATSSeed) {
			t.Errorf("%q: keys changed across starts", id)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "root.key")); err != nil {
		t.Errorf("root.key: %v", err)
	}
}

func TestViewLoadsBootstrap(t *testing.T) {
	t.Parallel()

	f := newFixture(t)
	v := f.watch(t, identity.ViewOptions{})
	for _, id := range append(identity.Services, "agent-demo", "operator") {
		ident, err := v.Active(id)
		if err != nil {
			t.Errorf("Active(%q): %v", id, err)
			continue
		}
		if id == "agent-demo" && !ident.HasRole(identity.RoleAgent) {
			t.Errorf("agent-demo roles = %v, want agent", ident.Roles)
		}
	}
	if got := v.Members(identity.ServiceRole("codesec")); len(got) != 1 {
		t.Errorf("members of service:codesec = %d, want 1", len(got))
	}
	// Publishing again on restart changes nothing.
	if err := f.setup.Publish(context.Background(), f.kv); err != nil {
		t.Fatalf("second Publish: %v", err)
	}
}

func TestSuspensionVisibleToView(t *testing.T) {
	t.Parallel()

	f := newFixture(t)
	v := f.watch(t, identity.ViewOptions{})
	changes := make(chan identity.Change, 8)
	v.OnChange(func(c identity.Change) { changes <- c })

	if err := f.admin.Suspend(context.Background(), "agent-demo"); err != nil {
		t.Fatalf("Suspend: %v", err)
	}
	took := eventually(t, "suspension seen", func() bool {
		_, err := v.Active("agent-demo")
		return errors.Is(err, identity.ErrNotActive)
	})
	t.Logf("suspension visible after %s", took)
	select {
	case c := <-changes:
		if c.New.Status != identity.StatusSuspended {
			t.Errorf("change status = %s, want suspended", c.New.Status)
		}
	case <-time.After(time.Second):
		t.Error("no change notification")
	}

	if err := f.admin.Unsuspend(context.Background(), "agent-demo"); err != nil {
		t.Fatalf("Unsuspend: %v", err)
	}
	eventually(t, "unsuspension seen", func() bool {
		_, err := v.Active("agent-demo")
		return err == nil
	})

	if err := f.admin.Revoke(context.Background(), "agent-demo"); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if err := f.admin.Unsuspend(context.Background(), "agent-demo"); err == nil {
		t.Error("Unsuspend of a revoked identity succeeded")
	}
}

func TestViewRejectsRollback(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	f := newFixture(t)
	old, err := f.kv.Get(ctx, identity.IdentityKey("agent-demo"))
	if err != nil {
		t.Fatal(err)
	}
	v := f.watch(t, identity.ViewOptions{})
	if err := f.admin.Suspend(ctx, "agent-demo"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "suspension seen", func() bool {
		_, err := v.Active("agent-demo")
		return err != nil
	})

	// A hostile server replays the older, active record.
	if _, err := f.kv.Put(ctx, identity.IdentityKey("agent-demo"), old.Value()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "rollback rejected", func() bool {
		_, err := v.Rejected()
		return errors.Is(err, identity.ErrRollback)
	})
	if _, err := v.Active("agent-demo"); !errors.Is(err, identity.ErrNotActive) {
		t.Errorf("after rollback Active = %v, want ErrNotActive", err)
	}
}

func TestViewRejectsForgedEntries(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	f := newFixture(t)
	v := f.watch(t, identity.ViewOptions{})
	other, err := identity.NewSigner(identity.SignerRoot)
	if err != nil {
		t.Fatal(err)
	}
	ident, err := v.Identity("agent-demo")
	if err != nil {
		t.Fatal(err)
	}
	evil := *ident
	evil.Status = identity.StatusActive
	evil.Roles = []string{identity.RoleOperator}
	codesec, err := v.Identity("codesec")
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		key    string
		signer identity.Signer
		rec    *identity.Record
		want   error
	}{
		{"wrong root", identity.IdentityKey("agent-demo"), other,
			&identity.Record{Key: identity.IdentityKey("agent-demo"), Version: 99, Identity: &evil},
			identity.ErrBadSignature},
		{"moved record", identity.IdentityKey("agent-demo"), f.setup.Root,
			&identity.Record{Key: identity.IdentityKey("codesec"), Version: 99, Identity: codesec},
			identity.ErrBadRecord},
		{"authority raises roles", identity.IdentityKey("agent-demo"), f.setup.Authority,
			&identity.Record{Key: identity.IdentityKey("agent-demo"), Version: 99, Identity: &evil},
			identity.ErrBadRecord},
	}
	for _, tt := range tests {
		e, err := tt.signer.Sign(tt.rec)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.kv.Put(ctx, tt.key, e.Marshal()); err != nil {
			t.Fatal(err)
		}
		eventually(t, tt.name, func() bool {
			_, err := v.Rejected()
			return errors.Is(err, tt.want)
		})
		got, err := v.Identity("agent-demo")
		if err != nil {
			t.Fatal(err)
		}
		if got.HasRole(identity.RoleOperator) {
			t.Fatalf("%s: forged record accepted", tt.name)
		}
	}
}

func TestAuthorityContainment(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	f := newFixture(t)
	v := f.watch(t, identity.ViewOptions{})
	if err := f.auth.Contain(ctx, "agent-demo", identity.StatusSuspended); err != nil {
		t.Fatalf("Contain: %v", err)
	}
	eventually(t, "containment seen", func() bool {
		ident, err := v.Identity("agent-demo")
		return err == nil && ident.Status == identity.StatusSuspended
	})
	if err := f.auth.Contain(ctx, "agent-demo", identity.StatusActive); err == nil {
		t.Error("authority raised a status")
	}
	if err := f.auth.Contain(ctx, "agent-demo", identity.StatusRevoked); err != nil {
		t.Fatalf("Contain revoked: %v", err)
	}
	eventually(t, "revocation seen", func() bool {
		ident, err := v.Identity("agent-demo")
		return err == nil && ident.Status == identity.StatusRevoked
	})
}

func TestViewFailsClosedWhenStale(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	f := newFixture(t)
	v := f.watch(t, identity.ViewOptions{StaleAfter: 300 * time.Millisecond})
	if _, err := v.Identity("codesec"); err != nil {
		t.Fatalf("fresh view: %v", err)
	}
	eventually(t, "view stale", func() bool {
		_, err := v.Identity("codesec")
		return errors.Is(err, identity.ErrStale)
	})

	hbCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go f.auth.RunHeartbeat(hbCtx, 50*time.Millisecond, nil)
	eventually(t, "view fresh again", func() bool {
		_, err := v.Identity("codesec")
		return err == nil
	})
}

func TestRotationOverlap(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	f := newFixture(t)
	c := f.setup.Creds["codesec"]
	if err := f.admin.Rotate(ctx, c, time.Hour); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	ident, err := f.admin.Get(ctx, "codesec")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, err := ident.SigningKey(1, now); err != nil {
		t.Errorf("old key inside overlap: %v", err)
	}
	if _, err := ident.SigningKey(1, now.Add(2*time.Hour)); !errors.Is(err, identity.ErrKeyRetired) {
		t.Errorf("old key after overlap: err = %v, want ErrKeyRetired", err)
	}
	if _, err := ident.SigningKey(2, now.Add(2*time.Hour)); err != nil {
		t.Errorf("new key: %v", err)
	}
	if c.CurrentSigningKey().Version != 2 {
		t.Errorf("creds signing version = %d, want 2", c.CurrentSigningKey().Version)
	}
}

func TestCompromiseHasNoOverlap(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	f := newFixture(t)
	c := f.setup.Creds["monitor"]
	seqs := map[string]uint64{"NODEX_EVENTS": 41}
	if err := f.admin.RevokeCompromised(ctx, c, seqs); err != nil {
		t.Fatalf("RevokeCompromised: %v", err)
	}
	ident, err := f.admin.Get(ctx, "monitor")
	if err != nil {
		t.Fatal(err)
	}
	k, err := ident.SigningKey(1, time.Now())
	if !errors.Is(err, identity.ErrKeyCompromised) {
		t.Fatalf("compromised key: err = %v, want ErrKeyCompromised", err)
	}
	if k.Compromise.StreamSeqs["NODEX_EVENTS"] != 41 {
		t.Errorf("stream seq = %v, want 41", k.Compromise.StreamSeqs)
	}
	if len(c.SigningKeys) != 1 || c.SigningKeys[0].Version != 2 {
		t.Errorf("creds still hold compromised keys: %d versions", len(c.SigningKeys))
	}

	v := f.watch(t, identity.ViewOptions{})
	dir := &identity.Directory{View: v}
	sk, err := dir.SigningKey(ctx, "monitor", 1)
	if err != nil {
		t.Fatal(err)
	}
	if !sk.Compromised || sk.RevokedAtSeq["NODEX_EVENTS"] != 42 {
		t.Errorf("envelope key = %+v, want compromised from seq 42", sk)
	}
	if sk.Retired {
		t.Error("compromised key reported as retired, which hides its stream bound")
	}
}

func TestRoleEpochs(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	f := newFixture(t)
	op := f.setup.Creds["operator"]
	mon, _ := f.admin.Get(ctx, "monitor")
	inc, _ := f.admin.Get(ctx, "incident")
	const role = "events-reader"

	e1, err := f.admin.StartRoleEpoch(ctx, role, op, []*identity.Identity{mon, inc})
	if err != nil {
		t.Fatalf("epoch 1: %v", err)
	}
	if !e1.HasMember("operator") {
		t.Error("opener not added to the epoch")
	}
	v := f.watch(t, identity.ViewOptions{})
	incKeys := &identity.Keyring{Creds: f.setup.Creds["incident"], View: v}
	k1, err := incKeys.RoleKey(role, 1)
	if err != nil {
		t.Fatalf("incident opening epoch 1: %v", err)
	}

	// Removing incident starts epoch 2, which it cannot open.
	e2, err := f.admin.StartRoleEpoch(ctx, role, op, []*identity.Identity{mon})
	if err != nil {
		t.Fatalf("epoch 2: %v", err)
	}
	if e2.Epoch != 2 || e2.HasMember("incident") {
		t.Fatalf("epoch 2 = %d members %v", e2.Epoch, e2.Members)
	}
	eventually(t, "epoch 2 seen", func() bool {
		d := &identity.Directory{View: v}
		re, err := d.RoleEpoch(ctx, role)
		return err == nil && re.Epoch == 2
	})
	if _, err := incKeys.RoleKey(role, 2); !errors.Is(err, envelope.ErrNotFound) {
		t.Errorf("removed member opening epoch 2: err = %v, want ErrNotFound", err)
	}

	// monitor reaches epoch 1 through the chain in epoch 2.
	monKeys := &identity.Keyring{Creds: f.setup.Creds["monitor"], View: v}
	got, err := monKeys.RoleKey(role, 1)
	if err != nil {
		t.Fatalf("monitor opening epoch 1 by chain: %v", err)
	}
	gb, _ := got.Bytes()
	wb, _ := k1.Bytes()
	if string(gb) != string(wb) {
		t.Error("chained epoch 1 key differs from the member-wrapped one")
	}
}

func TestDirectoryStaleMapsToEnvelope(t *testing.T) {
	t.Parallel()

	f := newFixture(t)
	v := f.watch(t, identity.ViewOptions{StaleAfter: 100 * time.Millisecond})
	d := &identity.Directory{View: v}
	eventually(t, "stale", func() bool {
		return errors.Is(d.Fresh(context.Background()), envelope.ErrStale)
	})
	if _, err := d.Party(context.Background(), "codesec"); !errors.Is(err, envelope.ErrStale) {
		t.Errorf("Party on stale view: err = %v, want envelope.ErrStale", err)
	}
}

func TestHeartbeatDigestExposesWithheldRecord(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	f := newFixture(t)
	writerView := f.watch(t, identity.ViewOptions{})
	f.auth.Digest = writerView.Digest

	// mirror plays a server that shows one reader everything except the
	// suspension of agent-demo.
	js := testkit.JetStream(t, testkit.NATSServer(t))
	mirror, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "MIRROR"})
	if err != nil {
		t.Fatal(err)
	}
	copyKey := func(key string) {
		t.Helper()
		e, err := f.kv.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := mirror.Put(ctx, key, e.Value()); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := f.kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for k := range keys.Keys() {
		copyKey(k)
	}
	if err := f.auth.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	copyKey(identity.KeyHeartbeat)
	reader, err := identity.Watch(ctx, mirror, f.setup.Root.Public(),
		identity.ViewOptions{StaleAfter: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reader.Close)
	if err := reader.Fresh(); err != nil {
		t.Fatalf("reader with the full registry: %v", err)
	}

	if err := f.admin.Suspend(ctx, identity.DemoAgentID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "writer sees suspension", func() bool {
		_, err := writerView.Active(identity.DemoAgentID)
		return errors.Is(err, identity.ErrNotActive)
	})
	stop := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(stop) {
		if err := f.auth.Heartbeat(ctx); err != nil {
			t.Fatal(err)
		}
		copyKey(identity.KeyHeartbeat)
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := reader.Active(identity.DemoAgentID); !errors.Is(err, identity.ErrStale) {
		t.Errorf("reader missing the suspension: err = %v, want ErrStale", err)
	}
	if reader.Mismatched() == 0 {
		t.Error("no heartbeat digest mismatch counted")
	}
}

func TestStateFileRejectsRollbackAfterRestart(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	f := newFixture(t)
	key := identity.IdentityKey(identity.DemoAgentID)
	old, err := f.kv.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "registry.state")
	first := f.watch(t, identity.ViewOptions{StateFile: state})
	if err := f.admin.Suspend(ctx, identity.DemoAgentID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "suspension seen", func() bool {
		_, err := first.Active(identity.DemoAgentID)
		return errors.Is(err, identity.ErrNotActive)
	})
	first.Close()

	// While the reader is down, the server rolls the record back.
	if _, err := f.kv.Put(ctx, key, old.Value()); err != nil {
		t.Fatal(err)
	}
	restarted := f.watch(t, identity.ViewOptions{StateFile: state})
	if _, err := restarted.Active(identity.DemoAgentID); err == nil {
		t.Fatal("restarted reader accepted the rolled-back active record")
	}
	if _, err := restarted.Rejected(); !errors.Is(err, identity.ErrRollback) {
		t.Errorf("last rejection = %v, want ErrRollback", err)
	}
	st, err := os.Stat(state)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("state file mode = %04o, want 0600", st.Mode().Perm())
	}
}

func TestAdminListAndSetRoles(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	f := newFixture(t)
	list, err := f.admin.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(list) != 8 {
		t.Errorf("List returned %d identities, want 8", len(list))
	}
	if err := f.admin.SetRoles(ctx, identity.DemoAgentID,
		[]string{identity.RoleAgent, "key-reader:openai"}); err != nil {
		t.Fatalf("SetRoles: %v", err)
	}
	got, err := f.admin.Get(ctx, identity.DemoAgentID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.HasRole("key-reader:openai") {
		t.Errorf("roles = %v, want key-reader:openai added", got.Roles)
	}
	if err := f.admin.SetRoles(ctx, identity.DemoAgentID, []string{"Bad Role"}); err == nil {
		t.Error("SetRoles accepted an invalid role")
	}
	if _, err := f.admin.Create(ctx, identity.DemoAgentID, identity.KindAgent, nil); !errors.Is(err, identity.ErrExists) {
		t.Errorf("Create of an existing id: err = %v, want ErrExists", err)
	}
	if _, err := f.admin.Create(ctx, "Bad.ID", identity.KindAgent, nil); !errors.Is(err, identity.ErrInvalidID) {
		t.Errorf("Create of an invalid id: err = %v, want ErrInvalidID", err)
	}
	// The broker distinguishes its own users by these names.
	for _, id := range []string{"nodex-admin", "nodex-auth", "nodex-sys", "nodex-x"} {
		if _, err := f.admin.Create(ctx, id, identity.KindAgent, nil); !errors.Is(err,
			identity.ErrInvalidID) {
			t.Errorf("Create of reserved id %s: err = %v, want ErrInvalidID", id, err)
		}
	}
	if err := f.auth.Contain(ctx, "nobody", identity.StatusSuspended); !errors.Is(err, identity.ErrNotFound) {
		t.Errorf("Contain of a missing id: err = %v, want ErrNotFound", err)
	}
}

func TestLoadCredsRejectsBadFile(t *testing.T) {
	t.Parallel()

	dir := t.TempDir()
	tests := []struct {
		name string
		body string
	}{
		{"not json", "SUxxx"},
		{"other format", `{"format":"nats-creds"}`},
		{"missing keys", `{"format":"nodex-creds/v1","id":"a","kind":"agent"}`},
	}
	for _, tt := range tests {
		path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_")+".creds")
		if err := os.WriteFile(path, []byte(tt.body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := identity.LoadCreds(path); err == nil {
			t.Errorf("%s: LoadCreds accepted the file", tt.name)
		}
	}
}

func TestRemoveFromRolesRekeys(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	f := newFixture(t)
	op := f.setup.Creds[identity.OperatorID]
	mon, _ := f.admin.Get(ctx, "monitor")
	inc, _ := f.admin.Get(ctx, "incident")
	if _, err := f.admin.StartRoleEpoch(ctx, "audit", op, []*identity.Identity{mon, inc}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.admin.StartRoleEpoch(ctx, "other", op, []*identity.Identity{mon}); err != nil {
		t.Fatal(err)
	}
	if err := f.admin.Revoke(ctx, "incident"); err != nil {
		t.Fatal(err)
	}
	rekeyed, err := f.admin.RemoveFromRoles(ctx, "incident", op)
	if err != nil {
		t.Fatalf("RemoveFromRoles: %v", err)
	}
	if len(rekeyed) != 1 || rekeyed[0] != "audit" {
		t.Errorf("rekeyed = %v, want [audit]", rekeyed)
	}
	e, err := f.admin.Role(ctx, "audit")
	if err != nil {
		t.Fatal(err)
	}
	if e.Epoch != 2 || e.HasMember("incident") || !e.HasMember("monitor") {
		t.Errorf("audit epoch %d members %v, want epoch 2 without incident", e.Epoch, e.Members)
	}
	other, err := f.admin.Role(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	if other.Epoch != 1 {
		t.Errorf("role other rekeyed to epoch %d, want 1", other.Epoch)
	}
}
