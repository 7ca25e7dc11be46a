// Package ports connects the incident use cases to NATS: the durable
// consumer of threats and the operator's request subjects, both over
// libs/bus so that every message is authenticated.
package ports

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/logx"
	"github.com/nodexsec/nodex/services/incident/internal/app"
	"github.com/nodexsec/nodex/services/incident/internal/domain"
)

// ThreatSubjectPrefix starts every threat subject; the last token is the
// type in lower case.
const ThreatSubjectPrefix = "nodex.v1.threats."

// MonitorRole is the only role whose threats the service accepts.
const MonitorRole = "service:monitor"

// Threats handles the messages of the incident-threats consumer.
type Threats struct {
	svc *app.Service
	log *slog.Logger
}

// NewThreats returns the threat handler.
func NewThreats(svc *app.Service, log *slog.Logger) *Threats {
	if svc == nil || log == nil {
		panic("ports: NewThreats needs a service and a logger")
	}

	return &Threats{svc: svc, log: log.With(logx.KeyComponent, "threats")}
}

// Handle implements bus.StreamHandler. A threat from anyone but monitor, a
// body that does not decode or validate, and a type that differs from the
// subject are terminated as poison: no retry can make them valid. Other
// failures nak the message, so it is retried after the consumer's delay.
func (t *Threats) Handle(ctx context.Context, m *bus.Message) error {
	log := t.log.With(logx.KeyMsgID, m.ID, logx.KeySubject, m.Subject, "sender", m.Sender)
	if !slices.Contains(m.SenderRoles, MonitorRole) {
		log.ErrorContext(ctx, "threat from a sender without the monitor role")

		return fmt.Errorf("%w: threat from %q, which lacks role %s", bus.ErrPoison, m.Sender,
			MonitorRole)
	}
	var th domain.Threat
	if err := m.Decode(&th); err != nil {
		log.ErrorContext(ctx, "threat body invalid", logx.KeyError, err)

		return fmt.Errorf("%w: decoding threat: %w", bus.ErrPoison, err)
	}
	token := strings.TrimPrefix(m.Subject, ThreatSubjectPrefix)
	if !strings.EqualFold(token, th.Type) {
		log.ErrorContext(ctx, "threat type differs from its subject", "type", th.Type)

		return fmt.Errorf("%w: threat type %q on subject %s", bus.ErrPoison, th.Type, m.Subject)
	}
	id, err := t.svc.HandleThreat(ctx, &th)
	if errors.Is(err, domain.ErrInvalidThreat) {
		log.ErrorContext(ctx, "threat rejected", logx.KeyError, err)

		return fmt.Errorf("%w: %w", bus.ErrPoison, err)
	}
	if err != nil {
		log.WarnContext(ctx, "threat not processed, will retry", logx.KeyIncidentID, id,
			logx.KeyAttempt, m.Delivered, logx.KeyError, err)

		return err
	}

	return nil
}
