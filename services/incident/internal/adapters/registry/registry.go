// Package registry reads and downgrades identities in the identity registry
// for the incident service.
package registry

import (
	"context"
	"errors"
	"fmt"

	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/services/incident/internal/app"
	"github.com/nodexsec/nodex/services/incident/internal/domain"
)

// Lister is the part of *identity.View a Directory reads.
type Lister interface {
	Identity(id string) (*identity.Identity, error)
	List() []*identity.Identity
	Fresh() error
}

// Directory implements app.Directory over a watched registry view.
type Directory struct {
	view Lister
}

var _ app.Directory = (*Directory)(nil)

// NewDirectory returns a Directory reading view.
func NewDirectory(view Lister) *Directory {
	if view == nil {
		panic("registry: NewDirectory needs a view")
	}

	return &Directory{view: view}
}

// Lookup implements app.Directory. A stale view is an error, so a threat
// waits for a fresh registry instead of being judged on old data.
func (d *Directory) Lookup(_ context.Context, id string) (domain.IdentityInfo, error) {
	ident, err := d.view.Identity(id)
	if errors.Is(err, identity.ErrNotFound) {
		return domain.IdentityInfo{ID: id, Kind: domain.KindUnknown}, nil
	}
	if err != nil {
		return domain.IdentityInfo{}, fmt.Errorf("reading identity %q: %w", id, err)
	}

	return domain.IdentityInfo{ID: id, Kind: domain.Kind(ident.Kind),
		Status: string(ident.Status), Known: true}, nil
}

// ActiveOperators implements app.Directory.
func (d *Directory) ActiveOperators(context.Context) ([]string, error) {
	if err := d.view.Fresh(); err != nil {
		return nil, fmt.Errorf("listing operators: %w", err)
	}
	var ops []string
	for _, ident := range d.view.List() {
		if ident.Kind == identity.KindOperator && ident.Active() {
			ops = append(ops, ident.ID)
		}
	}

	return ops, nil
}
