package bus

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/nodexsec/nodex/libs/envelope"
	"github.com/nodexsec/nodex/libs/ratelimit"
)

// Defaults for the zero values of [Config].
const (
	DefaultRequestTimeout     = 5 * time.Second
	DefaultHandlerConcurrency = 32
	DefaultRequestsPerSec     = 50
	DefaultRequestBurst       = 100
	DefaultRateLimitSenders   = 100_000
)

// Config configures a [Client]. Conn and Codec are required.
type Config struct {
	// Conn is a connection opened with this identity's NATS credentials.
	// The Client never closes it.
	Conn *nats.Conn
	// Codec seals and opens envelopes as this identity.
	Codec *envelope.Codec

	// RequestTimeout bounds Request when ctx has no deadline, and a
	// handler's work when a request lacks [HeaderTimeout]. Default 5s.
	RequestTimeout time.Duration
	// RequestsPerSecond and RequestBurst set each sender's token bucket on
	// every subject this Client handles. Defaults 50 and 100.
	RequestsPerSecond float64
	RequestBurst      int
	// Now returns the current time for rate limiting; nil means time.Now.
	Now func() time.Time
	// HandlerConcurrency bounds how many requests of one Handle run at
	// once. Default 32. When all are busy, delivery on that subscription
	// waits, so the backlog stays in NATS's pending buffer.
	HandlerConcurrency int

	// OnError, if set, receives errors the Client handles without a caller to
	// return them to: handler failures (before they become coded replies),
	// replies that could not be sent, and stream messages naked or
	// terminated. It must not block.
	OnError func(ctx context.Context, subject string, err error)
}

// Client sends and receives sealed messages as one identity. It is safe for
// concurrent use.
type Client struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	asyncJS jetstream.JetStream // for PublishAsync; its acks time out after RequestTimeout
	codec   *envelope.Codec
	cfg     Config
	limiter *ratelimit.PerKey

	inboxOnce sync.Once
	inboxErr  error
	inbox     string // prefix of reply subjects; one wildcard subscription serves all
	inboxSub  *nats.Subscription
	pendingMu sync.Mutex
	pending   map[string]chan *nats.Msg

	mu        sync.Mutex
	subs      []*nats.Subscription
	consumers []jetstream.ConsumeContext
	inflight  sync.WaitGroup
	draining  bool
	// waiting is set under mu once Drain waits on inflight; begin refuses
	// new work from then on, so no Add races with the Wait.
	waiting bool
}

// ErrSharedKey reports a connection whose NATS key is the envelope signing
// key. The NATS server picks the nonce that key signs, so a hostile server
// could obtain a signature over an envelope's signing input.
var ErrSharedKey = errors.New("bus: NATS connection key is the envelope signing key; " +
	"give the identity a separate NATS key")

// checkKeySeparation signs a probe with the connection's nonce signer and
// fails if the envelope key verifies it. Connections without a signer
// (token or password auth) have no key to compare.
func checkKeySeparation(nc *nats.Conn, envelopeKey ed25519.PublicKey) error {
	sign := nc.Opts.SignatureCB
	if sign == nil {
		return nil
	}
	probe := make([]byte, 0, 64)
	probe = append(probe, "nodex/v1/key-separation-probe\x00"...)
	probe = append(probe, nuid.Next()...)
	sig, err := sign(probe)
	if err != nil {
		return fmt.Errorf("probing the NATS connection key: %w", err)
	}
	if ed25519.Verify(envelopeKey, probe, sig) {
		return ErrSharedKey
	}

	return nil
}

// ErrDraining reports a call made after Drain started.
var ErrDraining = errors.New("bus: client is draining")

// New returns a Client for cfg.
func New(cfg Config) (*Client, error) {
	if cfg.Conn == nil || cfg.Codec == nil {
		return nil, errors.New("bus: config needs Conn and Codec")
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.RequestsPerSecond <= 0 {
		cfg.RequestsPerSecond = DefaultRequestsPerSec
	}
	if cfg.RequestBurst <= 0 {
		cfg.RequestBurst = DefaultRequestBurst
	}
	if cfg.HandlerConcurrency <= 0 {
		cfg.HandlerConcurrency = DefaultHandlerConcurrency
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := checkKeySeparation(cfg.Conn, cfg.Codec.SigningPublicKey()); err != nil {
		return nil, err
	}
	js, err := jetstream.New(cfg.Conn)
	if err != nil {
		return nil, fmt.Errorf("creating JetStream context: %w", err)
	}
	// Without an ack timeout, a future whose acknowledgement never comes
	// stays in the context's pending map for the life of the connection.
	asyncJS, err := jetstream.New(cfg.Conn, jetstream.WithPublishAsyncTimeout(cfg.RequestTimeout))
	if err != nil {
		return nil, fmt.Errorf("creating JetStream context: %w", err)
	}

	return &Client{
		nc: cfg.Conn, js: js, asyncJS: asyncJS, codec: cfg.Codec, cfg: cfg,
		limiter: ratelimit.New(cfg.RequestsPerSecond, cfg.RequestBurst,
			DefaultRateLimitSenders, cfg.Now),
		pending: make(map[string]chan *nats.Msg),
	}, nil
}

// ID returns the identity id this Client sends as.
func (c *Client) ID() string { return c.codec.ID() }

// NATS returns the underlying connection.
func (c *Client) NATS() *nats.Conn { return c.nc }

// JetStream returns a JetStream context on the connection.
func (c *Client) JetStream() jetstream.JetStream { return c.js }

// Codec returns the envelope codec.
func (c *Client) Codec() *envelope.Codec { return c.codec }

// Drain stops receiving: request subscriptions drain (messages already
// delivered are handled and replied to), stream consumers stop, and Drain
// returns when every running handler has returned or ctx ends. The
// connection stays open for the caller to drain or close.
func (c *Client) Drain(ctx context.Context) error {
	c.mu.Lock()
	c.draining = true
	subs, consumers := c.subs, c.consumers
	c.subs, c.consumers = nil, nil
	c.mu.Unlock()

	var errs []error
	for _, s := range subs {
		if err := s.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			errs = append(errs, fmt.Errorf("draining %s: %w", s.Subject, err))
		}
	}
	for _, cc := range consumers {
		cc.Drain()
	}
	done := make(chan struct{})
	go func() {
		for _, s := range subs {
			for s.IsValid() {
				time.Sleep(5 * time.Millisecond)
			}
		}
		c.mu.Lock()
		c.waiting = true
		c.mu.Unlock()
		c.inflight.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("waiting for handlers: %w", ctx.Err()))
	}
	if c.inboxSub != nil {
		_ = c.inboxSub.Unsubscribe()
	}

	return errors.Join(errs...)
}

// begin counts one message as in flight, unless Drain is already waiting
// for the in-flight work to finish. A message refused here is not acked, so
// JetStream redelivers it to another replica or after a restart.
func (c *Client) begin() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.waiting {
		return false
	}
	c.inflight.Add(1)

	return true
}

// track registers a subscription for Drain, or reports ErrDraining.
func (c *Client) track(s *nats.Subscription, cc jetstream.ConsumeContext) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.draining {
		return ErrDraining
	}
	if s != nil {
		c.subs = append(c.subs, s)
	}
	if cc != nil {
		c.consumers = append(c.consumers, cc)
	}

	return nil
}

func (c *Client) reportError(ctx context.Context, subject string, err error) {
	if c.cfg.OnError != nil {
		c.cfg.OnError(ctx, subject, err)
	}
}
