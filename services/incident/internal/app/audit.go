package app

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/google/uuid"

	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/logx"
	"github.com/nodexsec/nodex/services/incident/internal/domain"
)

// auditNamespace derives stable event ids from (incident id, history seq), so
// an entry published twice after a crash carries one id and consumers that
// deduplicate by event id count it once.
var auditNamespace = uuid.MustParse("5b0c2f5e-8f55-4c1a-9d86-0f1f6f3c1d2e")

// flushAudit publishes the incident's unaudited history entries as security
// events, then records how far it got. A failure leaves the entries for the
// next flush, and the error is returned so the caller's message is retried.
func (s *Service) flushAudit(ctx context.Context, inc *domain.Incident, rev uint64) error {
	pending := inc.Unaudited()
	if len(pending) == 0 {
		return nil
	}
	for _, e := range pending {
		if err := s.d.Auditor.PublishSync(ctx, s.auditEvent(inc, e)); err != nil {
			s.log.ErrorContext(ctx, "audit event not persisted", logx.KeyIncidentID, inc.ID,
				"seq", e.Seq, logx.KeyError, err)

			return fmt.Errorf("auditing incident %s entry %d: %w", inc.ID, e.Seq, err)
		}
	}
	last := pending[len(pending)-1].Seq
	for range maxCASAttempts {
		inc.AuditedThrough = max(inc.AuditedThrough, last)
		_, err := s.d.Store.Update(ctx, inc, rev)
		if !errors.Is(err, ErrConflict) {
			return err
		}
		// Another writer stored a newer revision; it flushes its own entries,
		// and this loop only advances the mark on the fresh copy.
		fresh, freshRev, err := s.d.Store.Get(ctx, inc.ID)
		if err != nil {
			return fmt.Errorf("reloading incident %s: %w", inc.ID, err)
		}
		if fresh.AuditedThrough >= last {
			return nil
		}
		inc, rev = fresh, freshRev
	}

	return nil
}

// auditEvent turns a history entry into the security event
// "incident.<kind>". Failed steps are high severity so that monitor and
// operators see a containment that did not hold.
func (s *Service) auditEvent(inc *domain.Incident, e domain.Entry) events.SecurityEvent {
	ev := events.SecurityEvent{
		ID:       uuid.NewSHA1(auditNamespace, []byte(inc.ID+"/"+strconv.Itoa(e.Seq))).String(),
		Type:     "incident." + e.Kind,
		Time:     e.At,
		Action:   e.Kind,
		Resource: "incident:" + inc.ID,
		Subject:  actorIdentity(e.Actor),
		Status:   events.StatusSuccess,
		Severity: string(inc.Severity),
		Metadata: map[string]string{
			"incident_id": inc.ID, "incident_type": string(inc.Type),
			"state": string(inc.State), "identity": inc.Identity.ID,
			"seq": strconv.Itoa(e.Seq), "detail": truncate(e.Detail, events.MaxFieldBytes),
		},
	}
	if e.ActionID != "" {
		ev.Metadata["action_id"] = e.ActionID
	}
	if e.Failed {
		ev.Status, ev.Severity = events.StatusFailure, events.SeverityHigh
	}
	if ev.Severity == "" {
		ev.Severity = events.SeverityInfo
	}

	return ev
}

// actorIdentity maps the service's own actor name to its identity id.
func actorIdentity(actor string) string {
	if actor == domain.ServiceActor {
		return "incident"
	}

	return actor
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}

	return s[:n-3] + "..."
}
