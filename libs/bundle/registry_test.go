package bundle

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/testkit"
)

// registryView publishes the bootstrap identities to a real registry and
// returns a watched view of it.
func registryView(t *testing.T) (*identity.Setup, *identity.View) {
	t.Helper()

	ctx := context.Background()
	js := testkit.JetStream(t, testkit.NATSServer(t))
	setup, err := identity.Bootstrap(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	kv, err := identity.EnsureBucket(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	if err := setup.Publish(ctx, kv); err != nil {
		t.Fatal(err)
	}
	hbCtx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	go identity.NewAuthorityWriter(kv, setup.Authority).RunHeartbeat(hbCtx, time.Second, nil)
	view, err := identity.Watch(ctx, kv, setup.Root.Public(), identity.ViewOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(view.Close)

	return setup, view
}

func TestRegistryKeysAndRecipient(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	setup, view := registryView(t)
	recipient, err := RegistryRecipient{View: view, ID: "sandbox"}.Recipient(ctx)
	if err != nil {
		t.Fatalf("Recipient: %v", err)
	}
	opts := VerifyOptions{Signer: "codesec", Keys: RegistryKeys{View: view},
		Revocations: setRevocations{}, Now: func() time.Time { return testNow }}

	b, _, err := Seal(testManifest("b-reg"), testContents(), SignerFromCreds(setup.Creds["codesec"]), recipient)
	if err != nil {
		t.Fatal(err)
	}
	v, err := Verify(ctx, b, opts)
	if err != nil {
		t.Fatalf("Verify of a codesec bundle: %v", err)
	}
	if _, err := Open(v, setup.Creds["sandbox"].CurrentHPKEKey().Key); err != nil {
		t.Errorf("Open with the sandbox key: %v", err)
	}

	forged, _, err := Seal(testManifest("b-agent"), testContents(),
		SignerFromCreds(setup.Creds[identity.DemoAgentID]), recipient)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(ctx, forged, opts); !errors.Is(err, ErrUntrustedSigner) {
		t.Errorf("Verify of an agent-signed bundle: error = %v, want %v", err, ErrUntrustedSigner)
	}
}
