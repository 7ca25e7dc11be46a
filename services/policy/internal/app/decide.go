package app

import (
	"context"

	"github.com/nodexsec/nodex/libs/authz"
)

// Decide answers a remote decision request. The caller must hold
// policy/decide; the input is then decided exactly as libs/authz decides it
// locally, and an evaluation error is a denial in the reply, not an error.
func (s *Service) Decide(ctx context.Context, c Caller, in authz.Input) (authz.Decision, error) {
	if err := s.authorize(ctx, c, "decide", ""); err != nil {
		return authz.Decision{}, err
	}

	d, err := s.d.Engine.Decide(ctx, in)
	if err != nil {
		s.log.DebugContext(ctx, "decision denied with an error", "decision_id", d.ID,
			"identity", c.ID, "error", err)
	}

	return d, nil
}
