package identity_test

import (
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/identity"
)

// FuzzVerifierOpen feeds arbitrary KV values to the registry verifier,
// which reads them from a server it does not trust. It must never panic,
// and must accept nothing that the root or authority did not sign.
func FuzzVerifierOpen(f *testing.F) {
	root, err := identity.NewSigner(identity.SignerRoot)
	if err != nil {
		f.Fatal(err)
	}
	authority, err := identity.NewSigner(identity.SignerAuthority)
	if err != nil {
		f.Fatal(err)
	}
	v := &identity.Verifier{Root: root.Public()}
	delegation, err := root.Sign(&identity.Record{
		Key: identity.KeyAuthority, Version: 1,
		Authority: &identity.Authority{Key: authority.Public(), NotAfter: time.Now().Add(time.Hour)},
	})
	if err != nil {
		f.Fatal(err)
	}
	if _, err := v.SetAuthority(delegation); err != nil {
		f.Fatal(err)
	}
	creds, err := identity.NewCredentials("agent-fuzz", identity.KindAgent, root.Public())
	if err != nil {
		f.Fatal(err)
	}
	ident, err := creds.Public([]string{identity.RoleAgent}, time.Now())
	if err != nil {
		f.Fatal(err)
	}
	key := identity.IdentityKey(ident.ID)
	base, err := root.Sign(&identity.Record{Key: key, Version: 1, Identity: ident})
	if err != nil {
		f.Fatal(err)
	}
	down, err := authority.Sign(&identity.Record{Key: key, Version: 2,
		Downgrade: &identity.Downgrade{Status: identity.StatusSuspended, Base: base}})
	if err != nil {
		f.Fatal(err)
	}
	hb, err := authority.Sign(&identity.Record{Key: identity.KeyHeartbeat, Version: 1})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(key, base.Marshal())
	f.Add(key, down.Marshal())
	f.Add(identity.KeyHeartbeat, hb.Marshal())
	f.Add(key, []byte(`{"signer":"root","payload":"e30=","sig":""}`))
	f.Add("role.agent", []byte(`{}`))

	f.Fuzz(func(t *testing.T, key string, value []byte) {
		e, err := identity.ParseEntry(value)
		if err != nil {
			return
		}
		rec, err := v.Open(key, e, time.Now())
		if err != nil {
			return
		}
		if rec.Key != key {
			t.Fatalf("accepted a record for %q under %q", rec.Key, key)
		}
		if rec.Identity != nil && rec.Identity.ID != ident.ID {
			t.Fatalf("accepted an unsigned identity %q", rec.Identity.ID)
		}
	})
}
