package app

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/nodexsec/nodex/libs/logx"
	"github.com/nodexsec/nodex/services/incident/internal/domain"
)

// ListFilter selects incidents for nodex.v1.incident.list. Empty fields
// match everything.
type ListFilter struct {
	State    domain.State `json:"state,omitempty"`
	Type     domain.Type  `json:"type,omitempty"`
	Identity string       `json:"identity,omitempty"`
	// Open keeps only incidents that are not closed.
	Open bool `json:"open,omitempty"`
}

// Get returns one incident.
func (s *Service) Get(ctx context.Context, id string) (*domain.Incident, error) {
	inc, _, err := s.d.Store.Get(ctx, id)
	if err != nil {
		return nil, err
	}

	return inc, nil
}

// List returns the summaries of the matching incidents, most recently
// updated first.
func (s *Service) List(ctx context.Context, f ListFilter) ([]domain.Summary, error) {
	all, err := s.d.Store.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing incidents: %w", err)
	}
	out := []domain.Summary{}
	for _, inc := range all {
		if (f.State != "" && inc.State != f.State) || (f.Type != "" && inc.Type != f.Type) ||
			(f.Identity != "" && inc.Identity.ID != f.Identity) ||
			(f.Open && inc.State == domain.StateClosed) {
			continue
		}
		out = append(out, inc.Summarize())
	}
	slices.SortFunc(out, func(a, b domain.Summary) int { return b.UpdatedAt.Compare(a.UpdatedAt) })

	return out, nil
}

// Report returns the report of one incident and its Markdown rendering.
func (s *Service) Report(ctx context.Context, id string) (domain.Report, string, error) {
	inc, err := s.Get(ctx, id)
	if err != nil {
		return domain.Report{}, "", err
	}
	r := inc.BuildReport(s.now())

	return r, r.Markdown(), nil
}

// Revisions returns the stored revisions of one incident.
func (s *Service) Revisions(ctx context.Context, id string) ([]Revision, error) {
	return s.d.Store.Revisions(ctx, id)
}

// investigate gathers the events of the incident's identity, its trace ids
// and its evidence within the window around its threats, and stores them as
// the timeline. Gathering replaces the previous timeline, so running it
// again only adds what arrived since.
func (s *Service) investigate(ctx context.Context, actor, id string) (*domain.Incident, error) {
	inc, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	q := s.eventQuery(inc)
	rows, err := s.gather(ctx, q)
	if err != nil {
		return inc, fmt.Errorf("gathering events of incident %s: %w", id, err)
	}
	for i := range rows {
		rows[i].Evidence = slices.Contains(inc.Evidence, rows[i].EventID)
	}

	return s.mutate(ctx, id, func(inc *domain.Incident) error {
		inc.Timeline = rows
		missing := 0
		for _, ev := range inc.Evidence {
			if !slices.ContainsFunc(rows, func(r domain.TimelineRow) bool { return r.EventID == ev }) {
				missing++
			}
		}
		detail := fmt.Sprintf("gathered %d events from %s to %s", len(rows),
			q.Since.Format(time.RFC3339), q.Until.Format(time.RFC3339))
		if missing > 0 {
			detail += fmt.Sprintf("; %d evidence events not found (expired or outside the "+
				"window)", missing)
		}
		inc.Note(s.now(), actor, "investigation", detail)

		return nil
	})
}

// gather reads the events of q, then reads again with the trace ids of the
// evidence events added, so that events other parties emitted for the same
// requests join the timeline.
func (s *Service) gather(ctx context.Context, q EventQuery) ([]domain.TimelineRow, error) {
	rows, err := s.d.Events.Gather(ctx, q)
	if err != nil {
		return nil, err
	}
	added := false
	for _, r := range rows {
		if r.TraceID != "" && slices.Contains(q.EventIDs, r.EventID) &&
			!slices.Contains(q.TraceIDs, r.TraceID) {
			q.TraceIDs = append(slices.Clip(q.TraceIDs), r.TraceID)
			added = true
		}
	}
	if !added {
		return rows, nil
	}

	return s.d.Events.Gather(ctx, q)
}

func (s *Service) eventQuery(inc *domain.Incident) EventQuery {
	first, last := inc.OpenedAt, inc.UpdatedAt
	for _, t := range inc.Threats {
		if !t.FirstSeen.IsZero() && t.FirstSeen.Before(first) {
			first = t.FirstSeen
		}
		if t.LastSeen.After(last) {
			last = t.LastSeen
		}
	}

	return EventQuery{
		Identity: inc.Identity.ID, TraceIDs: inc.TraceIDs, EventIDs: inc.Evidence,
		Since: first.Add(-s.policy.WindowBefore), Until: last.Add(s.policy.WindowAfter),
		Limit: s.policy.TimelineLimit,
	}
}

// Resume advances every incident that is not closed and publishes audit
// entries a crash left behind. Run calls it at start and then periodically,
// so an incident interrupted mid-containment continues.
func (s *Service) Resume(ctx context.Context) error {
	// NOTE: every sweep reads every stored incident, closed ones included,
	// so its cost grows with the bucket. An index of open incidents would
	// bound it.
	all, err := s.d.Store.List(ctx)
	if err != nil {
		return fmt.Errorf("listing incidents: %w", err)
	}
	var firstErr error
	for _, inc := range all {
		if inc.State == domain.StateClosed && len(inc.Unaudited()) == 0 {
			continue
		}
		err := s.flushPending(ctx, inc.ID)
		if err == nil && inc.State != domain.StateClosed {
			err = s.Advance(ctx, inc.ID)
		}
		if err != nil {
			s.log.WarnContext(ctx, "resuming incident", logx.KeyIncidentID, inc.ID,
				logx.KeyError, err)
			firstErr = cmpErr(firstErr, err)
		}
	}

	return firstErr
}

func (s *Service) flushPending(ctx context.Context, id string) error {
	inc, rev, err := s.d.Store.Get(ctx, id)
	if err != nil {
		return err
	}

	return s.flushAudit(ctx, inc, rev)
}

// LiftExpired lifts every done action whose expiry has passed, and records
// each lift. An action whose earlier lift failed is tried again once
// Policy.LiftRetry has passed since that attempt.
func (s *Service) LiftExpired(ctx context.Context) error {
	all, err := s.d.Store.List(ctx)
	if err != nil {
		return fmt.Errorf("listing incidents: %w", err)
	}
	now := s.now()
	var firstErr error
	for _, inc := range all {
		for _, a := range inc.Actions {
			if a.Status != domain.StatusDone || a.ExpiresAt.IsZero() || a.ExpiresAt.After(now) {
				continue
			}
			if a.Lift != nil && a.Lift.Error != "" && now.Sub(a.Lift.At) < s.policy.LiftRetry {
				continue
			}
			err := s.lift(ctx, inc, a, domain.ServiceActor, "containment expired at "+
				a.ExpiresAt.Format(time.RFC3339))
			firstErr = cmpErr(firstErr, err)
		}
	}

	return firstErr
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}

	return err
}
