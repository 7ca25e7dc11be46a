package app

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/nodexsec/nodex/services/keyvault/api"
	"github.com/nodexsec/nodex/services/keyvault/internal/domain"
)

// List returns every key's metadata, never a value.
func (s *Service) List(ctx context.Context, c Caller, req api.ListRequest) (api.ListReply, error) {
	const action = "list"
	if _, err := s.authorize(ctx, c, action, target{provider: req.Provider}, ""); err != nil {
		return api.ListReply{}, err
	}
	keys, err := s.d.Store.ListKeys(ctx)
	if err != nil {
		return api.ListReply{}, codedError(err)
	}
	if err := s.audit(ctx, auditEvent{action: action, caller: c}); err != nil {
		return api.ListReply{}, err
	}

	out := api.ListReply{Keys: []api.KeyInfo{}}
	for _, k := range keys {
		if req.Provider != "" && k.Provider != req.Provider {
			continue
		}
		used, err := s.d.Store.LastUsed(ctx, k.Name)
		if err != nil {
			s.log.WarnContext(ctx, "last use not loaded", "key_id", k.Name, "error", err)
		}
		out.Keys = append(out.Keys, keyInfo(k, used, s.d.Now()))
	}
	slices.SortFunc(out.Keys, func(a, b api.KeyInfo) int { return strings.Compare(a.Name, b.Name) })

	return out, nil
}

func keyInfo(k *domain.Key, used, now time.Time) api.KeyInfo {
	info := api.KeyInfo{Name: k.Name, Provider: k.Provider, Labels: k.Labels, Created: k.Created,
		LastUsed: used}
	for _, v := range k.Versions {
		state := v.State
		// A grace version past its end is retired even before the sweep
		// rewrites the record.
		if state == domain.StateGrace && !now.Before(v.RetireAt) {
			state = domain.StateRetired
		}
		vi := api.VersionInfo{Number: v.Number, State: string(state), Created: v.Created}
		if state == domain.StateGrace {
			vi.RetireAt = v.RetireAt
		}
		if v.Sealed != nil {
			vi.KEKVersion = v.Sealed.KEKVersion
		}
		info.Versions = append(info.Versions, vi)
	}

	return info
}
