package cli

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodexsec/nodex/libs/identity"
)

func TestEventsTailAsAgentNamesPermission(t *testing.T) {
	agentCreds := filepath.Join(devHome, "identities", "creds", identity.DemoAgentID+".creds")
	r := mustRun(t, ExitDenied, "", "--creds", agentCreds, "events", "tail")
	for _, want := range []string{
		"Permissions Violation", "NODEX_EVENTS", "operator's credentials",
		filepath.Join("creds", identity.OperatorID+".creds"),
	} {
		if !strings.Contains(r.err, want) {
			t.Errorf("stderr %q does not contain %q", r.err, want)
		}
	}
}

func TestBrokerDenialBecomesEvent(t *testing.T) {
	agentCreds := filepath.Join(devHome, "identities", "creds", identity.DemoAgentID+".creds")
	mustRun(t, ExitDenied, "", "--creds", agentCreds, "events", "tail")
	// The monitor publishes the broker's report of the violation.
	waitFor(t, func() bool {
		r := nodex(t, "", "--json", "events", "tail", "--type", "broker.denied",
			"--identity", identity.DemoAgentID)
		return r.code == ExitOK && strings.Contains(r.out, `"subject":"`+identity.DemoAgentID+`"`) &&
			strings.Contains(r.out, "$JS.API.CONSUMER.CREATE.NODEX_EVENTS")
	})
}
