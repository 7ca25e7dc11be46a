package domain

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ActionKind is one containment step. Each kind maps to one method of the
// app layer's Containment port.
type ActionKind string

// The containment actions.
const (
	// ActSuspendIdentity downgrades the identity to suspended in the registry.
	ActSuspendIdentity ActionKind = "suspend_identity"
	// ActSuspendKeyAccess removes the identity's key-reader grants in policy data.
	ActSuspendKeyAccess ActionKind = "suspend_key_access"
	// ActTightenRateLimit lowers the identity's request rate limit in policy data.
	ActTightenRateLimit ActionKind = "tighten_rate_limit"
	// ActRevokeBundle adds a bundle to codesec's revocation list.
	ActRevokeBundle ActionKind = "revoke_bundle"
	// ActKillSandboxes kills every running sandbox of the identity.
	ActKillSandboxes ActionKind = "kill_sandboxes"
	// ActDisableKeyVersion disables one exposed key version in keyvault and
	// marks it for rotation at the provider.
	ActDisableKeyVersion ActionKind = "disable_key_version"
	// ActQuarantineIdentity suspends the identity and cuts it off from every
	// resource until an operator releases it.
	ActQuarantineIdentity ActionKind = "quarantine_identity"
	// ActAlert pages the operators.
	ActAlert ActionKind = "alert"
)

// ActionKinds lists every action kind.
var ActionKinds = []ActionKind{
	ActSuspendIdentity, ActSuspendKeyAccess, ActTightenRateLimit, ActRevokeBundle,
	ActKillSandboxes, ActDisableKeyVersion, ActQuarantineIdentity, ActAlert,
}

// Liftable reports whether the action can be undone. A revoked bundle, a
// killed sandbox, a disabled key version and a sent alert stay as they are:
// an exposed key is rotated, never enabled again.
func (k ActionKind) Liftable() bool {
	switch k {
	case ActSuspendIdentity, ActSuspendKeyAccess, ActTightenRateLimit, ActQuarantineIdentity:
		return true
	default:
		return false
	}
}

// Mode selects whether an action runs on its own or waits for an operator.
type Mode string

// The action modes.
const (
	ModeAuto     Mode = "auto"
	ModeApproval Mode = "approval"
)

// ActionStatus is the progress of an action.
type ActionStatus string

// The action statuses.
const (
	StatusPending         ActionStatus = "pending"
	StatusAwaitingApprove ActionStatus = "awaiting_approval"
	StatusDone            ActionStatus = "done"
	StatusFailed          ActionStatus = "failed"
	StatusLifted          ActionStatus = "lifted"
)

// Action is one containment step of an incident with its outcome.
type Action struct {
	ID     string       `json:"id"`
	Kind   ActionKind   `json:"kind"`
	Target string       `json:"target"`
	Status ActionStatus `json:"status"`
	Mode   Mode         `json:"mode"`
	// ApprovalReason is the reason an operator must approve, empty for auto.
	ApprovalReason string    `json:"approval_reason,omitempty"`
	ApprovedBy     string    `json:"approved_by,omitempty"`
	Attempts       int       `json:"attempts"`
	LastAttempt    time.Time `json:"last_attempt,omitzero"`
	DoneAt         time.Time `json:"done_at,omitzero"`
	Result         string    `json:"result,omitempty"`
	Error          string    `json:"error,omitempty"`
	// Expiry is the planned duration of the containment, zero for none.
	Expiry    time.Duration `json:"expiry_ns,omitempty"`
	ExpiresAt time.Time     `json:"expires_at,omitzero"`
	Lift      *Lift         `json:"lift,omitempty"`
}

// Key identifies the action inside an incident so planning is idempotent.
func (a *Action) Key() string { return string(a.Kind) + ":" + a.Target }

// Lift records the undoing of an action, by an operator or by expiry.
type Lift struct {
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Reason string    `json:"reason"`
	Result string    `json:"result,omitempty"`
	Error  string    `json:"error,omitempty"`
}

// ActionRule is one configured containment step for an incident type.
type ActionRule struct {
	Kind ActionKind `json:"kind"`
	Mode Mode       `json:"mode"`
	// Expiry lifts the action automatically after this long; zero keeps it
	// until an operator lifts it. Only liftable kinds may set it.
	Expiry time.Duration `json:"expiry,omitempty"`
}

// Escalation lengthens the expiry for repeat offenders: the n-th offence of
// an identity keeps the containment Factor^(n-1) times the rule's expiry, at
// most MaxExpiry, and from offence PermanentFrom on it never expires.
type Escalation struct {
	Factor        int           `json:"factor"`
	MaxExpiry     time.Duration `json:"max_expiry"`
	PermanentFrom int           `json:"permanent_from"`
}

// ExpiryFor returns the expiry of a rule for the given offence number; zero
// means the action does not expire.
func (e Escalation) ExpiryFor(base time.Duration, offense int) time.Duration {
	if base <= 0 || (e.PermanentFrom > 0 && offense >= e.PermanentFrom) {
		return 0
	}
	d := base
	for i := 1; i < offense && e.Factor > 1; i++ {
		d *= time.Duration(e.Factor)
		if e.MaxExpiry > 0 && d >= e.MaxExpiry {
			return e.MaxExpiry
		}
	}

	return d
}

// ApprovalReason returns why an action against subject needs an operator's
// approval, or "" when it may run automatically. Alerts always run.
func ApprovalReason(kind ActionKind, mode Mode, subject IdentityInfo,
	activeOperators []string,
) string {
	switch {
	case kind == ActAlert:
		return ""
	case !subject.Known:
		return "identity " + subject.ID + " is not in the registry, so the threat cannot be " +
			"attributed to it"
	case subject.Kind == KindService:
		return "identity " + subject.ID + " is a service identity"
	case subject.Kind == KindOperator && !slices.ContainsFunc(activeOperators,
		func(op string) bool { return op != subject.ID }):
		return "identity " + subject.ID + " is the last active operator"
	case mode == ModeApproval:
		return "configuration requires approval for " + string(kind)
	default:
		return ""
	}
}

// Targets lists the targets of one action kind for the incident: the
// identity for identity actions, each bundle or key resource otherwise. An
// incident about a transport origin has no identity target, because an
// origin is not an identity that the registry could suspend.
func (inc *Incident) Targets(kind ActionKind) []string {
	resourcesOf := func(typ string) []string {
		var ids []string
		for _, r := range inc.Resources {
			if r.Type == typ {
				ids = append(ids, r.ID)
			}
		}

		return ids
	}
	switch kind {
	case ActRevokeBundle:
		return resourcesOf("bundle")
	case ActDisableKeyVersion:
		return resourcesOf("key")
	case ActAlert:
		return []string{inc.ID}
	default:
		if strings.HasPrefix(inc.Identity.ID, OriginPrefix) {
			return nil
		}

		return []string{inc.Identity.ID}
	}
}

// missingTargetText is the follow-up for a playbook action without targets.
func (inc *Incident) missingTargetText(kind ActionKind) string {
	switch kind {
	case ActRevokeBundle:
		return "revoke_bundle: the threats name no bundle; find the bundles of " +
			inc.Identity.ID + " and revoke them"
	case ActDisableKeyVersion:
		return "disable_key_version: the threats name no key; find the keys " +
			inc.Identity.ID + " read and disable them"
	default:
		return string(kind) + ": the threats name no authenticated identity, only " +
			inc.Identity.ID + "; identify the sender before containing it"
	}
}

// Plan adds the actions that rules call for and the incident lacks, and
// returns the new ones. Planning twice adds nothing, so a redelivered
// threat never repeats a containment.
func (inc *Incident) Plan(rules []ActionRule, esc Escalation, activeOperators []string,
	at time.Time,
) []*Action {
	var added []int
	for _, rule := range rules {
		targets := inc.Targets(rule.Kind)
		if len(targets) == 0 {
			inc.AddFollowUp(at, inc.missingTargetText(rule.Kind))
		}
		for _, target := range targets {
			a := Action{Kind: rule.Kind, Target: target, Mode: rule.Mode}
			if slices.ContainsFunc(inc.Actions, func(x Action) bool { return x.Key() == a.Key() }) {
				continue
			}
			a.ID = "a" + strconv.Itoa(len(inc.Actions)+1)
			a.Status = StatusPending
			a.ApprovalReason = ApprovalReason(rule.Kind, rule.Mode, inc.Identity, activeOperators)
			if a.ApprovalReason != "" {
				a.Status = StatusAwaitingApprove
			}
			if rule.Kind.Liftable() {
				a.Expiry = esc.ExpiryFor(rule.Expiry, inc.Offense)
			}
			inc.Actions = append(inc.Actions, a)
			added = append(added, len(inc.Actions)-1)
			inc.record(at, ServiceActor, "action_planned", fmt.Sprintf("%s %s %s (%s)",
				a.ID, a.Kind, a.Target, a.Status)).ActionID = a.ID
		}
	}
	out := make([]*Action, 0, len(added))
	for _, i := range added {
		out = append(out, &inc.Actions[i])
	}

	return out
}

// Action returns the action with the given id.
func (inc *Incident) Action(id string) (*Action, error) {
	for i := range inc.Actions {
		if inc.Actions[i].ID == id {
			return &inc.Actions[i], nil
		}
	}

	return nil, fmt.Errorf("%w: incident %s has no action %q", ErrActionNotFound, inc.ID, id)
}

// Contained reports whether every action ran: none is pending, awaiting
// approval or failed. An incident without actions counts as contained.
func (inc *Incident) Contained() bool {
	for _, a := range inc.Actions {
		if a.Status != StatusDone && a.Status != StatusLifted {
			return false
		}
	}

	return true
}

// RecordAttempt stores the outcome of running an action. A failure keeps
// the action failed, so the incident is not contained until a retry succeeds.
func (inc *Incident) RecordAttempt(a *Action, actor, result string, err error, at time.Time) {
	at = at.UTC()
	a.Attempts++
	a.LastAttempt = at
	entry := inc.record(at, actor, "action", fmt.Sprintf("%s %s %s", a.ID, a.Kind, a.Target))
	entry.ActionID = a.ID
	if err != nil {
		a.Status, a.Error = StatusFailed, err.Error()
		entry.Failed = true
		entry.Detail += " failed: " + err.Error()

		return
	}
	a.Status, a.Error, a.Result, a.DoneAt = StatusDone, "", result, at
	if a.Expiry > 0 {
		a.ExpiresAt = at.Add(a.Expiry)
	}
	entry.Detail += " done: " + result
}

// RecordLift stores the outcome of undoing an action.
func (inc *Incident) RecordLift(a *Action, actor, reason, result string, err error,
	at time.Time,
) {
	at = at.UTC()
	a.Lift = &Lift{At: at, Actor: actor, Reason: reason, Result: result}
	entry := inc.record(at, actor, "lift", fmt.Sprintf("%s %s %s: %s", a.ID, a.Kind,
		a.Target, reason))
	entry.ActionID = a.ID
	if err != nil {
		a.Lift.Error = err.Error()
		entry.Failed = true
		entry.Detail += " failed: " + err.Error()

		return
	}
	a.Status = StatusLifted
	entry.Detail += " done: " + result
}
