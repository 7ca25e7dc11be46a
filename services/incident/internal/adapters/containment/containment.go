// Package containment performs the incident service's containment actions
// in the other services: request subjects over libs/bus for codesec,
// sandbox-runner, keyvault and policy, and status downgrades signed by the
// delegated authority key for the identity registry.
package containment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/services/incident/internal/app"
)

// Subjects of the containment requests and the roles that serve them.
const (
	SubjectRevokeBundle   = "nodex.v1.codesec.revoke"
	RoleCodesec           = "service:codesec"
	SubjectKillSandboxes  = "nodex.v1.sandbox.kill"
	RoleSandbox           = "service:sandbox"
	SubjectDisableKey     = "nodex.v1.keyvault.disable"
	RoleKeyvault          = "service:keyvault"
	SubjectRestrict       = "nodex.v1.policy.restrict"
	RolePolicy            = "service:policy"
	RestrictionKeyAccess  = "key_access"
	RestrictionRateLimit  = "rate_limit"
	DefaultTightenedLimit = 6 // requests per minute while a rate limit is tightened
)

// Requester sends a sealed request and decodes the reply; *bus.Client
// implements it.
type Requester interface {
	Request(ctx context.Context, subject, toRole string, req, resp any) error
}

// Downgrader lowers an identity's status with the authority key;
// *identity.AuthorityWriter implements it.
type Downgrader interface {
	Contain(ctx context.Context, id string, s identity.Status) error
}

// Upgrader raises a suspended identity to active, which needs the root key;
// *identity.Admin implements it.
type Upgrader interface {
	Unsuspend(ctx context.Context, id string) error
}

// StatusReader reads an identity's current record; *identity.View
// implements it.
type StatusReader interface {
	Identity(id string) (*identity.Identity, error)
}

// AlertSink persists alert events; *events.Publisher implements it.
type AlertSink interface {
	PublishSync(ctx context.Context, ev events.SecurityEvent) error
}

// Bus implements app.Containment.
type Bus struct {
	req       Requester
	downgrade Downgrader
	status    StatusReader
	alerts    AlertSink
	// Upgrade lifts suspensions. Nil means this process does not hold the
	// root key, and a lift fails with the command an operator runs instead.
	Upgrade Upgrader
	// TightenedLimit is the request rate, per minute, that a tightened rate
	// limit allows.
	TightenedLimit int
}

var _ app.Containment = (*Bus)(nil)

// New returns a Bus. It panics on a nil dependency, which is a wiring
// mistake.
func New(req Requester, downgrade Downgrader, status StatusReader, alerts AlertSink) *Bus {
	if req == nil || downgrade == nil || status == nil || alerts == nil {
		panic("containment: New needs a requester, a downgrader, a status reader and alerts")
	}

	return &Bus{req: req, downgrade: downgrade, status: status, alerts: alerts,
		TightenedLimit: DefaultTightenedLimit}
}

// SuspendIdentity implements app.Containment. Suspending an identity that
// is already suspended or revoked writes nothing, so a revoked identity is
// never lowered to suspended.
func (b *Bus) SuspendIdentity(ctx context.Context, r app.ActionRequest) (string, error) {
	ident, err := b.status.Identity(r.Target)
	if err != nil {
		return "", fmt.Errorf("reading identity %q: %w", r.Target, err)
	}
	if ident.Status != identity.StatusActive {
		return "identity already " + string(ident.Status), nil
	}
	if err := b.downgrade.Contain(ctx, r.Target, identity.StatusSuspended); err != nil {
		return "", fmt.Errorf("suspending identity %q: %w", r.Target, err)
	}

	return "identity suspended in the registry", nil
}

// UnsuspendIdentity implements app.Containment.
func (b *Bus) UnsuspendIdentity(ctx context.Context, r app.ActionRequest) (string, error) {
	ident, err := b.status.Identity(r.Target)
	if err != nil {
		return "", fmt.Errorf("reading identity %q: %w", r.Target, err)
	}
	switch ident.Status {
	case identity.StatusActive:
		return "identity already active", nil
	case identity.StatusRevoked:
		return "", fmt.Errorf("identity %q is revoked; issue a new identity instead", r.Target)
	}
	if b.Upgrade == nil {
		return "", fmt.Errorf("%w: run `nodex agent unsuspend %s` as an operator",
			ErrNeedsRootKey, r.Target)
	}
	if err := b.Upgrade.Unsuspend(ctx, r.Target); err != nil {
		return "", fmt.Errorf("unsuspending identity %q: %w", r.Target, err)
	}

	return "identity active again", nil
}

// ErrNeedsRootKey marks a lift that only the operator root key can sign.
var ErrNeedsRootKey = errors.New("containment: raising an identity's status needs the " +
	"operator root key")

// restrictRequest is the body of nodex.v1.policy.restrict.
type restrictRequest struct {
	Identity          string    `json:"identity"`
	Restriction       string    `json:"restriction"`
	Lift              bool      `json:"lift,omitempty"`
	RequestsPerMinute int       `json:"requests_per_minute,omitempty"`
	Reason            string    `json:"reason"`
	IncidentID        string    `json:"incident_id"`
	ExpiresAt         time.Time `json:"expires_at,omitzero"`
}

func (b *Bus) restrict(ctx context.Context, r app.ActionRequest, kind string, lift bool,
) (string, error) {
	body := restrictRequest{Identity: r.Target, Restriction: kind, Lift: lift,
		Reason: r.Reason, IncidentID: r.IncidentID, ExpiresAt: r.ExpiresAt}
	if kind == RestrictionRateLimit && !lift {
		body.RequestsPerMinute = b.TightenedLimit
	}
	var reply json.RawMessage
	if err := b.req.Request(ctx, SubjectRestrict, RolePolicy, body, &reply); err != nil {
		return "", fmt.Errorf("requesting %s %s for %q: %w", SubjectRestrict, kind, r.Target, err)
	}
	verb := "set"
	if lift {
		verb = "lifted"
	}

	return fmt.Sprintf("policy restriction %s %s", kind, verb), nil
}

// SuspendKeyAccess implements app.Containment.
func (b *Bus) SuspendKeyAccess(ctx context.Context, r app.ActionRequest) (string, error) {
	return b.restrict(ctx, r, RestrictionKeyAccess, false)
}

// RestoreKeyAccess implements app.Containment.
func (b *Bus) RestoreKeyAccess(ctx context.Context, r app.ActionRequest) (string, error) {
	return b.restrict(ctx, r, RestrictionKeyAccess, true)
}

// TightenRateLimit implements app.Containment.
func (b *Bus) TightenRateLimit(ctx context.Context, r app.ActionRequest) (string, error) {
	return b.restrict(ctx, r, RestrictionRateLimit, false)
}

// RestoreRateLimit implements app.Containment.
func (b *Bus) RestoreRateLimit(ctx context.Context, r app.ActionRequest) (string, error) {
	return b.restrict(ctx, r, RestrictionRateLimit, true)
}

// revokeRequest is the body of nodex.v1.codesec.revoke.
type revokeRequest struct {
	BundleID string `json:"bundle_id"`
	Reason   string `json:"reason"`
}

// RevokeBundle implements app.Containment.
func (b *Bus) RevokeBundle(ctx context.Context, r app.ActionRequest) (string, error) {
	var reply json.RawMessage
	err := b.req.Request(ctx, SubjectRevokeBundle, RoleCodesec,
		revokeRequest{BundleID: r.Target, Reason: r.Reason}, &reply)
	if err != nil {
		return "", fmt.Errorf("revoking bundle %q: %w", r.Target, err)
	}

	return "bundle on the revocation list", nil
}

// killRequest is the body of nodex.v1.sandbox.kill. The runner decodes it
// strictly and names exactly one of the two fields, so it carries no reason.
type killRequest struct {
	AgentID  string `json:"agent_id,omitempty"`
	BundleID string `json:"bundle_id,omitempty"`
}

// KillSandboxes implements app.Containment.
func (b *Bus) KillSandboxes(ctx context.Context, r app.ActionRequest) (string, error) {
	var reply struct {
		Killed int `json:"killed"`
	}
	var raw json.RawMessage
	err := b.req.Request(ctx, SubjectKillSandboxes, RoleSandbox,
		killRequest{AgentID: r.Target}, &raw)
	if err != nil {
		return "", fmt.Errorf("killing sandboxes of %q: %w", r.Target, err)
	}
	if json.Unmarshal(raw, &reply) != nil {
		return "sandboxes killed", nil
	}

	return fmt.Sprintf("%d sandboxes killed", reply.Killed), nil
}

// disableRequest is the body of nodex.v1.keyvault.disable: Version 0
// disables every version of the key.
type disableRequest struct {
	Name    string `json:"name"`
	Version int    `json:"version,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// ParseKeyTarget splits "<name>" or "<name>/<version>" into its parts.
func ParseKeyTarget(target string) (string, int, error) {
	name, v, ok := strings.Cut(target, "/")
	if !ok {
		return name, 0, nil
	}
	version, err := strconv.Atoi(v)
	if err != nil || version <= 0 {
		return "", 0, fmt.Errorf("key target %q: version %q is not a positive number", target, v)
	}

	return name, version, nil
}

// DisableKeyVersion implements app.Containment.
func (b *Bus) DisableKeyVersion(ctx context.Context, r app.ActionRequest) (string, error) {
	name, version, err := ParseKeyTarget(r.Target)
	if err != nil {
		return "", err
	}
	var reply struct {
		Disabled []int `json:"disabled"`
	}
	var raw json.RawMessage
	err = b.req.Request(ctx, SubjectDisableKey, RoleKeyvault,
		disableRequest{Name: name, Version: version, Reason: r.Reason}, &raw)
	if err != nil {
		return "", fmt.Errorf("disabling key %q: %w", r.Target, err)
	}
	_ = json.Unmarshal(raw, &reply)

	return fmt.Sprintf("key %s versions %v disabled", name, reply.Disabled), nil
}

// Quarantine implements app.Containment: it suspends the identity, cuts its
// key access and kills its sandboxes. Every step runs even when one fails,
// and the error lists each failure.
func (b *Bus) Quarantine(ctx context.Context, r app.ActionRequest) (string, error) {
	steps := []func(context.Context, app.ActionRequest) (string, error){
		b.SuspendIdentity, b.SuspendKeyAccess, b.KillSandboxes,
	}

	return runAll(ctx, r, steps)
}

// ReleaseQuarantine implements app.Containment.
func (b *Bus) ReleaseQuarantine(ctx context.Context, r app.ActionRequest) (string, error) {
	steps := []func(context.Context, app.ActionRequest) (string, error){
		b.RestoreKeyAccess, b.UnsuspendIdentity,
	}

	return runAll(ctx, r, steps)
}

func runAll(ctx context.Context, r app.ActionRequest,
	steps []func(context.Context, app.ActionRequest) (string, error),
) (string, error) {
	var results []string
	var failures []error
	for _, step := range steps {
		res, err := step(ctx, r)
		if err != nil {
			failures = append(failures, err)
			continue
		}
		results = append(results, res)
	}

	return strings.Join(results, "; "), errors.Join(failures...)
}

// Alert implements app.Containment with a critical security event, which
// operators' alerting reads from NODEX_EVENTS.
func (b *Bus) Alert(ctx context.Context, r app.ActionRequest) (string, error) {
	ev := events.SecurityEvent{
		Type: "incident.alert", Action: "alert", Resource: "incident:" + r.IncidentID,
		Status: events.StatusSuccess, Severity: events.SeverityCritical,
		Metadata: map[string]string{"incident_id": r.IncidentID, "incident_type": string(r.Type),
			"identity": r.Identity, "reason": r.Reason},
	}
	if err := b.alerts.PublishSync(ctx, ev); err != nil {
		return "", fmt.Errorf("publishing alert for incident %s: %w", r.IncidentID, err)
	}

	return "critical alert event published", nil
}
