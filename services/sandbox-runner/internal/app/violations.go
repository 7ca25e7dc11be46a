package app

import (
	"context"
	"strconv"

	"github.com/nodexsec/nodex/libs/bundle"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/executor"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/scan"
)

// limitReasons are the reasons that mean the program hit a limit.
var limitReasons = map[string]bool{
	executor.ReasonTimeout: true, executor.ReasonMemory: true, executor.ReasonPids: true,
	executor.ReasonCPU: true, executor.ReasonOutputLimit: true,
}

// reportViolations publishes one event per violation and returns their kinds.
// Each denied system call, seccomp kill, denied import and limit hit is a
// sandbox.violation (metadata kind: network, seccomp, import or limit); each
// redaction is a sandbox.secret_redacted.
func (s *Service) reportViolations(ctx context.Context, c Caller, m *bundle.Manifest,
	res executor.Result, imports []string, redactions []scan.Finding) []string {
	var kinds []string
	emit := func(typ, kind, severity string, meta map[string]string) {
		meta["run_id"], meta["bundle_id"], meta["kind"] = res.RunID, m.ID, kind
		s.d.Events.Publish(ctx, events.SecurityEvent{Type: typ, Action: "execute",
			Resource: "bundle:" + m.ID, Subject: c.ID, Status: events.StatusFailure,
			Severity: severity, Metadata: meta})
		kinds = append(kinds, kind)
	}
	for _, d := range res.Denials {
		kind := "seccomp"
		if d.Syscall == "socket" || d.Syscall == "socketpair" {
			kind = "network"
		}
		emit("sandbox.violation", kind, events.SeverityHigh,
			map[string]string{"syscall": d.Syscall, "arg0": strconv.FormatUint(d.Args[0], 10)})
	}
	if res.Reason == executor.ReasonSeccomp {
		emit("sandbox.violation", "seccomp", events.SeverityHigh,
			map[string]string{"signal": strconv.Itoa(res.Signal)})
	}
	for _, name := range imports {
		emit("sandbox.violation", "import", events.SeverityMedium, map[string]string{"module": name})
	}
	if limitReasons[res.Reason] {
		emit("sandbox.violation", "limit", events.SeverityMedium, map[string]string{"reason": res.Reason})
	}
	for _, f := range redactions {
		emit("sandbox.secret_redacted", "secret", events.SeverityCritical, map[string]string{
			"match": f.Kind, "provider": f.Provider, "key_name": f.KeyName, "encoding": f.Encoding})
	}
	return kinds
}
