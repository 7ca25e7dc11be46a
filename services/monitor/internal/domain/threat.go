package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// Limits on one threat's lists and names. Count keeps counting past them.
// Consumers such as the incident service reject threats whose identity,
// origin or resources exceed 256 bytes, so longer resources and origins are
// cut, and a longer identity is not named.
const (
	MaxEvidence      = 64
	MaxResources     = 16
	MaxResourceBytes = 200
)

// Threat is one detected attack. The monitor publishes a threat when it is
// raised and again, with a higher Revision and the same ID, as more evidence
// arrives. Consumers keep the highest revision of each ID.
type Threat struct {
	ID       string `json:"id"`
	Revision int    `json:"revision"`
	Type     string `json:"type"`
	Severity string `json:"severity"`

	// Identity is the authenticated identity the evidence is about, or ""
	// when no evidence authenticates one; containment acts on it only.
	Identity string `json:"identity,omitempty"`

	// Origin is the transport origin of the first evidence event, which is
	// the only attribution a forged event gets.
	Origin string `json:"origin"`

	// Group is the rule's grouping, "field=value" pairs joined by ",".
	Group       string    `json:"group"`
	Resources   []string  `json:"resources"`
	RuleID      string    `json:"rule_id"`
	Description string    `json:"description"`
	Evidence    []string  `json:"evidence"`
	FirstSeen   time.Time `json:"first_seen"`
	LastSeen    time.Time `json:"last_seen"`
	Count       int       `json:"count"`
}

// Subject returns the NATS subject the threat is published on.
func (t *Threat) Subject() string {
	return "nodex.v1.threats." + strings.ToLower(t.Type)
}

// MsgID returns the JetStream deduplication id of this revision, so that a
// revision published twice (for example after a restart) is stored once.
func (t *Threat) MsgID() string {
	return t.ID + "." + strconv.Itoa(t.Revision)
}

// threatID derives a threat's id from its rule, group and first evidence,
// so that re-raising the same threat from the same events after a restart
// yields the same id.
func threatID(ruleID, group, firstEvidence string) string {
	h := sha256.New()
	for _, s := range []string{ruleID, group, firstEvidence} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}

	return "thr_" + hex.EncodeToString(h.Sum(nil)[:12])
}

// PublishInterval is the longest a changed threat waits for its next
// revision when its count has not reached the next power of two.
// [Engine.PendingRevisions] publishes threats that stop receiving evidence.
const PublishInterval = 10 * time.Second

// activeThreat is a threat that can still take evidence.
type activeThreat struct {
	Threat
	dedupe        time.Duration
	publishedAt   time.Time
	pending       bool
	identityValid bool
}

// add records one more piece of evidence and reports whether a new revision
// is due: at each power-of-two count, or PublishInterval after the last
// published revision. So a flood of N events yields about log2(N) revisions.
func (a *activeThreat) add(o *Observation, attribute bool) bool {
	a.Count++
	if a.LastSeen.Before(o.At) {
		a.LastSeen = o.At
	}
	if len(a.Evidence) < MaxEvidence {
		a.Evidence = append(a.Evidence, o.Event.ID)
	}
	addObservedResource(&a.Threat, o)
	a.pending = true
	if attribute && a.identityValid && o.Identity() != a.Identity {
		// Evidence about different identities: name none of them.
		a.Identity = ""
		a.identityValid = false
	}

	return a.Count&(a.Count-1) == 0 || o.At.Sub(a.publishedAt) >= PublishInterval
}

// addObservedResource adds o's resource to t, unless an agent named it.
// Containment revokes the bundles and disables the keys a threat names,
// and an agent could name anyone's, so its events never name resources.
func addObservedResource(t *Threat, o *Observation) {
	if o.SenderKind == "agent" {
		return
	}
	addResource(t, o.Event.Resource)
}

func addResource(t *Threat, resource string) {
	if resource == "" || len(t.Resources) >= MaxResources {
		return
	}
	r := cut(Escape(resource), MaxResourceBytes)
	for _, have := range t.Resources {
		if have == r {
			return
		}
	}
	t.Resources = append(t.Resources, r)
}

// cut returns s shortened to at most n bytes of valid UTF-8.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}

	return strings.ToValidUTF8(s[:n], "")
}
