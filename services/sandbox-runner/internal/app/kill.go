package app

import (
	"context"
	"strconv"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/events"
)

// KillRequest names the runs to kill: those of one bundle or of one agent.
// Exactly one field is set.
type KillRequest struct {
	BundleID string `json:"bundle_id,omitempty"`
	AgentID  string `json:"agent_id,omitempty"`
}

// KillReply says how many runs were signalled.
type KillReply struct {
	Killed int `json:"killed"`
}

// Kill ends the matching runs at once (incident containment). The kill is
// allowed by policy as action kill on resource type sandbox.
func (s *Service) Kill(ctx context.Context, c Caller, req KillRequest) (*KillReply, error) {
	key, value := "bundle_id", req.BundleID
	if req.AgentID != "" {
		key, value = "agent_id", req.AgentID
	}
	if value == "" || (req.BundleID != "" && req.AgentID != "") {
		return nil, errs.InvalidRequest.Withf("set exactly one of bundle_id and agent_id")
	}
	in := authz.Input{Subject: c.subject(), Action: "kill",
		Resource: authz.Resource{Type: "sandbox", ID: value}, Context: authz.Context{Time: s.d.Now()}}
	d, err := s.d.Decider.Decide(ctx, in)
	if err != nil || !d.Allow {
		return nil, errs.AccessDenied.Withf("kill of %s %q denied", key, value)
	}
	n := s.d.Runner.Kill(key, value)
	s.log.InfoContext(ctx, "sandboxes killed", key, value, "identity", c.ID, "count", n)
	s.d.Events.Publish(ctx, events.SecurityEvent{Type: "sandbox.kill", Action: "kill",
		Resource: key + ":" + value, Subject: c.ID, Status: events.StatusSuccess,
		Severity: events.SeverityMedium, Metadata: map[string]string{"killed": strconv.Itoa(n),
			"decision_id": d.ID}})
	return &KillReply{Killed: n}, nil
}
