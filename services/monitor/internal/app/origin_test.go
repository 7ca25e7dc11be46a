package app

import (
	"testing"

	"github.com/nodexsec/nodex/services/monitor/internal/domain"
)

// TestRejectionOriginIsNotTheReporter checks that an envelope.rejected
// event takes its origin from the rejected message, not from the service
// that reported the rejection.
func TestRejectionOriginIsNotTheReporter(t *testing.T) {
	ev := &domain.Event{Type: "envelope.rejected",
		Metadata: map[string]string{"origin": "subject:nodex.v1.codesec.submit"}}
	if got := eventOrigin("nodex.v1.events.codesec.envelope.rejected", ev); got != "subject:nodex.v1.codesec.submit" {
		t.Errorf("origin = %q, want the rejected message's origin", got)
	}
	other := &domain.Event{Type: "codesec.finding", Metadata: map[string]string{"origin": "forged"}}
	if got := eventOrigin("nodex.v1.events.codesec.codesec.finding", other); got != "connection:codesec" {
		t.Errorf("origin = %q, want the publishing connection", got)
	}
}
