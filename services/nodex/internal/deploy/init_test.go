package deploy_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/testkit"
	"github.com/nodexsec/nodex/services/nodex/internal/deploy"
)

func TestInitWritesSecretFiles(t *testing.T) {
	out := t.TempDir()
	opts := deploy.InitOptions{Out: out, UID: -1, GID: -1}
	if err := deploy.Init(t.Context(), opts); err != nil {
		t.Fatalf("Init: %v", err)
	}
	secrets := []string{
		"broker/issuer.seed", "broker/authority.key", "broker/node.key",
		"broker/registry.seed.json", "services/codesec/codesec.creds",
		"services/sandbox/sandbox.creds", "services/keyvault/kek",
		"services/incident/authority.key", "operator/operator.creds",
		"agent/agent-demo.creds", "identities/root.key", "tls/ca.key",
	}
	for _, rel := range secrets {
		fi, err := os.Stat(filepath.Join(out, rel))
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			continue
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %o, want 600", rel, fi.Mode().Perm())
		}
	}
	for _, rel := range []string{"broker", "services/policy", "operator", "identities"} {
		fi, err := os.Stat(filepath.Join(out, rel))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("%s mode = %o, want 700", rel, fi.Mode().Perm())
		}
	}
	if _, err := os.Stat(filepath.Join(out, "broker", "root.key")); err == nil {
		t.Error("the broker folder contains the root key")
	}
}

func TestInitKeepsExistingKeys(t *testing.T) {
	out := t.TempDir()
	opts := deploy.InitOptions{Out: out, UID: -1, GID: -1}
	if err := deploy.Init(t.Context(), opts); err != nil {
		t.Fatal(err)
	}
	first, _ := os.ReadFile(filepath.Join(out, "broker", "issuer.seed"))
	kek, _ := os.ReadFile(filepath.Join(out, "services", "keyvault", "kek"))
	if err := deploy.Init(t.Context(), opts); err != nil {
		t.Fatalf("second Init: %v", err)
	}
	second, _ := os.ReadFile(filepath.Join(out, "broker", "issuer.seed"))
	kek2, _ := os.ReadFile(filepath.Join(out, "services", "keyvault", "kek"))
	if string(first) != string(second) {
		t.Error("second Init replaced the issuer seed")
	}
	if string(kek) != string(kek2) {
		t.Error("second Init replaced the key encryption key")
	}
}

func TestRegistrySeedImportsOnce(t *testing.T) {
	out := t.TempDir()
	if err := deploy.Init(t.Context(), deploy.InitOptions{Out: out, UID: -1, GID: -1}); err != nil {
		t.Fatal(err)
	}
	seed := filepath.Join(out, "broker", deploy.RegistrySeedFile)
	var entries []deploy.SeedEntry
	data, _ := os.ReadFile(seed)
	if err := json.Unmarshal(data, &entries); err != nil {
		t.Fatal(err)
	}
	srv := testkit.NATSServer(t)
	js := testkit.JetStream(t, srv)
	kv, err := identity.EnsureBucket(t.Context(), js)
	if err != nil {
		t.Fatal(err)
	}
	n, err := deploy.ImportRegistry(t.Context(), kv, seed)
	if err != nil {
		t.Fatalf("ImportRegistry: %v", err)
	}
	if n != len(entries) {
		t.Errorf("first import wrote %d values, want %d", n, len(entries))
	}
	n, err = deploy.ImportRegistry(t.Context(), kv, seed)
	if err != nil {
		t.Fatalf("second ImportRegistry: %v", err)
	}
	if n != 0 {
		t.Errorf("second import wrote %d values, want 0", n)
	}
	if _, err := kv.Get(t.Context(), identity.IdentityKey(identity.OperatorID)); err != nil {
		t.Errorf("operator record missing after import: %v", err)
	}
}
