package app

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/nodexsec/nodex/libs/authz"
)

// callerGrantTTL bounds how long an allowed policy/decide authorization of a
// caller is reused. A policy or role change starts a new engine revision,
// which misses the cache at once. The TTL bounds the reuse across the edge
// of a permission's time window.
const callerGrantTTL = time.Second

// grantCache remembers callers recently allowed to ask for decisions, so
// that the hot path of a remote decision evaluates the policy once, not
// twice. Denials are never cached.
type grantCache struct {
	mu      sync.Mutex
	expires map[string]time.Time
}

func grantKey(c Caller, revision string) string {
	return revision + "\x00" + c.ID + "\x00" + c.Kind + "\x00" + strings.Join(c.Roles, "\x00")
}

func (g *grantCache) allowed(key string, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()

	exp, ok := g.expires[key]

	return ok && now.Before(exp)
}

func (g *grantCache) add(key string, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()

	if g.expires == nil || len(g.expires) > 10_000 {
		// Dropping everything is cheaper than tracking the oldest entry,
		// and a miss only costs one evaluation.
		g.expires = map[string]time.Time{}
	}
	g.expires[key] = now.Add(callerGrantTTL)
}

type remoteCallerKey struct{}

// WithRemoteCaller marks ctx as a decision made for the remote caller id
// rather than to authorize a request, so that its audit event can say so.
func WithRemoteCaller(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, remoteCallerKey{}, id)
}

// RemoteCaller returns the caller set by [WithRemoteCaller], if any.
func RemoteCaller(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(remoteCallerKey{}).(string)

	return id, ok
}

// Decide decides in for a remote caller, who must hold policy/decide. The
// input is decided exactly as libs/authz decides it locally. An evaluation
// error becomes a denial in the reply, not an error.
func (s *Service) Decide(ctx context.Context, c Caller, in authz.Input) (authz.Decision, error) {
	now := s.d.Now()
	key := grantKey(c, s.d.Engine.Revision())
	if !s.grants.allowed(key, now) {
		if err := s.authorize(ctx, c, "decide", ""); err != nil {
			return authz.Decision{}, err
		}
		s.grants.add(key, now)
	}

	d, err := s.d.Engine.Decide(WithRemoteCaller(ctx, c.ID), in)
	if err != nil {
		s.log.DebugContext(ctx, "decision denied with an error", "decision_id", d.ID,
			"identity", c.ID, "error", err)
	}

	return d, nil
}
