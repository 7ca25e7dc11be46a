// Package authz decides access requests with an embedded OPA engine.
//
// Every NodeX service poses the same question in the same shape: may this
// subject perform this action on this resource, in this context? An [Input]
// carries the question, an [Engine] evaluates it against the active Rego policy
// set and its data (roles, permissions, role bindings), and a [Decision] carries
// the answer with its reasons and a unique id.
//
// Decisions fail closed: an invalid input, a missing policy, an undefined or
// malformed result, an evaluation error or a timeout all return a denying
// Decision with a reason, together with an error that says what went wrong.
// Callers only need to check [Decision.Allow].
//
// Policy sets and data are loaded from a JetStream key-value bucket by
// [WatchKV], which applies every change to the Engine while the last good
// version keeps deciding.
package authz

import (
	"errors"
	"time"
)

// Subject kinds known to the default policies.
const (
	KindService  = "service"
	KindAgent    = "agent"
	KindOperator = "operator"
)

// Identity statuses. Only [StatusActive] can be allowed anything.
const (
	StatusActive    = "active"
	StatusSuspended = "suspended"
	StatusRevoked   = "revoked"
)

// Finding severities, lowest first, as codesec reports them.
const (
	SeverityInfo     = "info"
	SeverityLow      = "low"
	SeverityMedium   = "medium"
	SeverityHigh     = "high"
	SeverityCritical = "critical"
)

// Errors that [Engine.Decide] wraps. Every one of them comes with a denying
// Decision.
var (
	ErrInvalidInput    = errors.New("authz: invalid input")
	ErrNoPolicy        = errors.New("authz: no policy loaded")
	ErrUndefined       = errors.New("authz: policy result undefined")
	ErrMalformedResult = errors.New("authz: policy result malformed")
	ErrEvaluation      = errors.New("authz: policy evaluation failed")
	ErrTimeout         = errors.New("authz: policy evaluation timed out")
)

// Input is the one shape of every access question. Its JSON form is
// documented in schemas/policy/decision-input.schema.json and is what Rego
// policies see as `input`.
type Input struct {
	Subject  Subject  `json:"subject"`
	Action   string   `json:"action"`
	Resource Resource `json:"resource"`
	Context  Context  `json:"context"`
}

// Subject is the authenticated identity that requests access.
type Subject struct {
	// ID is the identity id from the registry.
	ID string `json:"id"`
	// Kind is one of service, agent or operator.
	Kind string `json:"kind"`
	// Roles are the roles the registry grants the identity. The policy adds
	// the roles bound to ID in the policy data.
	Roles []string `json:"roles"`
	// Status is the identity's registry status. Anything but "active",
	// including the empty string, is denied.
	Status string `json:"status"`
	// Attributes are free-form identity attributes for attribute-based rules.
	Attributes map[string]string `json:"attributes,omitempty"`
}

// Resource is the object acted upon.
type Resource struct {
	// Type is a resource type such as code, bundle, sandbox, key, identity,
	// policy, incident, event or threat.
	Type string `json:"type"`
	// ID names one resource. It is empty for actions on the whole type, such
	// as list. It may not contain "..", "/", "*", NUL or other characters
	// outside [A-Za-z0-9._:@-].
	ID string `json:"id,omitempty"`
	// Labels are the resource's labels, such as env=prod on a key.
	Labels map[string]string `json:"labels,omitempty"`
}

// Context carries facts about the request itself.
type Context struct {
	// Time is when the request was made. A zero Time is replaced by the
	// Engine's clock.
	Time time.Time `json:"time"`
	// TraceID links the decision to the request's trace. It is never used to
	// decide.
	TraceID string `json:"trace_id,omitempty"`
	// Findings are codesec's static-analysis findings for code and sandbox
	// decisions.
	Findings []Finding `json:"findings,omitempty"`
	// Purpose is the caller's stated reason, such as a key retrieval purpose.
	Purpose string `json:"purpose,omitempty"`
	// Provider is the API key provider a key request concerns, such as openai.
	Provider string `json:"provider,omitempty"`
	// Attributes are free-form request attributes.
	Attributes map[string]string `json:"attributes,omitempty"`
}

// Finding is one static-analysis finding on submitted code.
type Finding struct {
	RuleID   string `json:"rule_id"`
	Severity string `json:"severity"`
	Line     int    `json:"line,omitempty"`
}

// Decision is the result of deciding an [Input]. The zero Decision denies.
type Decision struct {
	// ID is unique per decision (a UUIDv7) and appears in the audit event.
	ID string `json:"id"`
	// Allow is true only when the policy allowed the request.
	Allow bool `json:"allow"`
	// Reasons explain why the request was allowed or denied.
	Reasons []string `json:"reasons"`
	// Flags are conditions attached to an allow, such as
	// "findings_high" when code is accepted with high-severity findings.
	Flags []string `json:"flags,omitempty"`
	// Revision names the policy set and data revision that decided. It is
	// empty when no policy was loaded.
	Revision string `json:"revision,omitempty"`
}
