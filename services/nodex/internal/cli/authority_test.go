package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func authorityStatus(t *testing.T, args ...string) authorityState {
	t.Helper()

	r := mustRun(t, ExitOK, "", append([]string{"--json", "authority"}, args...)...)
	var s authorityState
	if err := json.Unmarshal([]byte(r.out), &s); err != nil {
		t.Fatalf("decoding %q: %v", r.out, err)
	}

	return s
}

// TestAuthorityRenew checks that renew writes nothing while the delegation
// is far from expiry and that --now extends it.
func TestAuthorityRenew(t *testing.T) {
	before := authorityStatus(t, "status")
	if !before.NotAfter.After(time.Now().Add(30 * 24 * time.Hour)) {
		t.Fatalf("delegation of a new deployment expires %s, want more than 30 days out",
			before.NotAfter)
	}

	if s := authorityStatus(t, "renew"); s.Renewed || !s.NotAfter.Equal(before.NotAfter) {
		t.Fatalf("renew far from expiry: got %+v, want no renewal of %s", s, before.NotAfter)
	}
	s := authorityStatus(t, "renew", "--now")
	if !s.Renewed || !s.NotAfter.After(before.NotAfter) {
		t.Fatalf("renew --now: got %+v, want a renewal past %s", s, before.NotAfter)
	}
	if got := authorityStatus(t, "status"); !got.NotAfter.Equal(s.NotAfter) {
		t.Fatalf("status after renew: got %s, want %s", got.NotAfter, s.NotAfter)
	}

	// Services still accept requests under the renewed delegation.
	r := mustRun(t, ExitOK, "", "agent", "list")
	if !strings.Contains(r.out, "agent-demo") {
		t.Fatalf("agent list after renewal = %q, want agent-demo", r.out)
	}
}
