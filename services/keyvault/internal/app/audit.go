package app

import (
	"context"
	"errors"
	"strconv"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/services/keyvault/internal/domain"
)

// Metadata keys of keyvault events.
const (
	metaProvider   = "provider"
	metaVersion    = "version"
	metaPurpose    = "purpose"
	metaDecisionID = "decision_id"
	metaReason     = "reason"
	metaKEKVersion = "kek_version"
	// metaDisableReason is the free-text reason of a disable request;
	// metaReason is the coded error name of a failure.
	metaDisableReason = "disable_reason"
	// metaThreatHint names the threat type a detection rule should raise,
	// such as "api_abuse" for an exceeded rate limit or quota.
	metaThreatHint = "threat_hint"
)

// auditEvent is one operation's audit record before it is sent.
type auditEvent struct {
	action   string
	name     string
	caller   Caller
	severity string
	err      error // nil for success
	meta     map[string]string
}

func (a auditEvent) securityEvent() events.SecurityEvent {
	ev := events.SecurityEvent{
		Type:     "keyvault." + a.action,
		Action:   a.action,
		Subject:  a.caller.ID,
		Status:   events.StatusSuccess,
		Severity: a.severity,
		Metadata: a.meta,
	}
	if a.name != "" {
		ev.Resource = "key:" + a.name
	}
	if ev.Severity == "" {
		ev.Severity = events.SeverityInfo
	}
	if a.err != nil {
		ev.Status = events.StatusFailure
		if ev.Metadata == nil {
			ev.Metadata = map[string]string{}
		}
		// Only the coded error's name goes into the event: causes can hold
		// details that are not meant for every event reader.
		ev.Metadata[metaReason] = errs.From(a.err).Name
	}

	return ev
}

// audit persists the event and returns [errs.AuditUnavailable] when it
// cannot, so the caller aborts the operation.
func (s *Service) audit(ctx context.Context, a auditEvent) error {
	if err := s.d.Audit.PublishSync(ctx, a.securityEvent()); err != nil {
		s.log.ErrorContext(ctx, "audit event not persisted",
			"event_type", "keyvault."+a.action, "key_id", a.name, "identity", a.caller.ID,
			"error", err)

		return errs.AuditUnavailable.Wrap(err)
	}

	return nil
}

// auditFailure records a failed operation and returns its error. When the
// event is lost, the result also wraps [errs.AuditUnavailable], but the
// reply keeps the operation's own coded error, which errs.From finds first.
func (s *Service) auditFailure(ctx context.Context, a auditEvent) error {
	if a.severity == "" {
		a.severity = events.SeverityLow
	}
	if err := s.audit(ctx, a); err != nil {
		return errors.Join(a.err, err)
	}

	return a.err
}

// authorize requests a policy decision and audits a denial. The reply
// to a denial never reveals whether the key exists.
func (s *Service) authorize(ctx context.Context, c Caller, action string, t target,
	purpose string) (authz.Decision, error) {
	name := t.name
	in := authz.Input{
		Subject:  authz.Subject{ID: c.ID, Kind: c.Kind, Roles: c.Roles, Status: c.Status},
		Action:   action,
		Resource: authz.Resource{Type: "key", ID: name, Labels: t.labels},
		Context:  authz.Context{Time: s.d.Now(), Purpose: purpose, Provider: t.provider},
	}
	d, err := s.d.Decider.Decide(ctx, in)
	if err != nil {
		s.log.WarnContext(ctx, "policy decision failed, denying",
			"identity", c.ID, "key_id", name, "error", err)
	}
	if err == nil && d.Allow {
		return d, nil
	}

	meta := map[string]string{metaDecisionID: d.ID}
	if t.provider != "" {
		meta[metaProvider] = t.provider
	}
	if purpose != "" {
		meta[metaPurpose] = purpose
	}

	return d, s.auditFailure(ctx, auditEvent{
		action: action, name: name, caller: c, severity: events.SeverityMedium,
		err: errs.AccessDenied, meta: meta,
	})
}

// target is the key an operation concerns, as the policy input describes it. Name is
// empty for operations on the whole keyvault, such as list.
type target struct {
	name     string
	provider string
	labels   map[string]string
}

func keyTarget(k *domain.Key) target {
	return target{name: k.Name, provider: k.Provider, labels: k.Labels}
}

func versionMeta(provider string, version int) map[string]string {
	return map[string]string{metaProvider: provider, metaVersion: strconv.Itoa(version)}
}

// codedError maps domain errors to the coded errors replies carry. Every
// domain error text is safe to show: none contains a key value.
func codedError(err error) error {
	var coded *errs.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &coded):
		return err
	case errors.Is(err, domain.ErrInvalidName):
		return errs.KeyNameInvalid.Wrap(err)
	case errors.Is(err, domain.ErrMalformedKey):
		return errs.KeyFormatInvalid.Withf("%s", err.Error()).Wrap(err)
	case errors.Is(err, domain.ErrUnknownProvider):
		return errs.ProviderUnknown.Withf("%s", err.Error()).Wrap(err)
	case errors.Is(err, domain.ErrKeyNotFound), errors.Is(err, domain.ErrVersionNotFound):
		return errs.NotFound.Withf("%s", err.Error()).Wrap(err)
	case errors.Is(err, domain.ErrVersionInactive):
		return errs.NotFound.Withf("%s", err.Error()).Wrap(err)
	case errors.Is(err, domain.ErrKeyExists):
		return errs.Conflict.Withf("%s; use rotate to add a version", err.Error()).Wrap(err)
	case errors.Is(err, domain.ErrConflict):
		return errs.Conflict.Wrap(err)
	default:
		return errs.Internal.Wrap(err)
	}
}
