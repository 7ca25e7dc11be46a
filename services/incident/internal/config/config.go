// Package config holds the incident service's configuration: names of its
// stream, consumer and bucket, timings, and the containment playbook per
// incident type, with defaults and validation.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/nodexsec/nodex/services/incident/internal/domain"
)

// Defaults for zero fields.
const (
	DefaultBucket         = "NODEX_INCIDENTS"
	DefaultThreatsStream  = "NODEX_THREATS"
	DefaultConsumer       = "incident-threats"
	DefaultEventsStream   = "NODEX_EVENTS"
	DefaultResumeInterval = 30 * time.Second
	DefaultExpiryInterval = 15 * time.Second
	DefaultMaxAttempts    = 5
	DefaultWindow         = 15 * time.Minute
	DefaultTimelineLimit  = 500
	DefaultNakDelay       = 2 * time.Second
	DefaultTightenedRPM   = 6
)

// Config configures the incident service. Zero fields take their defaults.
type Config struct {
	// Bucket is the KV bucket of incidents.
	Bucket string
	// Replicas is the replication factor of the bucket; zero means 1.
	Replicas int
	// ThreatsStream and Consumer name the stream monitor publishes threats
	// to and the durable consumer that reads it.
	ThreatsStream string
	Consumer      string
	// EventsStream is read by investigations.
	EventsStream string
	// ResumeInterval is how often incidents that are not closed are
	// advanced again, which retries failed actions.
	ResumeInterval time.Duration
	// ExpiryInterval is how often expired containments are lifted.
	ExpiryInterval time.Duration
	// MaxAttempts bounds automatic retries of one failed action.
	MaxAttempts int
	// WindowBefore and WindowAfter widen the investigation window around
	// the incident's first and last sighting.
	WindowBefore time.Duration
	WindowAfter  time.Duration
	// TimelineLimit caps the events one investigation stores.
	TimelineLimit int
	// NakDelay is the redelivery delay of a threat that failed for a
	// transient reason, such as a stale registry view.
	NakDelay time.Duration
	// TightenedRequestsPerMinute is the rate a tightened limit allows.
	TightenedRequestsPerMinute int
	// PlaybookFile, if set, is a JSON playbook that replaces the defaults
	// (format in services/incident/README.md).
	PlaybookFile string
	// Playbook is the containment per type; nil means the default, or the
	// content of PlaybookFile.
	Playbook *Playbook
}

// ErrInvalid wraps every validation failure.
var ErrInvalid = errors.New("incident: invalid configuration")

// WithDefaults returns c with zero fields set to their defaults. It loads
// PlaybookFile when Playbook is nil.
func (c Config) WithDefaults() (Config, error) {
	setString(&c.Bucket, DefaultBucket)
	setString(&c.ThreatsStream, DefaultThreatsStream)
	setString(&c.Consumer, DefaultConsumer)
	setString(&c.EventsStream, DefaultEventsStream)
	setDuration(&c.ResumeInterval, DefaultResumeInterval)
	setDuration(&c.ExpiryInterval, DefaultExpiryInterval)
	setDuration(&c.WindowBefore, DefaultWindow)
	setDuration(&c.WindowAfter, DefaultWindow)
	setDuration(&c.NakDelay, DefaultNakDelay)
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.TimelineLimit == 0 {
		c.TimelineLimit = DefaultTimelineLimit
	}
	if c.TightenedRequestsPerMinute == 0 {
		c.TightenedRequestsPerMinute = DefaultTightenedRPM
	}
	if c.Playbook == nil && c.PlaybookFile != "" {
		p, err := LoadPlaybook(c.PlaybookFile)
		if err != nil {
			return c, err
		}
		c.Playbook = p
	}
	if c.Playbook == nil {
		p := DefaultPlaybook()
		c.Playbook = &p
	}

	return c, nil
}

func setString(s *string, def string) {
	if *s == "" {
		*s = def
	}
}

func setDuration(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}

// Validate checks c after WithDefaults.
func (c Config) Validate() error {
	if c.Replicas < 0 || c.Replicas > 5 {
		return fmt.Errorf("%w: replicas %d must be between 1 and 5", ErrInvalid, c.Replicas)
	}
	for name, d := range map[string]time.Duration{
		"resume interval": c.ResumeInterval, "expiry interval": c.ExpiryInterval,
		"nak delay": c.NakDelay,
	} {
		if d <= 0 {
			return fmt.Errorf("%w: %s %s must be positive", ErrInvalid, name, d)
		}
	}
	if c.WindowBefore < 0 || c.WindowAfter < 0 || c.MaxAttempts < 0 || c.TimelineLimit < 0 ||
		c.TightenedRequestsPerMinute < 0 {
		return fmt.Errorf("%w: windows, attempts, timeline limit and tightened rate must not "+
			"be negative", ErrInvalid)
	}
	if c.Playbook == nil {
		return fmt.Errorf("%w: no playbook; call WithDefaults first", ErrInvalid)
	}

	return c.Playbook.Validate()
}

// Duration is a time.Duration written as a Go duration string ("90m") in
// the playbook file.
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string such as "1h30m".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"1h\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)

	return nil
}

// Step is one containment action of a playbook.
type Step struct {
	Action domain.ActionKind `json:"action"`
	Mode   domain.Mode       `json:"mode"`
	// Expiry lifts the action automatically after this long; empty or "0s"
	// keeps it until an operator lifts it.
	Expiry Duration `json:"expiry,omitempty"`
}

// Escalation is the playbook's repeat-offender rule.
type Escalation struct {
	Factor        int      `json:"factor"`
	MaxExpiry     Duration `json:"max_expiry"`
	PermanentFrom int      `json:"permanent_from"`
}

// Playbook is the containment configuration: which actions each incident
// type runs, and whether each runs on its own or waits for an operator.
type Playbook struct {
	Types      map[domain.Type][]Step `json:"types"`
	Escalation Escalation             `json:"escalation"`
}

// DefaultPlaybook returns the shipped containment: every action automatic,
// suspensions and restrictions of a first offence lifted after an hour.
func DefaultPlaybook() Playbook {
	auto := func(k domain.ActionKind, expiry time.Duration) Step {
		return Step{Action: k, Mode: domain.ModeAuto, Expiry: Duration(expiry)}
	}

	return Playbook{
		Types: map[domain.Type][]Step{
			domain.UnauthorizedAccess: {auto(domain.ActSuspendIdentity, time.Hour)},
			domain.APIAbuse: {auto(domain.ActSuspendKeyAccess, time.Hour),
				auto(domain.ActTightenRateLimit, time.Hour)},
			domain.CodeInjection: {auto(domain.ActRevokeBundle, 0),
				auto(domain.ActKillSandboxes, 0)},
			domain.DataBreach: {auto(domain.ActDisableKeyVersion, 0),
				auto(domain.ActSuspendIdentity, 0)},
			domain.SystemCompromise: {auto(domain.ActQuarantineIdentity, 0),
				auto(domain.ActAlert, 0)},
		},
		Escalation: Escalation{Factor: 2, MaxExpiry: Duration(24 * time.Hour), PermanentFrom: 4},
	}
}

// LoadPlaybook reads and validates a JSON playbook file.
func LoadPlaybook(path string) (*Playbook, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading playbook: %w", err)
	}
	var p Playbook
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("%w: decoding playbook %s: %w", ErrInvalid, path, err)
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("playbook %s: %w", path, err)
	}

	return &p, nil
}

// Validate checks every type, action, mode and expiry of the playbook.
func (p *Playbook) Validate() error {
	for typ, steps := range p.Types {
		if parsed, err := domain.ParseType(string(typ)); err != nil || parsed != typ {
			return fmt.Errorf("%w: playbook type %q, want one of %v", ErrInvalid, typ,
				domain.Types)
		}
		for _, s := range steps {
			if !slices.Contains(domain.ActionKinds, s.Action) {
				return fmt.Errorf("%w: %s: action %q, want one of %v", ErrInvalid, typ,
					s.Action, domain.ActionKinds)
			}
			if s.Mode != domain.ModeAuto && s.Mode != domain.ModeApproval {
				return fmt.Errorf("%w: %s %s: mode %q, want auto or approval", ErrInvalid, typ,
					s.Action, s.Mode)
			}
			if s.Expiry < 0 || (s.Expiry > 0 && !s.Action.Liftable()) {
				return fmt.Errorf("%w: %s %s: expiry %s; only suspensions, restrictions and "+
					"quarantines may expire, and never negatively", ErrInvalid, typ, s.Action,
					time.Duration(s.Expiry))
			}
		}
	}
	e := p.Escalation
	if e.Factor < 0 || e.MaxExpiry < 0 || e.PermanentFrom < 0 {
		return fmt.Errorf("%w: escalation values must not be negative", ErrInvalid)
	}

	return nil
}

// Rules returns the playbook in the app layer's form.
func (p *Playbook) Rules() (map[domain.Type][]domain.ActionRule, domain.Escalation) {
	out := make(map[domain.Type][]domain.ActionRule, len(p.Types))
	for typ, steps := range p.Types {
		for _, s := range steps {
			out[typ] = append(out[typ], domain.ActionRule{Kind: s.Action, Mode: s.Mode,
				Expiry: time.Duration(s.Expiry)})
		}
	}
	esc := domain.Escalation{Factor: p.Escalation.Factor,
		MaxExpiry: time.Duration(p.Escalation.MaxExpiry), PermanentFrom: p.Escalation.PermanentFrom}

	return out, esc
}

// String summarizes the settings for the configuration line logged at start.
func (c Config) String() string {
	return fmt.Sprintf("bucket=%s stream=%s consumer=%s events=%s playbook_file=%q",
		c.Bucket, c.ThreatsStream, c.Consumer, c.EventsStream, c.PlaybookFile)
}
