package party

import (
	"fmt"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/envelope"
)

func TestRejectionEvent(t *testing.T) {
	tests := []struct {
		name       string
		reason     error
		subject    string
		wantReason string
		wantOrigin string
	}{
		{"event forged", envelope.ErrBadSignature, "nodex.v1.events.codesec.codesec.finding",
			"bad_signature", "connection:codesec"},
		{"request replay", fmt.Errorf("opening: %w", envelope.ErrReplay), "nodex.v1.keyvault.retrieve",
			"replay", "subject:nodex.v1.keyvault.retrieve"},
		{"unknown", nil, "x", "unknown", "subject:x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := RejectionEvent(envelope.Rejection{Reason: tt.reason, Subject: tt.subject, Time: time.Now()})
			if got := ev.Metadata["reason"]; got != tt.wantReason {
				t.Errorf("reason = %q, want %q", got, tt.wantReason)
			}
			if got := ev.Metadata["origin"]; got != tt.wantOrigin {
				t.Errorf("origin = %q, want %q", got, tt.wantOrigin)
			}
			if ev.Subject != "" {
				t.Errorf("event names subject identity %q; a rejected message proves no sender", ev.Subject)
			}
		})
	}
}

func TestEveryReasonHasCode(t *testing.T) {
	for _, r := range envelope.Reasons {
		if ReasonCode(r) == "unknown" {
			t.Errorf("rejection reason %v has no code", r)
		}
	}
}
