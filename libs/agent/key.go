package agent

import (
	"context"
	"fmt"
	"log/slog"
)

// RetrieveRequest is the body of a nodex.v1.keyvault.retrieve request.
// Version 0 means the latest active version; Purpose is free text recorded
// in the policy input and the audit event.
type RetrieveRequest struct {
	Name    string `json:"name"`
	Version int    `json:"version,omitempty"`
	Purpose string `json:"purpose,omitempty"`
}

// Key is a retrieved provider key. Value is the secret: printing or
// logging a Key shows only its metadata.
type Key struct {
	Name     string `json:"name"`
	Provider string `json:"provider"`
	Version  int    `json:"version"`
	Value    string `json:"value"`
}

// String returns the key's metadata without its value.
func (k Key) String() string {
	return fmt.Sprintf("key %s (provider %s, version %d)", k.Name, k.Provider, k.Version)
}

// GoString returns the same as String, so %#v redacts too.
func (k Key) GoString() string { return k.String() }

// LogValue implements [slog.LogValuer] without the value.
func (k Key) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", k.Name), slog.String("provider", k.Provider),
		slog.Int("version", k.Version))
}

// RetrieveKey fetches a provider key from the keyvault. The agent needs
// role key-reader:<provider>; a denial is a coded error (*errs.Error).
func (a *Agent) RetrieveKey(ctx context.Context, name, purpose string) (*Key, error) {
	var k Key
	req := RetrieveRequest{Name: name, Purpose: purpose}
	if err := a.request(ctx, "agent.retrieve_key", SubjectRetrieve, RoleKeyvault, req, &k); err != nil {
		return nil, fmt.Errorf("retrieving key %q: %w", name, err)
	}

	return &k, nil
}
