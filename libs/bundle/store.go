package bundle

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/bus"
)

// BundlesBucket is the JetStream Object Store that holds sealed bundles,
// one object per bundle id.
const BundlesBucket = "NODEX_BUNDLES"

// ErrNotFound means no bundle with the requested id is stored.
var ErrNotFound = errors.New("bundle: not found")

// CheckID returns an error unless id is 1 to 64 characters of A-Z, a-z, 0-9,
// '-' and '_', so that it is safe as an object name, a KV key and a log
// value.
func CheckID(id string) error {
	if len(id) == 0 || len(id) > 64 {
		return fmt.Errorf("%w: bundle id of %d characters, want 1 to 64", ErrInvalidInput, len(id))
	}
	for _, c := range id {
		ok := c == '-' || c == '_' || ('0' <= c && c <= '9') ||
			('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
		if !ok {
			return fmt.Errorf("%w: bundle id %q may contain only A-Z, a-z, 0-9, - and _",
				ErrInvalidInput, id)
		}
	}

	return nil
}

// Store keeps bundles in the [BundlesBucket] Object Store. It is safe for
// concurrent use.
type Store struct {
	objects jetstream.ObjectStore
	// misses reads an id that is not found again.
	misses *bus.MissRetry
}

// maxRetryingMisses bounds how many Gets wait for a missing bundle at
// once (see [bus.MissRetry]).
const maxRetryingMisses = 4

// OpenStore creates the [BundlesBucket] Object Store with replicas (zero
// means 1) if it does not exist, and returns a [Store] on it. An existing
// store with more replicas keeps them.
func OpenStore(ctx context.Context, js jetstream.JetStream, replicas int) (*Store, error) {
	objects, err := bus.EnsureObjectStore(ctx, js, jetstream.ObjectStoreConfig{
		Bucket:      BundlesBucket,
		Description: "sealed code bundles, one object per bundle id",
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, err
	}

	return &Store{objects: objects, misses: bus.NewMissRetry(MissWait, maxRetryingMisses)}, nil
}

// BindStore binds the existing [BundlesBucket] Object Store without
// creating or changing it, for parties such as the sandbox-runner that
// may only read bundles.
func BindStore(ctx context.Context, js jetstream.JetStream) (*Store, error) {
	objects, err := js.ObjectStore(ctx, BundlesBucket)
	if err != nil {
		return nil, fmt.Errorf("binding object store %s: %w", BundlesBucket, err)
	}

	return &Store{objects: objects, misses: bus.NewMissRetry(MissWait, maxRetryingMisses)}, nil
}

// Put stores b under id, returning once JetStream has acknowledged it.
func (s *Store) Put(ctx context.Context, id string, b *Bundle) error {
	if err := CheckID(id); err != nil {
		return err
	}
	if _, err := s.objects.PutBytes(ctx, id, b.Marshal()); err != nil {
		return fmt.Errorf("storing bundle %q: %w", id, err)
	}

	return nil
}

// Get loads and parses the bundle stored under id. It returns an error
// wrapping [ErrNotFound] when there is none. The bundle is not verified.
//
// The object's metadata is read with a direct get, which any replica of
// the store may serve, and a follower can lag the acknowledgement codesec
// waited for before it returned the bundle id. So an id that is not found
// is read again with a growing pause for up to [MissWait] (or until ctx
// ends) before Get reports it missing, by at most a few Gets at once.
func (s *Store) Get(ctx context.Context, id string) (*Bundle, error) {
	if err := CheckID(id); err != nil {
		return nil, err
	}
	var data []byte
	err := s.misses.Do(ctx, func() error {
		var err error
		data, err = s.objects.GetBytes(ctx, id)
		return err
	}, func(err error) bool { return errors.Is(err, jetstream.ErrObjectNotFound) })
	switch {
	case errors.Is(err, jetstream.ErrObjectNotFound):
		return nil, fmt.Errorf("%w: bundle %q", ErrNotFound, id)
	case err != nil:
		return nil, fmt.Errorf("loading bundle %q: %w", id, err)
	}

	return Parse(data)
}

// MissWait bounds how long [Store.Get] reads a bundle id again that no
// replica has yet.
const MissWait = 2 * time.Second
