package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nodexsec/nodex/libs/identity"
)

// TestAuthorityKeyOnly checks that a missing authority key stops the
// service before it connects, and that no key file is created anywhere
// in the folder it was pointed at.
func TestAuthorityKeyOnly(t *testing.T) {
	dir := t.TempDir()
	root, err := identity.NewSigner(identity.SignerRoot)
	if err != nil {
		t.Fatal(err)
	}
	c, err := identity.NewCredentials("incident", identity.KindService, root.Public())
	if err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(dir, "incident.creds")
	if err := identity.WriteCreds(creds, c); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "flag missing", args: []string{"-creds", creds}, want: "missing -authority-key"},
		{name: "file missing", args: []string{"-creds", creds,
			"-authority-key", filepath.Join(dir, "authority.key")}, want: "loading the authority key"},
		{name: "root key given", args: []string{"-creds", creds,
			"-authority-key", writeSigner(t, dir, root)}, want: "does not hold"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(string) string { return "" }
			err := run(context.Background(), tt.args, getenv, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"incident.creds", "root.key"}; !slices.Equal(names, want) {
		t.Errorf("folder holds %v after the runs, want only %v", names, want)
	}
}

func TestAuthorityKeyLoads(t *testing.T) {
	dir := t.TempDir()
	setup, err := identity.Bootstrap(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := identity.LoadSigner(filepath.Join(dir, "authority.key"), identity.SignerAuthority)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Key.Equal(setup.Authority.Key) {
		t.Error("loaded authority key differs from the one written")
	}
	if _, err := identity.LoadSigner(filepath.Join(dir, "none.key"),
		identity.SignerAuthority); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: got %v, want os.ErrNotExist", err)
	}
}

// writeSigner writes s as root.key in dir, in the layout nodex init uses.
func writeSigner(t *testing.T, dir string, s identity.Signer) string {
	t.Helper()
	path := filepath.Join(dir, "root.key")
	data, err := json.Marshal(map[string]any{"name": s.Name, "seed": s.Key.Seed()})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}

	return path
}
