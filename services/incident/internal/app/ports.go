// Package app holds the incident use cases: turning threats into incidents,
// assessing and containing them, the operator's commands, expiry of
// containments, investigation and reports. It declares the ports it needs and
// never touches NATS itself.
package app

import (
	"context"
	"errors"
	"time"

	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/services/incident/internal/domain"
)

// Store errors that adapters return and the app branches on.
var (
	// ErrNotFound marks a missing incident or open-incident slot. Adapters
	// wrap it after the item, as in "incident inc-1 not found".
	ErrNotFound = errors.New("not found")
	// ErrConflict marks a compare-and-set that lost to a concurrent write.
	ErrConflict = errors.New("incident: revision conflict")
)

// Store keeps incidents with compare-and-set revisions, plus one "open slot"
// per (type, identity) that makes a second open incident for the same attack
// impossible even across replicas.
type Store interface {
	// Get returns the incident and its revision, or ErrNotFound. Every
	// error names the incident, so callers return it without adding the id.
	Get(ctx context.Context, id string) (*domain.Incident, uint64, error)
	// Create stores a new incident; ErrConflict if the id exists.
	Create(ctx context.Context, inc *domain.Incident) (uint64, error)
	// Update replaces the incident if its revision is still rev;
	// ErrConflict otherwise.
	Update(ctx context.Context, inc *domain.Incident, rev uint64) (uint64, error)
	// List returns every stored incident.
	List(ctx context.Context) ([]*domain.Incident, error)
	// Revisions returns every stored revision of one incident, oldest first,
	// as far as the store keeps them.
	Revisions(ctx context.Context, id string) ([]Revision, error)
	// ClaimOpen records id as the open incident of (typ, identity) unless
	// another one holds the slot, whose id it then returns with ErrConflict.
	ClaimOpen(ctx context.Context, typ domain.Type, identity, id string) (string, error)
	// OpenID returns the open incident of (typ, identity), or ErrNotFound.
	OpenID(ctx context.Context, typ domain.Type, identity string) (string, error)
	// ReleaseOpen frees the slot if id still holds it.
	ReleaseOpen(ctx context.Context, typ domain.Type, identity, id string) error
	// NextOffense increments and returns the number of incidents opened
	// for identity.
	NextOffense(ctx context.Context, identity string) (int, error)
	// RecordThreat stores that revision rev of threat threatID joined
	// incident id.
	RecordThreat(ctx context.Context, threatID, id string, rev int) error
	// ThreatIncident returns the incident and the highest revision recorded
	// for threatID, or ErrNotFound.
	ThreatIncident(ctx context.Context, threatID string) (string, int, error)
}

// Revision is one stored version of an incident.
type Revision struct {
	Revision uint64    `json:"revision"`
	Created  time.Time `json:"created"`
	State    string    `json:"state"`
	Entries  int       `json:"entries"`
}

// ActionRequest is the input of one containment call.
type ActionRequest struct {
	IncidentID string
	Type       domain.Type
	Target     string
	// Identity is who the incident is about, which for an alert or a
	// bundle differs from Target.
	Identity string
	Actor    string
	Reason   string
	// ExpiresAt is when the containment lifts, zero for never; target
	// services may show it.
	ExpiresAt time.Time
}

// Containment performs containment actions in the other services. Every
// method is idempotent, so repeating a done action succeeds and its result
// reports that nothing changed. The returned string is a short result for
// the incident record and contains no secret.
type Containment interface {
	SuspendIdentity(ctx context.Context, req ActionRequest) (string, error)
	UnsuspendIdentity(ctx context.Context, req ActionRequest) (string, error)
	SuspendKeyAccess(ctx context.Context, req ActionRequest) (string, error)
	RestoreKeyAccess(ctx context.Context, req ActionRequest) (string, error)
	TightenRateLimit(ctx context.Context, req ActionRequest) (string, error)
	RestoreRateLimit(ctx context.Context, req ActionRequest) (string, error)
	// RevokeBundle adds req.Target, a bundle id, to codesec's revocation list.
	RevokeBundle(ctx context.Context, req ActionRequest) (string, error)
	// KillSandboxes kills the running sandboxes of req.Target, an identity.
	KillSandboxes(ctx context.Context, req ActionRequest) (string, error)
	// DisableKeyVersion disables req.Target, a key name with an optional
	// "/<version>", in keyvault. There is no inverse: an exposed key is
	// rotated at its provider, which the service leaves to an operator.
	DisableKeyVersion(ctx context.Context, req ActionRequest) (string, error)
	Quarantine(ctx context.Context, req ActionRequest) (string, error)
	ReleaseQuarantine(ctx context.Context, req ActionRequest) (string, error)
	// Alert pages the operators about the incident req.IncidentID.
	Alert(ctx context.Context, req ActionRequest) (string, error)
}

// Directory reads identities from the registry.
type Directory interface {
	// Lookup returns the identity; Known is false when the registry lacks it.
	Lookup(ctx context.Context, id string) (domain.IdentityInfo, error)
	// ActiveOperators returns the ids of operators whose status is active.
	ActiveOperators(ctx context.Context) ([]string, error)
}

// Auditor persists security events before returning; *events.Publisher
// implements it.
type Auditor interface {
	PublishSync(ctx context.Context, ev events.SecurityEvent) error
}

// EventQuery selects events for an investigation: those of Identity, or
// carrying one of TraceIDs, or one of EventIDs, inside [Since, Until].
type EventQuery struct {
	Identity string
	TraceIDs []string
	EventIDs []string
	Since    time.Time
	Until    time.Time
	// Limit caps the rows returned; the oldest are kept.
	Limit int
}

// EventSource reads security events from NODEX_EVENTS.
type EventSource interface {
	Gather(ctx context.Context, q EventQuery) ([]domain.TimelineRow, error)
}
