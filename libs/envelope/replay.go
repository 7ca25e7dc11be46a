package envelope

import "sync"

// replayCache records (receiver, sender, id) triples until their expiry, the
// message timestamp plus W. After that the freshness check rejects the
// message anyway, so the entry can go.
type replayCache struct {
	mu      sync.Mutex
	max     int
	entries map[replayKey]int64 // expiry, Unix ms
}

type replayKey struct {
	receiver string
	sender   string
	id       [16]byte
}

func newReplayCache(max int) *replayCache {
	return &replayCache{max: max, entries: make(map[replayKey]int64)}
}

// insert records k until expiresMs and reports whether it was new. When the
// cache is full of unexpired entries it reports false: rejecting a genuine
// message is safer than accepting a replay.
func (rc *replayCache) insert(k replayKey, nowMs, expiresMs int64) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if exp, ok := rc.entries[k]; ok && exp >= nowMs {
		return false
	}
	if len(rc.entries) >= rc.max {
		rc.sweepLocked(nowMs)
		if len(rc.entries) >= rc.max {
			return false
		}
	}
	rc.entries[k] = expiresMs

	return true
}

// sweepLocked drops expired entries; rc.mu must be held.
func (rc *replayCache) sweepLocked(nowMs int64) {
	for k, exp := range rc.entries {
		if exp < nowMs {
			delete(rc.entries, k)
		}
	}
}
