package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/nodexsec/nodex/libs/logx"
	"github.com/nodexsec/nodex/services/incident/internal/domain"
)

// Advance moves the incident as far as the service may go on its own: it
// assesses an open incident, plans the playbook's actions, runs those that
// need no approval and marks an assessed incident contained once every
// action is done. Calling it again is safe; a restart calls it for every
// incident that is not closed.
func (s *Service) Advance(ctx context.Context, id string) error {
	inc, err := s.mutate(ctx, id, func(inc *domain.Incident) error {
		if inc.State != domain.StateOpen {
			return errUnchanged
		}
		inc.Assess()

		return inc.Move(domain.StateAssessed, domain.ServiceActor,
			fmt.Sprintf("scored %d (%s)", inc.Score, inc.Severity), s.now())
	})
	if err != nil {
		return err
	}
	if !containable(inc.State) {
		return nil
	}
	operators, err := s.d.Directory.ActiveOperators(ctx)
	if err != nil {
		return fmt.Errorf("listing active operators: %w", err)
	}
	inc, err = s.mutate(ctx, id, func(inc *domain.Incident) error {
		// A joined threat can raise the score, so it is computed again.
		score, severity, entries := inc.Score, inc.Severity, len(inc.History)
		if inc.Assess() != severity {
			inc.Note(s.now(), domain.ServiceActor, "reassessed", fmt.Sprintf(
				"severity %s -> %s, score %d -> %d", severity, inc.Severity, score, inc.Score))
		}
		inc.Plan(s.policy.Playbooks[inc.Type], s.policy.Escalation, operators, s.now())
		if inc.Score == score && len(inc.History) == entries {
			return errUnchanged
		}

		return nil
	})
	if err != nil {
		return err
	}
	if err := s.runActions(ctx, inc, domain.ServiceActor, false); err != nil {
		return err
	}

	return s.markContained(ctx, id, domain.ServiceActor, "every containment action is done")
}

// containable reports whether actions may run in state st: from assessment
// until the investigation ends.
func containable(st domain.State) bool {
	return st == domain.StateAssessed || st == domain.StateContained ||
		st == domain.StateInvestigating
}

// runActions runs the actions that are pending, or failed with attempts
// left. When operator is true the caller is an operator, and failed actions
// are retried whatever their attempts. Each outcome is stored before the
// next action runs.
func (s *Service) runActions(ctx context.Context, inc *domain.Incident, actor string,
	operator bool,
) error {
	var errsSeen []error
	for _, a := range inc.Actions {
		retry := a.Status == domain.StatusFailed && (operator || a.Attempts < s.policy.MaxAttempts)
		if a.Status != domain.StatusPending && !retry {
			continue
		}
		if err := s.runAction(ctx, inc, a, actor); err != nil {
			errsSeen = append(errsSeen, err)
		}
	}

	return errors.Join(errsSeen...)
}

// runAction performs one action and records its outcome. A failed action is
// logged at Error level and audited as a failure. The returned error comes
// only from the store or the audit, because a failed containment is an
// outcome to record, not a reason to redeliver the threat.
func (s *Service) runAction(ctx context.Context, inc *domain.Incident, a domain.Action,
	actor string,
) error {
	req := ActionRequest{
		IncidentID: inc.ID, Type: inc.Type, Target: a.Target, Identity: inc.Identity.ID,
		Actor: actor, Reason: fmt.Sprintf("incident %s (%s, %s)", inc.ID, inc.Type, inc.Severity),
	}
	if a.Expiry > 0 {
		req.ExpiresAt = s.now().Add(a.Expiry)
	}
	result, callErr := s.perform(ctx, a.Kind, req)
	if callErr != nil {
		s.log.ErrorContext(ctx, "containment action failed", logx.KeyIncidentID, inc.ID,
			"action_id", a.ID, "action", a.Kind, "target", a.Target,
			logx.KeyAttempt, a.Attempts+1, logx.KeyError, callErr)
	} else {
		s.log.InfoContext(ctx, "containment action done", logx.KeyIncidentID, inc.ID,
			"action_id", a.ID, "action", a.Kind, "target", a.Target)
	}
	_, err := s.mutate(ctx, inc.ID, func(fresh *domain.Incident) error {
		fa, err := fresh.Action(a.ID)
		if err != nil {
			return err
		}
		fresh.RecordAttempt(fa, actor, result, callErr, s.now())
		switch {
		case callErr != nil:
			fresh.AddFollowUp(s.now(), fmt.Sprintf("%s %s %s failed; fix the cause and run "+
				"contain", fa.ID, fa.Kind, fa.Target))
		case fa.Kind == domain.ActDisableKeyVersion:
			// A provider key cannot be replaced offline, so rotation is the
			// operator's step.
			fresh.AddFollowUp(s.now(), fmt.Sprintf("rotate key %s at its provider and store "+
				"the new value with `nodex keys rotate`", fa.Target))
		}

		return nil
	})

	return err
}

// perform dispatches one action kind to the Containment port.
func (s *Service) perform(ctx context.Context, kind domain.ActionKind, req ActionRequest,
) (string, error) {
	c := s.d.Containment
	switch kind {
	case domain.ActSuspendIdentity:
		return c.SuspendIdentity(ctx, req)
	case domain.ActSuspendKeyAccess:
		return c.SuspendKeyAccess(ctx, req)
	case domain.ActTightenRateLimit:
		return c.TightenRateLimit(ctx, req)
	case domain.ActRevokeBundle:
		return c.RevokeBundle(ctx, req)
	case domain.ActKillSandboxes:
		return c.KillSandboxes(ctx, req)
	case domain.ActDisableKeyVersion:
		return c.DisableKeyVersion(ctx, req)
	case domain.ActQuarantineIdentity:
		return c.Quarantine(ctx, req)
	case domain.ActAlert:
		return c.Alert(ctx, req)
	default:
		return "", fmt.Errorf("unknown action kind %q", kind)
	}
}

// undo dispatches the lift of one action kind.
func (s *Service) undo(ctx context.Context, kind domain.ActionKind, req ActionRequest,
) (string, error) {
	c := s.d.Containment
	switch kind {
	case domain.ActSuspendIdentity:
		return c.UnsuspendIdentity(ctx, req)
	case domain.ActSuspendKeyAccess:
		return c.RestoreKeyAccess(ctx, req)
	case domain.ActTightenRateLimit:
		return c.RestoreRateLimit(ctx, req)
	case domain.ActQuarantineIdentity:
		return c.ReleaseQuarantine(ctx, req)
	default:
		return "", fmt.Errorf("%w: %s cannot be lifted", domain.ErrActionState, kind)
	}
}

// markContained moves an assessed incident to contained when every action
// is done. It changes nothing otherwise. The service never marks an incident
// without actions contained on its own, because then the playbook found no
// target, for example when the threat names only a transport origin. An
// operator's contain command does.
//
// It logs the move once. The periodic resume sweep calls it again for
// incidents that are contained already, and those calls log nothing.
func (s *Service) markContained(ctx context.Context, id, actor, reason string) error {
	moved := false
	_, err := s.mutate(ctx, id, func(inc *domain.Incident) error {
		// A retried compare-and-set runs the callback again on fresh state.
		moved = false
		if inc.State != domain.StateAssessed || !inc.Contained() {
			return errUnchanged
		}
		if actor == domain.ServiceActor && len(inc.Actions) == 0 {
			return errUnchanged
		}
		if err := inc.Move(domain.StateContained, actor, reason, s.now()); err != nil {
			return err
		}
		moved = true

		return nil
	})
	if err == nil && moved {
		s.log.InfoContext(ctx, "incident contained", logx.KeyIncidentID, id)
	}

	return err
}

// lift undoes one done action and records the outcome. A failed lift stays
// recorded with its error, and the expiry sweep tries it again.
func (s *Service) lift(ctx context.Context, inc *domain.Incident, a domain.Action,
	actor, reason string,
) error {
	if a.Status != domain.StatusDone || !a.Kind.Liftable() {
		return fmt.Errorf("%w: action %s (%s) is %s; only a done suspension, restriction "+
			"or quarantine can be lifted", domain.ErrActionState, a.ID, a.Kind, a.Status)
	}
	req := ActionRequest{IncidentID: inc.ID, Type: inc.Type, Target: a.Target,
		Identity: inc.Identity.ID, Actor: actor, Reason: reason}
	result, callErr := s.undo(ctx, a.Kind, req)
	if callErr != nil {
		s.log.ErrorContext(ctx, "containment lift failed", logx.KeyIncidentID, inc.ID,
			"action_id", a.ID, "action", a.Kind, "target", a.Target, logx.KeyError, callErr)
	} else {
		s.log.InfoContext(ctx, "containment lifted", logx.KeyIncidentID, inc.ID,
			"action_id", a.ID, "action", a.Kind, "target", a.Target, "actor", actor)
	}
	_, err := s.mutate(ctx, inc.ID, func(fresh *domain.Incident) error {
		fa, err := fresh.Action(a.ID)
		if err != nil {
			return err
		}
		fresh.RecordLift(fa, actor, reason, result, callErr, s.now())

		return nil
	})
	if err != nil {
		return err
	}
	if callErr != nil {
		return fmt.Errorf("%w: lifting %s %s: %w", ErrActionFailed, a.Kind, a.Target, callErr)
	}

	return nil
}

// ErrActionFailed marks a containment call or lift that the target refused
// or could not perform; the incident records it either way.
var ErrActionFailed = errors.New("incident: action failed")
