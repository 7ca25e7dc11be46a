package authz

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"
)

// ErrInvalidRBAC wraps every reason [RBAC.Validate] rejects role data for.
var ErrInvalidRBAC = errors.New("authz: invalid role data")

// RBAC is the role data that policies read at data.nodex.rbac: which roles
// exist, what each grants, and which extra roles each identity is bound to.
type RBAC struct {
	// Roles maps a role name to its definition.
	Roles map[string]Role `json:"roles"`
	// Bindings maps an identity id to role names it holds in addition to
	// the roles in its registry record.
	Bindings map[string][]string `json:"bindings"`
	// Restrictions maps an identity id to the containment restrictions in
	// force on it, by kind ([RestrictKeyAccess], [RestrictRateLimit]).
	// Policies read them at data.nodex.rbac.restrictions.
	Restrictions map[string]map[string]Restriction `json:"restrictions,omitempty"`
}

// The restriction kinds that the policy service stores and the default
// policy applies.
const (
	// RestrictKeyAccess denies the identity every action on keys.
	RestrictKeyAccess = "key_access"
	// RestrictRateLimit caps the identity's key retrieves per minute: the
	// default policy attaches the cap to allowed retrieves as a decision
	// flag "rate_limit_per_minute:<n>".
	RestrictRateLimit = "rate_limit"
)

// Restriction is one containment restriction on an identity.
type Restriction struct {
	// Reason is the cause recorded when the restriction was set.
	Reason string `json:"reason"`
	// IncidentID is the incident that set it.
	IncidentID string `json:"incident_id,omitempty"`
	// SetBy is the identity id of the caller that set it.
	SetBy string `json:"set_by"`
	// Since is when it was set.
	Since time.Time `json:"since"`
	// ExpiresAt, if set, is when policies stop applying it.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// RequestsPerMinute is the cap of a rate_limit restriction (at least 1).
	RequestsPerMinute int `json:"requests_per_minute,omitempty"`
}

// Role is a named set of permissions.
type Role struct {
	Description string `json:"description,omitempty"`
	// Kinds limits the role to subjects of these kinds (service, agent,
	// operator). Empty means any kind.
	Kinds []string `json:"kinds,omitempty"`
	// Prod allows the role's permissions on resources labelled env=prod.
	Prod bool `json:"prod,omitempty"`
	// Permissions are the grants of the role.
	Permissions []Permission `json:"permissions"`
}

// Permission grants actions on one resource type.
type Permission struct {
	// Resource is a resource type, or "*" for every type.
	Resource string `json:"resource"`
	// Actions are the granted actions, or ["*"] for every action.
	Actions []string `json:"actions"`
	// Providers limits the permission to requests whose context names one
	// of these key providers. Empty means any provider.
	Providers []string `json:"providers,omitempty"`
	// Window limits the permission to a time window. Nil means always.
	Window *Window `json:"window,omitempty"`
}

// Window is a daily UTC time window, optionally on some weekdays only.
type Window struct {
	// StartHour is the first hour (0-23, UTC) in the window.
	StartHour int `json:"start_hour"`
	// EndHour is the first hour (1-24, UTC) after the window.
	EndHour int `json:"end_hour"`
	// Days are English weekday names ("Monday"); empty means every day.
	Days []string `json:"days,omitempty"`
}

var (
	roleNameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]*(:[a-z0-9_-]+)?$`)
	tokenRE    = regexp.MustCompile(`^([a-z][a-z0-9_]*|\*)$`)
	weekdays   = []string{"Monday", "Tuesday", "Wednesday", "Thursday", "Friday",
		"Saturday", "Sunday"}
	kinds = []string{KindService, KindAgent, KindOperator}
)

// ValidRoleName reports an error unless name is a lowercase role name such
// as "agent", "service:codesec" or "key-reader:openai". Role names are
// case-sensitive, so a lowercase rule keeps "Operator" from ever being
// defined next to "operator".
func ValidRoleName(name string) error {
	if len(name) > maxNameLen || !roleNameRE.MatchString(name) {
		return fmt.Errorf("%w: role name %q must match %s and be at most %d bytes",
			ErrInvalidRBAC, name, roleNameRE, maxNameLen)
	}

	return nil
}

// Validate checks every role, binding and restriction, so that stored role data never
// holds a name the policies cannot match.
func (r *RBAC) Validate() error {
	for name, role := range r.Roles {
		if err := ValidRoleName(name); err != nil {
			return err
		}
		if err := role.Validate(); err != nil {
			return fmt.Errorf("role %q: %w", name, err)
		}
	}

	for id, roles := range r.Bindings {
		if err := checkID("binding identity", id); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidRBAC, err)
		}
		for _, name := range roles {
			if err := ValidRoleName(name); err != nil {
				return fmt.Errorf("binding of %q: %w", id, err)
			}
		}
	}

	return r.validateRestrictions()
}

func (r *RBAC) validateRestrictions() error {
	for id, byKind := range r.Restrictions {
		if err := checkID("restricted identity", id); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidRBAC, err)
		}
		for kind, res := range byKind {
			if err := res.validate(kind); err != nil {
				return fmt.Errorf("restriction of %q: %w", id, err)
			}
		}
	}

	return nil
}

// validate checks a restriction stored under kind.
func (r *Restriction) validate(kind string) error {
	switch kind {
	case RestrictKeyAccess:
		if r.RequestsPerMinute != 0 {
			return fmt.Errorf("%w: %s restriction sets requests_per_minute %d; "+
				"only %s uses it", ErrInvalidRBAC, kind, r.RequestsPerMinute, RestrictRateLimit)
		}
	case RestrictRateLimit:
		if r.RequestsPerMinute < 1 {
			return fmt.Errorf("%w: %s restriction needs requests_per_minute >= 1, got %d",
				ErrInvalidRBAC, kind, r.RequestsPerMinute)
		}
	default:
		return fmt.Errorf("%w: restriction kind %q is not %q or %q", ErrInvalidRBAC, kind,
			RestrictKeyAccess, RestrictRateLimit)
	}
	if r.Since.IsZero() {
		return fmt.Errorf("%w: %s restriction has no since time", ErrInvalidRBAC, kind)
	}

	return nil
}

// Validate checks the role's kinds and permissions.
func (r *Role) Validate() error {
	for _, k := range r.Kinds {
		if !slices.Contains(kinds, k) {
			return fmt.Errorf("%w: kind %q is not one of %v", ErrInvalidRBAC, k, kinds)
		}
	}
	if len(r.Permissions) == 0 {
		return fmt.Errorf("%w: role grants no permissions", ErrInvalidRBAC)
	}

	for i, p := range r.Permissions {
		if err := p.validate(); err != nil {
			return fmt.Errorf("permission %d: %w", i, err)
		}
	}

	return nil
}

func (p *Permission) validate() error {
	if !tokenRE.MatchString(p.Resource) {
		return fmt.Errorf("%w: resource %q must be a lowercase type or \"*\"",
			ErrInvalidRBAC, p.Resource)
	}
	if len(p.Actions) == 0 {
		return fmt.Errorf("%w: no actions on %q", ErrInvalidRBAC, p.Resource)
	}
	for _, a := range p.Actions {
		if !tokenRE.MatchString(a) {
			return fmt.Errorf("%w: action %q must be a lowercase action or \"*\"",
				ErrInvalidRBAC, a)
		}
	}
	for _, prov := range p.Providers {
		if err := checkName("provider", prov); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidRBAC, err)
		}
	}
	if p.Window != nil {
		return p.Window.validate()
	}

	return nil
}

func (w *Window) validate() error {
	if w.StartHour < 0 || w.StartHour > 23 || w.EndHour <= w.StartHour || w.EndHour > 24 {
		return fmt.Errorf("%w: window %d-%d must satisfy 0 <= start_hour < end_hour <= 24",
			ErrInvalidRBAC, w.StartHour, w.EndHour)
	}
	for _, d := range w.Days {
		if !slices.Contains(weekdays, d) {
			return fmt.Errorf("%w: day %q is not one of %v", ErrInvalidRBAC, d, weekdays)
		}
	}

	return nil
}
