// Package domain holds the incident model and its rules: threat types, the
// lifecycle state machine, severity scoring, the containment plan and reports.
// It does no I/O; the app layer loads, stores and acts on what it returns.
package domain

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors that callers branch on with errors.Is.
var (
	// ErrInvalidThreat marks a threat body that cannot open an incident.
	ErrInvalidThreat = errors.New("incident: invalid threat")
	// ErrIllegalTransition marks a lifecycle step that the state machine rejects.
	ErrIllegalTransition = errors.New("incident: illegal transition")
	// ErrActionNotFound marks an action id that the incident does not contain.
	ErrActionNotFound = errors.New("incident: action not found")
	// ErrActionState marks an action request that the action's status rejects,
	// for example approving an action that already ran.
	ErrActionState = errors.New("incident: action state")
)

// Type is a threat and incident type as monitor names it.
type Type string

// The incident types. Subjects carry them in lower case
// (nodex.v1.threats.code_injection).
const (
	UnauthorizedAccess Type = "UNAUTHORIZED_ACCESS"
	DataBreach         Type = "DATA_BREACH"
	CodeInjection      Type = "CODE_INJECTION"
	APIAbuse           Type = "API_ABUSE"
	SystemCompromise   Type = "SYSTEM_COMPROMISE"
)

// Types lists every incident type in a fixed order.
var Types = []Type{UnauthorizedAccess, DataBreach, CodeInjection, APIAbuse, SystemCompromise}

// ParseType accepts a type in upper case or in the lower case of subjects.
func ParseType(s string) (Type, error) {
	t := Type(strings.ToUpper(strings.TrimSpace(s)))
	for _, known := range Types {
		if t == known {
			return t, nil
		}
	}

	return "", fmt.Errorf("%w: unknown type %q, want one of %v", ErrInvalidThreat, s, Types)
}

// SubjectToken returns the type as a subject token, e.g. "code_injection".
func (t Type) SubjectToken() string { return strings.ToLower(string(t)) }

// Severity is the security event severity scale shared by events, threats and
// incidents.
type Severity string

// The severities, lowest first.
const (
	SeverityInfo     Severity = "info"
	SeverityLow      Severity = "low"
	SeverityMedium   Severity = "medium"
	SeverityHigh     Severity = "high"
	SeverityCritical Severity = "critical"
)

// Rank orders severities: info is 0 and critical 4. An unknown value ranks -1.
func (s Severity) Rank() int {
	switch s {
	case SeverityInfo:
		return 0
	case SeverityLow:
		return 1
	case SeverityMedium:
		return 2
	case SeverityHigh:
		return 3
	case SeverityCritical:
		return 4
	default:
		return -1
	}
}

// Kind is the kind of an identity in the registry.
type Kind string

// Identity kinds. KindUnknown marks an identity that the registry does not
// contain, which the service treats as unauthenticated.
const (
	KindService  Kind = "service"
	KindAgent    Kind = "agent"
	KindOperator Kind = "operator"
	KindUnknown  Kind = "unknown"
)

// IdentityInfo is the registry record of the identity an incident
// concerns.
type IdentityInfo struct {
	ID     string `json:"id"`
	Kind   Kind   `json:"kind"`
	Status string `json:"status"`
	// Known is false when the registry has no such identity. Such a name
	// cannot be trusted, because a forged message can claim any sender.
	Known bool `json:"known"`
}
