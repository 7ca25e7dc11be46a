package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nodexsec/nodex/libs/logx"
	"github.com/nodexsec/nodex/services/incident/internal/domain"
)

// Verb is an operator command on one incident.
type Verb string

// The operator verbs of nodex.v1.incident.update.
const (
	// VerbAssess scores an open incident and moves it to assessed.
	VerbAssess Verb = "assess"
	// VerbContain approves every action awaiting approval, retries failed
	// ones and moves an assessed incident to contained once all are done.
	VerbContain Verb = "contain"
	// VerbApprove approves one action (ActionID) or, without one, all.
	VerbApprove Verb = "approve"
	// VerbAck acknowledges a contained incident: the operator becomes its
	// assignee, it moves to investigating and its events are gathered.
	VerbAck Verb = "ack"
	// VerbInvestigate gathers the events again, for example after more
	// threats joined.
	VerbInvestigate Verb = "investigate"
	// VerbRemediate moves an investigating incident to remediated.
	VerbRemediate Verb = "remediate"
	// VerbClose moves a remediated incident to closed.
	VerbClose Verb = "close"
	// VerbReopen moves a closed incident back to open.
	VerbReopen Verb = "reopen"
	// VerbLift undoes one done action (ActionID), such as a suspension.
	VerbLift Verb = "lift"
	// VerbNote adds the reason text to the history.
	VerbNote Verb = "note"
	// VerbResolveFollowUp marks one follow-up (FollowUpID) done.
	VerbResolveFollowUp Verb = "resolve_follow_up"
)

// Verbs lists every operator verb.
var Verbs = []Verb{VerbAssess, VerbContain, VerbApprove, VerbAck, VerbInvestigate,
	VerbRemediate, VerbClose, VerbReopen, VerbLift, VerbNote, VerbResolveFollowUp}

// ErrInvalidRequest marks an operator request with a missing or wrong field.
var ErrInvalidRequest = errors.New("incident: invalid request")

// UpdateRequest is the body of nodex.v1.incident.update.
type UpdateRequest struct {
	ID         string `json:"id"`
	Verb       Verb   `json:"verb"`
	Reason     string `json:"reason"`
	ActionID   string `json:"action_id,omitempty"`
	FollowUpID string `json:"follow_up_id,omitempty"`
}

// MaxReasonBytes bounds the reason an operator gives.
const MaxReasonBytes = 1024

// Validate checks the request's fields.
func (r *UpdateRequest) Validate() error {
	switch {
	case r.ID == "":
		return fmt.Errorf("%w: id is missing", ErrInvalidRequest)
	case !slices.Contains(Verbs, r.Verb):
		return fmt.Errorf("%w: verb %q is not one of %v", ErrInvalidRequest, r.Verb, Verbs)
	case strings.TrimSpace(r.Reason) == "":
		return fmt.Errorf("%w: reason is missing; say why you %s incident %s",
			ErrInvalidRequest, r.Verb, r.ID)
	case len(r.Reason) > MaxReasonBytes:
		return fmt.Errorf("%w: reason is %d bytes, max %d", ErrInvalidRequest, len(r.Reason),
			MaxReasonBytes)
	case r.Verb == VerbLift && r.ActionID == "":
		return fmt.Errorf("%w: lift needs action_id", ErrInvalidRequest)
	case r.Verb == VerbResolveFollowUp && r.FollowUpID == "":
		return fmt.Errorf("%w: resolve_follow_up needs follow_up_id", ErrInvalidRequest)
	}

	return nil
}

// Update performs an operator's command. Actor is the authenticated
// operator's identity id. It returns the incident as stored afterwards.
func (s *Service) Update(ctx context.Context, actor string, req UpdateRequest,
) (*domain.Incident, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "operator command", logx.KeyIncidentID, req.ID, "verb", req.Verb,
		"actor", actor)
	switch req.Verb {
	case VerbContain, VerbApprove:
		return s.approve(ctx, actor, req)
	case VerbAck:
		return s.acknowledge(ctx, actor, req)
	case VerbInvestigate:
		return s.investigate(ctx, actor, req.ID)
	case VerbReopen:
		return s.reopen(ctx, actor, req)
	case VerbLift:
		return s.liftByOperator(ctx, actor, req)
	case VerbNote, VerbResolveFollowUp:
		return s.mutate(ctx, req.ID, func(inc *domain.Incident) error {
			return noteOrResolve(inc, actor, req, s)
		})
	default:
		return s.move(ctx, actor, req)
	}
}

// move performs the plain lifecycle steps: assess, remediate and close.
func (s *Service) move(ctx context.Context, actor string, req UpdateRequest,
) (*domain.Incident, error) {
	to := map[Verb]domain.State{
		VerbAssess: domain.StateAssessed, VerbRemediate: domain.StateRemediated,
		VerbClose: domain.StateClosed,
	}[req.Verb]
	inc, err := s.mutate(ctx, req.ID, func(inc *domain.Incident) error {
		if to == domain.StateAssessed {
			inc.Assess()
		}

		return inc.Move(to, actor, req.Reason, s.now())
	})
	if err != nil {
		return inc, err
	}
	if to == domain.StateClosed {
		err = s.d.Store.ReleaseOpen(ctx, inc.Type, inc.Identity.ID, inc.ID)
		if err != nil {
			return inc, fmt.Errorf("releasing open slot of incident %s: %w", inc.ID, err)
		}
	}
	if to == domain.StateAssessed {
		return inc, s.Advance(ctx, inc.ID)
	}

	return inc, nil
}

// approve approves actions awaiting approval and runs them with every
// failed action. Contain is only legal on an assessed incident, because it
// is the step to contained; approve works while containment still matters.
func (s *Service) approve(ctx context.Context, actor string, req UpdateRequest,
) (*domain.Incident, error) {
	inc, err := s.mutate(ctx, req.ID, func(inc *domain.Incident) error {
		if req.Verb == VerbContain && inc.State != domain.StateAssessed {
			return domain.CheckTransition(inc.ID, inc.State, domain.StateContained)
		}
		if !containable(inc.State) {
			return fmt.Errorf("%w: incident %s is %s; actions run only while it is assessed, "+
				"contained or investigating", domain.ErrActionState, inc.ID, inc.State)
		}

		return approveActions(inc, actor, req, s)
	})
	if err != nil {
		return inc, err
	}
	if err := s.runActions(ctx, inc, actor, true); err != nil {
		return inc, err
	}
	if err := s.markContained(ctx, inc.ID, actor, req.Reason); err != nil {
		return inc, err
	}
	inc, _, err = s.d.Store.Get(ctx, inc.ID)
	if err != nil {
		return nil, err
	}
	if req.Verb == VerbContain && inc.State != domain.StateContained {
		return inc, fmt.Errorf("%w: incident %s stays assessed: %s", ErrNotContained, inc.ID,
			strings.Join(openActions(inc), "; "))
	}

	return inc, nil
}

// ErrNotContained marks a contain command after which some action is still
// not done.
var ErrNotContained = errors.New("incident: containment incomplete")

// ErrSelfApproval marks an operator approving the containment of their own
// identity, which would let one stolen operator credential lift or steer
// its own containment.
var ErrSelfApproval = errors.New("incident: self-approval")

func approveActions(inc *domain.Incident, actor string, req UpdateRequest, s *Service) error {
	found := false
	for i := range inc.Actions {
		a := &inc.Actions[i]
		if req.ActionID != "" && a.ID != req.ActionID {
			continue
		}
		found = true
		if a.Status != domain.StatusAwaitingApprove {
			if req.ActionID != "" && a.Status != domain.StatusFailed {
				return fmt.Errorf("%w: action %s is %s, not awaiting approval",
					domain.ErrActionState, a.ID, a.Status)
			}

			continue
		}
		if a.Target == actor || inc.Identity.ID == actor {
			return fmt.Errorf("%w: operator %s cannot approve action %s against their own "+
				"identity; another operator must", ErrSelfApproval, actor, a.ID)
		}
		a.Status, a.ApprovedBy = domain.StatusPending, actor
		inc.Note(s.now(), actor, "approval", fmt.Sprintf("%s %s %s approved: %s", a.ID, a.Kind,
			a.Target, req.Reason))
	}
	if req.ActionID != "" && !found {
		_, err := inc.Action(req.ActionID)

		return err
	}

	return nil
}

func openActions(inc *domain.Incident) []string {
	var out []string
	for _, a := range inc.Actions {
		switch a.Status {
		case domain.StatusFailed:
			out = append(out, fmt.Sprintf("%s %s %s failed: %s", a.ID, a.Kind, a.Target, a.Error))
		case domain.StatusAwaitingApprove:
			out = append(out, fmt.Sprintf("%s %s %s awaits approval: %s", a.ID, a.Kind, a.Target,
				a.ApprovalReason))
		case domain.StatusPending:
			out = append(out, fmt.Sprintf("%s %s %s is pending", a.ID, a.Kind, a.Target))
		}
	}

	return out
}

// acknowledge moves a contained incident to investigating with the operator
// as assignee, then gathers its events.
func (s *Service) acknowledge(ctx context.Context, actor string, req UpdateRequest,
) (*domain.Incident, error) {
	_, err := s.mutate(ctx, req.ID, func(inc *domain.Incident) error {
		if err := inc.Move(domain.StateInvestigating, actor, req.Reason, s.now()); err != nil {
			return err
		}
		inc.Assignee = actor

		return nil
	})
	if err != nil {
		return nil, err
	}

	return s.investigate(ctx, actor, req.ID)
}

// reopen moves a closed incident back to open, claims the open slot again,
// and lets the service assess it. It fails if another incident of the same
// type and identity opened meanwhile; join that one instead.
func (s *Service) reopen(ctx context.Context, actor string, req UpdateRequest,
) (*domain.Incident, error) {
	inc, _, err := s.d.Store.Get(ctx, req.ID)
	if err != nil {
		return nil, err
	}
	if err := domain.CheckTransition(inc.ID, inc.State, domain.StateOpen); err != nil {
		return inc, err
	}
	holder, err := s.d.Store.ClaimOpen(ctx, inc.Type, inc.Identity.ID, inc.ID)
	if err != nil {
		if errors.Is(err, ErrConflict) && holder != inc.ID {
			return inc, fmt.Errorf("%w: incident %s is already open for %s and %s; work on "+
				"that one", ErrConflict, holder, inc.Type, inc.Identity.ID)
		}
		if !errors.Is(err, ErrConflict) {
			return inc, fmt.Errorf("claiming open slot for incident %s: %w", inc.ID, err)
		}
	}
	inc, err = s.mutate(ctx, req.ID, func(inc *domain.Incident) error {
		return inc.Move(domain.StateOpen, actor, req.Reason, s.now())
	})
	if err != nil {
		return inc, err
	}

	return inc, s.Advance(ctx, inc.ID)
}

// liftByOperator undoes one action on an operator's command.
func (s *Service) liftByOperator(ctx context.Context, actor string, req UpdateRequest,
) (*domain.Incident, error) {
	inc, _, err := s.d.Store.Get(ctx, req.ID)
	if err != nil {
		return nil, err
	}
	a, err := inc.Action(req.ActionID)
	if err != nil {
		return inc, err
	}
	if a.Target == actor {
		return inc, fmt.Errorf("%w: operator %s cannot lift action %s against their own "+
			"identity; another operator must", ErrSelfApproval, actor, a.ID)
	}
	if err := s.lift(ctx, inc, *a, actor, req.Reason); err != nil {
		return inc, err
	}
	inc, _, err = s.d.Store.Get(ctx, req.ID)

	return inc, err
}

func noteOrResolve(inc *domain.Incident, actor string, req UpdateRequest, s *Service) error {
	if req.Verb == VerbNote {
		inc.Note(s.now(), actor, "note", req.Reason)

		return nil
	}
	for i := range inc.FollowUps {
		if inc.FollowUps[i].ID == req.FollowUpID {
			inc.FollowUps[i].Done = true
			inc.Note(s.now(), actor, "follow_up_done", req.FollowUpID+": "+req.Reason)

			return nil
		}
	}

	return fmt.Errorf("%w: incident %s has no follow-up %q", ErrNotFound, inc.ID,
		req.FollowUpID)
}
