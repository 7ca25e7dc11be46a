package domain

import (
	"errors"
	"fmt"
	"time"
)

// State is the lifecycle stage of a key version.
type State string

// Version states. A version is created active; rotation moves the previous
// active version to grace until its RetireAt; retirement and deletion drop
// its sealed material. Disabled versions keep their material but cannot be
// retrieved, which is how incident containment stops use of a leaked key
// without destroying evidence.
const (
	StateActive   State = "active"
	StateGrace    State = "grace"
	StateRetired  State = "retired"
	StateDisabled State = "disabled"
)

// Errors callers branch on.
var (
	ErrKeyNotFound     = errors.New("keyvault: key not found")
	ErrKeyExists       = errors.New("keyvault: key already exists")
	ErrVersionNotFound = errors.New("keyvault: key version not found")
	ErrVersionInactive = errors.New("keyvault: key version is not retrievable")
)

// Sealed is a key value encrypted under its own data key, with the data
// key wrapped by a key encryption key (KEK).
type Sealed struct {
	// WrappedDEK is the data key encrypted under KEK version KEKVersion.
	WrappedDEK []byte `json:"wrapped_dek"`
	KEKVersion int    `json:"kek_version"`
	// Ciphertext is nonce || AES-256-GCM output under the data key.
	Ciphertext []byte `json:"ciphertext"`
}

// Version is one value of a key over time. Number counts from 1.
type Version struct {
	Number   int       `json:"number"`
	State    State     `json:"state"`
	Created  time.Time `json:"created"`
	RetireAt time.Time `json:"retire_at,omitzero"`
	// Sealed is nil once the version is retired: its data key is gone.
	Sealed *Sealed `json:"sealed,omitempty"`
}

// Key is a named provider key with all its versions.
type Key struct {
	Name     string            `json:"name"`
	Provider string            `json:"provider"`
	Labels   map[string]string `json:"labels,omitempty"`
	Created  time.Time         `json:"created"`
	Versions []Version         `json:"versions"`
}

// Latest returns the newest active version.
func (k *Key) Latest() (*Version, error) {
	for i := len(k.Versions) - 1; i >= 0; i-- {
		if k.Versions[i].State == StateActive {
			return &k.Versions[i], nil
		}
	}

	return nil, fmt.Errorf("%w: key %q has no active version", ErrVersionInactive, k.Name)
}

// Retrievable returns version n when it may be handed out at now: active,
// or in grace before its RetireAt. n <= 0 means the latest active version.
func (k *Key) Retrievable(n int, now time.Time) (*Version, error) {
	if n <= 0 {
		return k.Latest()
	}
	v := k.version(n)
	if v == nil {
		return nil, fmt.Errorf("%w: key %q has no version %d", ErrVersionNotFound, k.Name, n)
	}
	ok := v.State == StateActive || (v.State == StateGrace && now.Before(v.RetireAt))
	if !ok || v.Sealed == nil {
		return nil, fmt.Errorf("%w: key %q version %d is %s",
			ErrVersionInactive, k.Name, n, v.State)
	}

	return v, nil
}

func (k *Key) version(n int) *Version {
	for i := range k.Versions {
		if k.Versions[i].Number == n {
			return &k.Versions[i]
		}
	}

	return nil
}

// NextNumber returns the number the next version gets.
func (k *Key) NextNumber() int {
	if len(k.Versions) == 0 {
		return 1
	}

	return k.Versions[len(k.Versions)-1].Number + 1
}

// Rotate appends v as the new active version and moves every other active
// version to grace until now+grace.
func (k *Key) Rotate(v Version, now time.Time, grace time.Duration) {
	for i := range k.Versions {
		if k.Versions[i].State == StateActive {
			k.Versions[i].State = StateGrace
			k.Versions[i].RetireAt = now.Add(grace)
		}
	}
	k.Versions = append(k.Versions, v)
}

// RetireExpired retires grace versions whose RetireAt has passed at now,
// dropping their sealed material, and reports whether anything changed.
func (k *Key) RetireExpired(now time.Time) bool {
	changed := false
	for i := range k.Versions {
		v := &k.Versions[i]
		if v.State == StateGrace && !now.Before(v.RetireAt) {
			v.State = StateRetired
			v.Sealed = nil
			changed = true
		}
	}

	return changed
}

// Disable marks version n (or every retrievable version when n <= 0)
// disabled. Its sealed material stays so an operator can inspect it later.
func (k *Key) Disable(n int) error {
	if n > 0 {
		v := k.version(n)
		if v == nil {
			return fmt.Errorf("%w: key %q has no version %d", ErrVersionNotFound, k.Name, n)
		}
		v.State = StateDisabled

		return nil
	}
	for i := range k.Versions {
		if s := k.Versions[i].State; s == StateActive || s == StateGrace {
			k.Versions[i].State = StateDisabled
		}
	}

	return nil
}

// ActiveVersions returns the versions whose values are still in use:
// active ones and grace ones not yet retired at now.
func (k *Key) ActiveVersions(now time.Time) []*Version {
	var out []*Version
	for i := range k.Versions {
		v := &k.Versions[i]
		if v.Sealed != nil &&
			(v.State == StateActive || (v.State == StateGrace && now.Before(v.RetireAt))) {
			out = append(out, v)
		}
	}

	return out
}

// ErrConflict is returned when a stored record changed between read and
// write; the caller reads it again and retries.
var ErrConflict = errors.New("keyvault: record changed concurrently")

// Usage counts one agent's successful retrieves: today's total for the
// quota, and per provider the all-time count and the last use.
type Usage struct {
	// Day is the UTC date ("2006-01-02") that DayCount belongs to.
	Day       string                   `json:"day"`
	DayCount  int                      `json:"day_count"`
	Providers map[string]ProviderUsage `json:"providers,omitempty"`
}

// ProviderUsage is one agent's use of one provider's keys.
type ProviderUsage struct {
	Count    int64     `json:"count"`
	LastUsed time.Time `json:"last_used"`
}

// Count adds one retrieve at now, starting a new day count when the UTC
// date changed.
func (u *Usage) Count(provider string, now time.Time) {
	day := now.UTC().Format(time.DateOnly)
	if u.Day != day {
		u.Day, u.DayCount = day, 0
	}
	u.DayCount++
	if u.Providers == nil {
		u.Providers = map[string]ProviderUsage{}
	}
	p := u.Providers[provider]
	p.Count++
	p.LastUsed = now
	u.Providers[provider] = p
}

// CountToday returns the retrieves counted on now's UTC date.
func (u *Usage) CountToday(now time.Time) int {
	if u.Day != now.UTC().Format(time.DateOnly) {
		return 0
	}

	return u.DayCount
}

// Clone returns a deep copy of k's version list and labels; sealed data is
// shared, because nothing modifies it in place.
func (k *Key) Clone() *Key {
	c := *k
	c.Versions = append([]Version(nil), k.Versions...)
	if k.Labels != nil {
		c.Labels = make(map[string]string, len(k.Labels))
		for n, v := range k.Labels {
			c.Labels[n] = v
		}
	}

	return &c
}
