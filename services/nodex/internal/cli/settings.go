package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/services/nodex/devrun"
)

// homeDir returns the NodeX state folder: --home, then NODEX_HOME, then
// ./.nodex.
func (g *globals) homeDir() string {
	if g.home != "" {
		return g.home
	}
	if h := g.getenv("NODEX_HOME"); h != "" {
		return h
	}

	return ".nodex"
}

// serverURL returns the NATS URL: --server, then NATS_URL, then the URL
// that nodex dev wrote into the state folder.
func (g *globals) serverURL() (string, error) {
	if g.server != "" {
		return g.server, nil
	}
	if u := g.getenv("NATS_URL"); u != "" {
		return u, nil
	}
	path := filepath.Join(g.homeDir(), devrun.URLFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("no NATS server given and %s does not exist: start `nodex dev` "+
			"in this folder, or pass --server or NATS_URL", path)
	}
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}

	return strings.TrimSpace(string(b)), nil
}

// credsPath returns the credentials file: --creds, then NODEX_CREDS, then
// the dev credentials of defaultID in the state folder.
func (g *globals) credsPath(defaultID string) string {
	if g.creds != "" {
		return g.creds
	}
	if c := g.getenv("NODEX_CREDS"); c != "" {
		return c
	}

	return filepath.Join(g.homeDir(), "identities", "creds", defaultID+".creds")
}

// loadCreds loads the credentials for a command whose default identity is
// defaultID.
func (g *globals) loadCreds(defaultID string) (*identity.Credentials, error) {
	return identity.LoadCreds(g.credsPath(defaultID))
}
