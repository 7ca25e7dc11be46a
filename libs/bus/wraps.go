package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/envelope"
)

// DefaultWrapMaxAge bounds how long wrap records live. Stored wraps give no
// forward secrecy: anyone who later obtains a recipient's private key and the
// wrap can read every message of that epoch. Past this age, messages of the
// epoch can no longer be opened, so stream readers must keep up within it.
const DefaultWrapMaxAge = 7 * 24 * time.Hour

// WrapStore is the [envelope.WrapStore] over the JetStream KV bucket
// [envelope.WrapBucket]. It reads with the JetStream direct get of one key
// ($JS.API.DIRECT.GET.KV_NODEX_WRAPS.$KV.NODEX_WRAPS.<key>), the one read
// the broker lets an agent make on this bucket, limited to wraps addressed
// to the agent, its roles, or sent by it. Create publishes with an expected
// last subject sequence of 0, which the server refuses when the key exists,
// and returns after the stream ack. Neither needs the stream info request,
// which agents may not make because it can list every key.
type WrapStore struct {
	js jetstream.JetStream
	// legacy also looks a missing key up under [envelope.WrapKey.LegacyString].
	legacy bool
	// misses reads a key that is not found again.
	misses *MissRetry
}

// maxRetryingMisses bounds how many Gets of one store wait for a missing
// wrap at once. The wrap lookup runs inside Open, before the sender's rate
// limit applies, so under a flood of requests naming wraps that do not
// exist a wrap that a lagging replica has not yet applied can fail the
// request that needs it.
const maxRetryingMisses = 4

var _ envelope.WrapStore = (*WrapStore)(nil)

// DefaultWrapMissWait is how long [WrapStore.Get] keeps retrying a wrap
// that is not found. KV reads are direct gets, which any replica of the
// bucket may serve, and a follower can lag the acknowledgement the
// sender waited for by a few milliseconds (more on a loaded host). Only
// an authenticated sender can make a receiver look a wrap up, because the
// signature is checked first.
const DefaultWrapMissWait = 2 * time.Second

// WrapStoreOptions configure [OpenWrapStore]. The zero value takes the
// defaults.
type WrapStoreOptions struct {
	// MaxAge is the TTL of wrap records; zero means [DefaultWrapMaxAge].
	MaxAge time.Duration
	// Replicas is the replica count of the bucket if this call creates
	// it; zero means 1.
	Replicas int
	// MissWait bounds the retries of a wrap that is not found; zero means
	// [DefaultWrapMissWait], negative means no retry.
	MissWait time.Duration
}

// NewWrapStore is [OpenWrapStore] with only MaxAge set. It needs the
// stream info of the bucket, so agents use [BindWrapStore].
func NewWrapStore(ctx context.Context, js jetstream.JetStream, maxAge time.Duration) (*WrapStore, error) {
	return OpenWrapStore(ctx, js, WrapStoreOptions{MaxAge: maxAge})
}

// OpenWrapStore binds to the wrap bucket, creating it with o.MaxAge and
// o.Replicas if it does not exist. An existing bucket keeps its
// configuration, so a restarted party never lowers its replication, and
// parties without the right to manage the bucket can still bind. In a
// cluster the broker creates the bucket and raises its replicas.
func OpenWrapStore(ctx context.Context, js jetstream.JetStream, o WrapStoreOptions) (*WrapStore, error) {
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultWrapMaxAge
	}
	switch {
	case o.MissWait == 0:
		o.MissWait = DefaultWrapMissWait
	case o.MissWait < 0:
		o.MissWait = 0
	}
	want := max(o.Replicas, 1)
	kv, err := js.KeyValue(ctx, envelope.WrapBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, wrapBucketConfig(o.MaxAge, want))
		if errors.Is(err, jetstream.ErrBucketExists) {
			// Another party created it first, perhaps with other settings.
			kv, err = js.KeyValue(ctx, envelope.WrapBucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("binding KV bucket %s: %w", envelope.WrapBucket, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading KV bucket %s status: %w", envelope.WrapBucket, err)
	}
	if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok && !bs.StreamInfo().Config.AllowDirect {
		return nil, fmt.Errorf("KV bucket %s has direct get disabled: recreate it, or "+
			"set allow_direct on stream KV_%s", envelope.WrapBucket, envelope.WrapBucket)
	}

	return &WrapStore{js: js, legacy: true,
		misses: NewMissRetry(o.MissWait, maxRetryingMisses)}, nil
}

// wrapBucketConfig is the configuration of a new wrap bucket.
func wrapBucketConfig(maxAge time.Duration, replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      envelope.WrapBucket,
		Description: "NodeX content-key wraps, one per sender, epoch and recipient",
		History:     1,
		TTL:         maxAge,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}
}

// BindWrapStore returns a store over the existing wrap bucket without any
// request: an agent's path, since agents may neither create the bucket nor
// read its stream info. A missing bucket shows as an error of the first
// Get or Create.
func BindWrapStore(js jetstream.JetStream) *WrapStore {
	return &WrapStore{js: js, misses: NewMissRetry(DefaultWrapMissWait, maxRetryingMisses)}
}

// wrapSubject returns the KV subject of key.
func wrapSubject(key string) string { return "$KV." + envelope.WrapBucket + "." + key }

// Create implements [envelope.WrapStore].
func (s *WrapStore) Create(ctx context.Context, key envelope.WrapKey, wrap []byte) error {
	_, err := s.js.Publish(ctx, wrapSubject(key.String()), wrap,
		jetstream.WithExpectLastSequencePerSubject(0))
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return fmt.Errorf("creating wrap %s: %w", key, envelope.ErrWrapExists)
	}
	if err != nil {
		return fmt.Errorf("creating wrap %s: %w", key, err)
	}

	return nil
}

// Get implements [envelope.WrapStore]. A key that is not found is read
// again (see [MissRetry]), so a lagging replica does not turn a valid
// message into a rejected one.
func (s *WrapStore) Get(ctx context.Context, key envelope.WrapKey) ([]byte, error) {
	var v []byte
	err := s.misses.Do(ctx, func() error {
		var err error
		v, err = s.get(ctx, key.String())
		if errors.Is(err, envelope.ErrNotFound) && s.legacy {
			v, err = s.get(ctx, key.LegacyString())
		}
		return err
	}, func(err error) bool { return errors.Is(err, envelope.ErrNotFound) })
	if err != nil {
		return nil, fmt.Errorf("getting wrap %s: %w", key, err)
	}

	return v, nil
}

// get reads the last value of one KV key with a direct get. A reply with
// no data and a Status header is the server's "no message" (404) or
// another failure.
func (s *WrapStore) get(ctx context.Context, key string) ([]byte, error) {
	subject := "$JS.API.DIRECT.GET.KV_" + envelope.WrapBucket + "." + wrapSubject(key)
	msg, err := s.js.Conn().RequestWithContext(ctx, subject, nil)
	if err != nil {
		return nil, err
	}
	if status := msg.Header.Get("Status"); len(msg.Data) == 0 && status != "" {
		if status == "404" {
			return nil, envelope.ErrNotFound
		}
		return nil, fmt.Errorf("direct get of %s failed: status %s %s", key, status,
			msg.Header.Get("Description"))
	}
	// Wraps are never deleted, but a delete or purge marker must still not
	// read as an empty wrap.
	if op := msg.Header.Get("KV-Operation"); op != "" {
		return nil, envelope.ErrNotFound
	}

	return msg.Data, nil
}
