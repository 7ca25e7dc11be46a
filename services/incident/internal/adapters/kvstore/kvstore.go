// Package kvstore stores incidents in a JetStream key-value bucket. Every
// write is a compare-and-set on the key's revision, so concurrent replicas
// never overwrite each other, and the bucket keeps the last revisions of
// every incident as an audit trail beside the history inside the record.
package kvstore

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/services/incident/internal/app"
	"github.com/nodexsec/nodex/services/incident/internal/domain"
)

// Bucket is the default bucket name.
const Bucket = "NODEX_INCIDENTS"

// HistoryDepth is the number of revisions JetStream keeps per key; 64 is the
// maximum it allows. The incident record itself keeps its complete history,
// so older revisions are not needed to reconstruct it.
const HistoryDepth = 64

// Key prefixes inside the bucket.
const (
	incidentPrefix = "inc."
	openPrefix     = "open."
	offensePrefix  = "offense."
)

// Store implements app.Store over a KeyValue bucket.
type Store struct {
	kv jetstream.KeyValue
}

var _ app.Store = (*Store)(nil)

// Config returns the bucket configuration: file storage, replicas as given
// (1 for the embedded server, 3 in a cluster), and the maximum history.
func Config(bucket string, replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "NodeX incidents with their lifecycle history",
		History:     HistoryDepth,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	}
}

// Open creates or updates the bucket and returns a Store on it. An existing
// bucket keeps a higher replica count than replicas (see [bus.EnsureKV]).
func Open(ctx context.Context, js jetstream.JetStream, bucket string, replicas int,
) (*Store, error) {
	kv, err := bus.EnsureKV(ctx, js, Config(bucket, replicas))
	if err != nil {
		return nil, fmt.Errorf("opening incident bucket: %w", err)
	}

	return &Store{kv: kv}, nil
}

// identityToken encodes an identity id for a key: ids come from threats and
// may hold characters that KV keys forbid.
func identityToken(identity string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(identity))
}

func openKey(typ domain.Type, identity string) string {
	return openPrefix + typ.SubjectToken() + "." + identityToken(identity)
}

func validID(id string) error {
	if id == "" || strings.ContainsAny(id, ".*> \t\n") || len(id) > 128 {
		return fmt.Errorf("incident %q %w: the id is invalid", id, app.ErrNotFound)
	}

	return nil
}

// Get implements app.Store.
func (s *Store) Get(ctx context.Context, id string) (*domain.Incident, uint64, error) {
	if err := validID(id); err != nil {
		return nil, 0, err
	}
	e, err := s.kv.Get(ctx, incidentPrefix+id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, fmt.Errorf("incident %s %w", id, app.ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("reading incident %s: %w", id, err)
	}
	var inc domain.Incident
	if err := json.Unmarshal(e.Value(), &inc); err != nil {
		return nil, 0, fmt.Errorf("decoding incident %s revision %d: %w", id, e.Revision(), err)
	}

	return &inc, e.Revision(), nil
}

// Create implements app.Store.
func (s *Store) Create(ctx context.Context, inc *domain.Incident) (uint64, error) {
	data, err := json.Marshal(inc)
	if err != nil {
		return 0, fmt.Errorf("encoding incident %s: %w", inc.ID, err)
	}
	rev, err := s.kv.Create(ctx, incidentPrefix+inc.ID, data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, fmt.Errorf("incident %s exists: %w", inc.ID, app.ErrConflict)
	}
	if err != nil {
		return 0, fmt.Errorf("creating incident %s: %w", inc.ID, err)
	}

	return rev, nil
}

// Update implements app.Store.
func (s *Store) Update(ctx context.Context, inc *domain.Incident, rev uint64) (uint64, error) {
	data, err := json.Marshal(inc)
	if err != nil {
		return 0, fmt.Errorf("encoding incident %s: %w", inc.ID, err)
	}
	next, err := s.kv.Update(ctx, incidentPrefix+inc.ID, data, rev)
	if isConflict(err) {
		return 0, fmt.Errorf("incident %s changed since revision %d: %w", inc.ID, rev,
			app.ErrConflict)
	}
	if err != nil {
		return 0, fmt.Errorf("updating incident %s: %w", inc.ID, err)
	}

	return next, nil
}

// isConflict reports a lost compare-and-set. nats.go v1.56 returns
// ErrKeyRevisionMismatch for it; ErrKeyExists also carries code 10071.
func isConflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists)
}

// List implements app.Store.
func (s *Store) List(ctx context.Context) ([]*domain.Incident, error) {
	lister, err := s.kv.ListKeysFiltered(ctx, incidentPrefix+">")
	if err != nil {
		return nil, fmt.Errorf("listing incident keys: %w", err)
	}
	defer func() { _ = lister.Stop() }()
	var out []*domain.Incident
	for key := range lister.Keys() {
		inc, _, err := s.Get(ctx, strings.TrimPrefix(key, incidentPrefix))
		if errors.Is(err, app.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, inc)
	}

	return out, nil
}

// Revisions implements app.Store.
func (s *Store) Revisions(ctx context.Context, id string) ([]app.Revision, error) {
	if err := validID(id); err != nil {
		return nil, err
	}
	entries, err := s.kv.History(ctx, incidentPrefix+id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("incident %s %w", id, app.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading revisions of incident %s: %w", id, err)
	}
	out := make([]app.Revision, 0, len(entries))
	for _, e := range entries {
		var inc domain.Incident
		if err := json.Unmarshal(e.Value(), &inc); err != nil {
			return nil, fmt.Errorf("decoding incident %s revision %d: %w", id, e.Revision(), err)
		}
		out = append(out, app.Revision{Revision: e.Revision(), Created: e.Created(),
			State: string(inc.State), Entries: len(inc.History)})
	}

	return out, nil
}

// ClaimOpen implements app.Store.
func (s *Store) ClaimOpen(ctx context.Context, typ domain.Type, identity, id string,
) (string, error) {
	key := openKey(typ, identity)
	_, err := s.kv.Create(ctx, key, []byte(id))
	if err == nil {
		return id, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return "", fmt.Errorf("claiming %s: %w", key, err)
	}
	holder, err := s.OpenID(ctx, typ, identity)
	if err != nil {
		return "", err
	}

	return holder, fmt.Errorf("%s is held by incident %s: %w", key, holder, app.ErrConflict)
}

// OpenID implements app.Store.
func (s *Store) OpenID(ctx context.Context, typ domain.Type, identity string) (string, error) {
	e, err := s.kv.Get(ctx, openKey(typ, identity))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", fmt.Errorf("open incident of %s for %q %w", typ, identity, app.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("reading open incident of %s for %q: %w", typ, identity, err)
	}

	return string(e.Value()), nil
}

// ReleaseOpen implements app.Store. It deletes the slot with a revision
// check, so it never frees a slot that another incident claimed meanwhile.
func (s *Store) ReleaseOpen(ctx context.Context, typ domain.Type, identity, id string) error {
	key := openKey(typ, identity)
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", key, err)
	}
	if string(e.Value()) != id {
		return nil
	}
	err = s.kv.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
	if err != nil && !isConflict(err) {
		return fmt.Errorf("releasing %s: %w", key, err)
	}

	return nil
}

// NextOffense implements app.Store with a compare-and-set counter per
// identity.
func (s *Store) NextOffense(ctx context.Context, identity string) (int, error) {
	key := offensePrefix + identityToken(identity)
	for range 10 {
		e, err := s.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			if _, err := s.kv.Create(ctx, key, []byte("1")); err == nil {
				return 1, nil
			} else if !errors.Is(err, jetstream.ErrKeyExists) {
				return 0, fmt.Errorf("creating %s: %w", key, err)
			}

			continue
		}
		if err != nil {
			return 0, fmt.Errorf("reading %s: %w", key, err)
		}
		n, err := strconv.Atoi(string(e.Value()))
		if err != nil {
			return 0, fmt.Errorf("decoding %s: %w", key, err)
		}
		if _, err := s.kv.Update(ctx, key, []byte(strconv.Itoa(n+1)), e.Revision()); err == nil {
			return n + 1, nil
		} else if !isConflict(err) {
			return 0, fmt.Errorf("updating %s: %w", key, err)
		}
	}

	return 0, fmt.Errorf("updating %s: %w", key, app.ErrConflict)
}

const threatPrefix = "threat."

// RecordThreat implements app.Store. The value is "<incident id> <revision>";
// a lower revision never replaces a higher one.
func (s *Store) RecordThreat(ctx context.Context, threatID, id string, rev int) error {
	key := threatPrefix + identityToken(threatID)
	if _, old, err := s.ThreatIncident(ctx, threatID); err == nil && old > rev {
		return nil
	}
	if _, err := s.kv.Put(ctx, key, []byte(id+" "+strconv.Itoa(rev))); err != nil {
		return fmt.Errorf("recording threat %s: %w", threatID, err)
	}

	return nil
}

// ThreatIncident implements app.Store.
func (s *Store) ThreatIncident(ctx context.Context, threatID string) (string, int, error) {
	key := threatPrefix + identityToken(threatID)
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", 0, fmt.Errorf("threat %s %w", threatID, app.ErrNotFound)
	}
	if err != nil {
		return "", 0, fmt.Errorf("reading threat %s: %w", threatID, err)
	}
	id, revText, ok := strings.Cut(string(e.Value()), " ")
	rev, err := strconv.Atoi(revText)
	if !ok || err != nil {
		return "", 0, fmt.Errorf("decoding %s: value %q is not \"<incident> <revision>\"", key,
			e.Value())
	}

	return id, rev, nil
}
