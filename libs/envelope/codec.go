package envelope

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Defaults for the zero values of [Config].
const (
	DefaultWindow           = 30 * time.Second
	DefaultMaxFrameBytes    = 1 << 20
	DefaultMaxRecipients    = 16
	DefaultMaxEpochAge      = 10 * time.Minute
	DefaultMaxEpochMessages = 1 << 20
	DefaultReplayEntries    = 1 << 18
	DefaultKeyCacheEntries  = 1 << 14
	DefaultRejectsPerSecond = 10
)

// Config configures a [Codec]. Keys, Directory and Wraps are required; a
// zero value in any other field selects its default.
type Config struct {
	Keys      Keys
	Directory Directory
	Wraps     WrapStore

	// Now returns the current time; nil means time.Now. Tests pass a fake clock.
	Now func() time.Time
	// Rand is the source of content keys and message ids; nil means crypto/rand.
	Rand io.Reader

	// Window is W: requests and replies are accepted within W of the
	// receiver's clock, and stream messages within W of their stored stream
	// time. Default 30s, which assumes NTP-synchronised clocks.
	Window time.Duration
	// MaxFrameBytes caps an envelope's size before any parsing. Default 1 MiB,
	// the default max_payload of nats-server.
	MaxFrameBytes int
	// MaxRecipients caps the recipients of one envelope. Default 16.
	MaxRecipients int
	// MaxEpochAge and MaxEpochMessages end a sending epoch by age and count.
	// Defaults 10 minutes and 2^20 messages. An epoch also ends at once when a
	// recipient's key version or role epoch changes, or the sender's signing
	// key rotates.
	MaxEpochAge      time.Duration
	MaxEpochMessages uint64
	// ReplayEntries caps the replay cache. When it is full of unexpired
	// entries, new requests are rejected as replays (fail closed). The
	// default, 2^18, sustains about 8,700 requests per second with W = 30s.
	ReplayEntries int
	// KeyCacheEntries caps the cache of unwrapped content keys. Default 2^14.
	KeyCacheEntries int

	// OnReject, if set, receives every rejection, rate limited to
	// RejectsPerSecond (default 10, burst twice that). A report never names
	// the message's claimed sender: a rejected message proves nothing about
	// who sent it. Suppressed reports are counted in the next one delivered.
	OnReject         func(Rejection)
	RejectsPerSecond float64
}

// Codec seals and opens envelopes for one local identity. It is safe for
// concurrent use; one Codec serves every subject of a process.
type Codec struct {
	keys   Keys
	dir    Directory
	wraps  WrapStore
	now    func() time.Time
	rand   io.Reader
	cfg    Config
	start  int64 // Unix ms at construction: older requests are refused
	replay *replayCache
	reject *rejectLimiter

	epochsMu sync.Mutex
	epochs   map[string]*epochSlot

	keyMu    sync.Mutex
	keyCache map[keyCacheKey]ContentKey
}

// New returns a Codec for cfg.
func New(cfg Config) (*Codec, error) {
	if cfg.Keys == nil || cfg.Directory == nil || cfg.Wraps == nil {
		return nil, errors.New("envelope: config needs Keys, Directory and Wraps")
	}
	setDefaults(&cfg)
	if !validSubject(cfg.Keys.ID()) || len(cfg.Keys.ID()) > maxStringLen {
		return nil, fmt.Errorf("envelope: local identity id %q must be 1 to %d printable "+
			"ASCII bytes", cfg.Keys.ID(), maxStringLen)
	}
	c := &Codec{
		keys: cfg.Keys, dir: cfg.Directory, wraps: cfg.Wraps,
		now: cfg.Now, rand: cfg.Rand, cfg: cfg,
		start:    cfg.Now().UnixMilli(),
		replay:   newReplayCache(cfg.ReplayEntries),
		reject:   newRejectLimiter(cfg.OnReject, cfg.RejectsPerSecond, cfg.Now),
		epochs:   make(map[string]*epochSlot),
		keyCache: make(map[keyCacheKey]ContentKey),
	}

	return c, nil
}

func setDefaults(cfg *Config) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.MaxFrameBytes <= 0 {
		cfg.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if cfg.MaxRecipients <= 0 {
		cfg.MaxRecipients = DefaultMaxRecipients
	}
	if cfg.MaxEpochAge <= 0 {
		cfg.MaxEpochAge = DefaultMaxEpochAge
	}
	if cfg.MaxEpochMessages == 0 {
		cfg.MaxEpochMessages = DefaultMaxEpochMessages
	}
	if cfg.ReplayEntries <= 0 {
		cfg.ReplayEntries = DefaultReplayEntries
	}
	if cfg.KeyCacheEntries <= 0 {
		cfg.KeyCacheEntries = DefaultKeyCacheEntries
	}
	if cfg.RejectsPerSecond <= 0 {
		cfg.RejectsPerSecond = DefaultRejectsPerSecond
	}
}

// ID returns the local identity id.
func (c *Codec) ID() string { return c.keys.ID() }

// SigningPublicKey returns the public half of the current envelope signing
// key, so a caller can check that no other key (such as the NATS connection
// key) is the same.
func (c *Codec) SigningPublicKey() ed25519.PublicKey {
	_, priv := c.keys.SigningKey()

	return priv.Public().(ed25519.PublicKey)
}

// Window returns the freshness window W.
func (c *Codec) Window() time.Duration { return c.cfg.Window }

type keyCacheKey struct {
	sender    string
	kid       [32]byte
	recipient Recipient
}

func (c *Codec) cachedKey(k keyCacheKey) (ContentKey, bool) {
	c.keyMu.Lock()
	defer c.keyMu.Unlock()
	key, ok := c.keyCache[k]

	return key, ok
}

func (c *Codec) storeKey(k keyCacheKey, key ContentKey) {
	c.keyMu.Lock()
	defer c.keyMu.Unlock()
	if len(c.keyCache) >= c.cfg.KeyCacheEntries {
		// Dropping the whole cache costs one KV get and HPKE open per live
		// epoch afterwards, and keeps the bound simple.
		clear(c.keyCache)
	}
	c.keyCache[k] = key
}
