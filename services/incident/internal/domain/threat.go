package domain

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Threat is the body monitor publishes on nodex.v1.threats.<type>. Monitor
// republishes a threat with the same ID and a higher Revision when more
// evidence arrives, so one ID can be delivered several times.
type Threat struct {
	ID       string   `json:"id"`
	Revision int      `json:"revision"`
	Type     string   `json:"type"`
	Severity Severity `json:"severity"`
	// Identity is the authenticated identity the evidence is about, or ""
	// when no evidence authenticates one. Only then does Origin, the
	// transport origin of the first evidence event, name the source.
	Identity    string     `json:"identity,omitempty"`
	Origin      string     `json:"origin,omitempty"`
	Group       string     `json:"group,omitempty"`
	Resources   []Resource `json:"resources,omitempty"`
	RuleID      string     `json:"rule_id"`
	Description string     `json:"description,omitempty"`
	Evidence    []string   `json:"evidence"`
	FirstSeen   time.Time  `json:"first_seen"`
	LastSeen    time.Time  `json:"last_seen"`
	Count       int        `json:"count"`
	TraceIDs    []string   `json:"trace_ids,omitempty"`
}

// OriginPrefix marks an incident subject that is a transport origin, not an
// authenticated identity. Such an incident is never contained automatically.
const OriginPrefix = "origin:"

// Subject returns who the incident is about: the authenticated identity, or
// the transport origin prefixed with [OriginPrefix] when there is none.
func (th *Threat) Subject() string {
	if th.Identity != "" {
		return th.Identity
	}

	return OriginPrefix + th.Origin
}

// Resource is a thing a threat touched: a bundle, a key version, a sandbox.
// Well-known types are "bundle" (ID = bundle id), "key" (ID =
// "<provider>/<version>") and "sandbox" (ID = run id).
type Resource struct {
	Type   string            `json:"type"`
	ID     string            `json:"id"`
	Labels map[string]string `json:"labels,omitempty"`
}

// UnmarshalJSON accepts a resource either as an object or as the string
// "<type>:<id>" that monitor copies from the events' resource field. A
// string without a colon becomes a resource of type "other".
func (r *Resource) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err == nil {
		kind, id, ok := strings.Cut(s, ":")
		if !ok {
			kind, id = "other", s
		}
		*r = Resource{Type: kind, ID: id}

		return nil
	}
	type plain Resource
	var p plain
	if err := json.Unmarshal(data, &p); err != nil {
		return fmt.Errorf("%w: decoding resource: %w", ErrInvalidThreat, err)
	}
	*r = Resource(p)

	return nil
}

// Key returns "<type>:<id>", the resource's identity inside an incident.
func (r Resource) Key() string { return r.Type + ":" + r.ID }

// Limits on threat bodies, so one malformed threat cannot bloat an incident.
const (
	MaxEvidencePerThreat  = 1000
	MaxResourcesPerThreat = 100
	maxFieldBytes         = 256
)

// Validate checks a threat and returns its parsed type.
func (th *Threat) Validate() (Type, error) {
	typ, err := ParseType(th.Type)
	if err != nil {
		return "", err
	}
	switch {
	case th.ID == "" || len(th.ID) > maxFieldBytes:
		return "", fmt.Errorf("%w: id is missing or longer than %d bytes", ErrInvalidThreat,
			maxFieldBytes)
	case th.Identity == "" && th.Origin == "":
		return "", fmt.Errorf("%w: threat %q names neither identity nor origin",
			ErrInvalidThreat, th.ID)
	case len(th.Identity) > maxFieldBytes || len(th.Origin) > maxFieldBytes:
		return "", fmt.Errorf("%w: threat %q has an identity or origin longer than %d bytes",
			ErrInvalidThreat, th.ID, maxFieldBytes)
	case th.Severity.Rank() < 0:
		return "", fmt.Errorf("%w: threat %q has severity %q, want info, low, medium, high "+
			"or critical", ErrInvalidThreat, th.ID, th.Severity)
	case len(th.Evidence) > MaxEvidencePerThreat:
		return "", fmt.Errorf("%w: threat %q cites %d evidence events, max %d",
			ErrInvalidThreat, th.ID, len(th.Evidence), MaxEvidencePerThreat)
	case len(th.Resources) > MaxResourcesPerThreat:
		return "", fmt.Errorf("%w: threat %q names %d resources, max %d",
			ErrInvalidThreat, th.ID, len(th.Resources), MaxResourcesPerThreat)
	case th.Count < 0:
		return "", fmt.Errorf("%w: threat %q has negative count %d", ErrInvalidThreat,
			th.ID, th.Count)
	}
	for _, r := range th.Resources {
		if r.Type == "" || r.ID == "" || len(r.Type)+len(r.ID) > maxFieldBytes {
			return "", fmt.Errorf("%w: threat %q names a resource without type or id, "+
				"or one longer than %d bytes",
				ErrInvalidThreat, th.ID, maxFieldBytes)
		}
	}

	return typ, nil
}
