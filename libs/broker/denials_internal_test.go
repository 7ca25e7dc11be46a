package broker

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestDenialLimiterKeepsIdentitiesPastHostFlood fills the limiter with
// auth denials from new hosts, then two identities are denied: each must
// be reported at once under its own name, not merged into the overflow
// entry where the second would only be counted.
func TestDenialLimiterKeepsIdentitiesPastHostFlood(t *testing.T) {
	var mu sync.Mutex
	var reported []Denial
	l := newDenialLimiter(time.Minute, func(d Denial) {
		mu.Lock()
		reported = append(reported, d)
		mu.Unlock()
	})
	now := time.Now()
	for i := range denialMaxKeys + 10 {
		l.add(Denial{Kind: DenialAuth, Host: fmt.Sprintf("198.51.100.%d:%d", i%250, i)}, now)
	}
	mu.Lock()
	flood := len(reported)
	mu.Unlock()
	if flood != denialMaxKeys+1 {
		t.Errorf("host flood reported %d times, want %d hosts plus one overflow report",
			flood, denialMaxKeys+1)
	}

	for _, id := range []string{"agent-x", "agent-y"} {
		l.add(Denial{Kind: DenialPublish, Identity: id, Subject: "nodex.v1.codesec.submit"}, now)
	}
	mu.Lock()
	defer mu.Unlock()
	got := reported[flood:]
	if len(got) != 2 || got[0].Identity != "agent-x" || got[1].Identity != "agent-y" {
		t.Errorf("identity denials after the host flood: got %+v, want agent-x and agent-y", got)
	}
}
