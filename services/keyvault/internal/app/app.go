// Package app implements the keyvault's use cases: store, retrieve, rotate,
// list, delete and disable keys, rotate the key encryption key, and publish
// fingerprints. It decides with the policy engine, audits every operation
// before it takes effect, and declares the storage it needs as interfaces.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/services/keyvault/api"
	"github.com/nodexsec/nodex/services/keyvault/internal/domain"
	"github.com/nodexsec/nodex/services/keyvault/internal/sealing"
)

// Store persists keys, usage and service records. Its methods wrap
// [domain.ErrKeyNotFound], [domain.ErrKeyExists] and [domain.ErrConflict].
type Store interface {
	GetKey(ctx context.Context, name string) (*domain.Key, uint64, error)
	CreateKey(ctx context.Context, k *domain.Key) error
	UpdateKey(ctx context.Context, k *domain.Key, rev uint64) error
	DeleteKey(ctx context.Context, name string) error
	ListKeys(ctx context.Context) ([]*domain.Key, error)
	GetUsage(ctx context.Context, agent string) (*domain.Usage, uint64, error)
	PutUsage(ctx context.Context, agent string, u *domain.Usage, rev uint64) error
	SetLastUsed(ctx context.Context, name string, t time.Time) error
	LastUsed(ctx context.Context, name string) (time.Time, error)
	GetMeta(ctx context.Context, name string, v any) error
	CreateMeta(ctx context.Context, name string, v any) error
	UpdateMeta(ctx context.Context, name string, v any) error
	PutFingerprint(ctx context.Context, fp api.Fingerprint) error
	DeleteFingerprint(ctx context.Context, name string, version int) error
	FingerprintExists(ctx context.Context, name string, version int) (bool, error)
}

// Decider returns access decisions; [authz.Engine] implements it.
type Decider interface {
	Decide(ctx context.Context, in authz.Input) (authz.Decision, error)
}

// Auditor persists security events; [events.Publisher] implements it.
type Auditor interface {
	PublishSync(ctx context.Context, ev events.SecurityEvent) error
	Publish(ctx context.Context, ev events.SecurityEvent)
}

// KEKRotator adds a KEK version. A keyring that cannot be written (one read
// from the environment, or a KMS rotated elsewhere) returns an error.
type KEKRotator interface {
	Rotate() (int, error)
}

// Caller is the authenticated identity behind a request.
type Caller struct {
	ID     string
	Kind   string
	Roles  []string
	Status string
}

// Limits bound each agent's retrieves.
type Limits struct {
	// RatePerSecond and Burst form a token bucket per caller, per process.
	// Zero RatePerSecond disables the rate limit.
	RatePerSecond float64
	Burst         int
	// DailyQuota bounds a caller's successful retrieves per UTC day across
	// every replica. Zero disables the quota.
	DailyQuota int
}

// Deps are the service's collaborators. Every field but Now is required.
type Deps struct {
	Store   Store
	KEK     sealing.KEK
	Decider Decider
	Audit   Auditor
	Log     *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Grace is how long rotated versions stay retrievable.
	Grace  time.Duration
	Limits Limits
}

// Service implements the use cases. It is safe for concurrent use.
type Service struct {
	d   Deps
	log *slog.Logger

	limMu    sync.Mutex
	limiters map[string]*rate.Limiter

	fpMu  sync.Mutex
	fpKey []byte // loaded on first use
}

// New returns a Service. It panics on a missing dependency, which is a
// programming error.
func New(d Deps) *Service {
	if d.Store == nil || d.KEK == nil || d.Decider == nil || d.Audit == nil || d.Log == nil {
		panic("keyvault/app: New needs Store, KEK, Decider, Audit and Log")
	}
	if d.Now == nil {
		d.Now = time.Now
	}

	return &Service{d: d, log: d.Log.With("component", "app"), limiters: map[string]*rate.Limiter{}}
}

// retryCAS runs fn until it succeeds or fails with anything but a conflict.
func retryCAS(ctx context.Context, fn func() error) error {
	for attempt := 0; ; attempt++ {
		err := fn()
		if !errors.Is(err, domain.ErrConflict) || attempt >= 20 {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("retrying after conflict: %w", ctx.Err())
		}
	}
}
