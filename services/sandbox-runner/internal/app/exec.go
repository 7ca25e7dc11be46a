package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/bundle"
	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/executor"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/proto"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/receipt"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/scan"
)

// ExecRequest is a request to run a stored bundle.
type ExecRequest struct {
	BundleID string `json:"bundle_id"`
}

// ExecReply is the validated outcome of a run.
type ExecReply struct {
	RunID           string          `json:"run_id"`
	BundleID        string          `json:"bundle_id"`
	Reason          string          `json:"reason"`
	ExitCode        int             `json:"exit_code"`
	Signal          int             `json:"signal"`
	Stdout          string          `json:"stdout"`
	Stderr          string          `json:"stderr"`
	StdoutTruncated bool            `json:"stdout_truncated"`
	StderrTruncated bool            `json:"stderr_truncated"`
	CPUTimeMs       int64           `json:"cpu_time_ms"`
	WallTimeMs      int64           `json:"wall_time_ms"`
	PeakMemoryBytes int64           `json:"peak_memory_bytes"`
	Redactions      int             `json:"redactions"`
	Violations      []string        `json:"violations"`
	Receipt         *receipt.Signed `json:"receipt"`
}

// runtimeOf maps a manifest language to an executor runtime.
var runtimeOf = map[string]string{
	"python": executor.RuntimePython, "javascript": executor.RuntimeNode,
	"sh": executor.RuntimeSh, "bash": executor.RuntimeBash,
}

// Exec verifies, decides on, opens and runs a bundle. A bundle that fails
// verification never starts. Errors are coded (*errs.Error).
func (s *Service) Exec(ctx context.Context, c Caller, req ExecRequest) (*ExecReply, error) {
	if err := bundle.CheckID(req.BundleID); err != nil {
		return nil, errs.InvalidRequest.Withf("invalid bundle_id %q: use the id codesec returned", req.BundleID)
	}
	fetchCtx, sp := startStep(ctx, "sandbox.fetch_bundle",
		attribute.String(attrBundle, req.BundleID))
	b, err := s.d.Bundles.Get(fetchCtx, req.BundleID)
	endStep(sp, err)
	if errors.Is(err, bundle.ErrNotFound) {
		return nil, errs.NotFound.Withf("bundle %q not found", req.BundleID)
	}
	if err != nil {
		return nil, errs.Unavailable.Wrap(err)
	}

	m, contents, err := s.open(ctx, c, req.BundleID, b)
	if err != nil {
		return nil, err
	}
	spec, err := s.spec(c, m, contents)
	if err != nil {
		return nil, err
	}

	started := s.d.Now()
	// The executor waits for a slot, sets up the cgroup and namespaces and
	// runs the program inside this one span.
	// TODO: give slot wait, cgroup setup and the program run spans of
	// their own; the steps happen inside executor.Run.
	runCtx, sp := startStep(ctx, "sandbox.run", attribute.String(attrBundle, m.ID),
		attribute.String("nodex.runtime", spec.Runtime))
	res, cause, err := s.runContained(runCtx, c, spec)
	if err == nil {
		sp.SetAttributes(attribute.String(attrRun, res.RunID),
			attribute.String("nodex.run.reason", res.Reason),
			attribute.Int("nodex.run.exit_code", res.ExitCode))
	}
	endStep(sp, err)
	if err != nil {
		return nil, err
	}
	return s.finish(ctx, c, m, res, cause, started)
}

// open verifies the bundle's signature, expiry and revocation, decides on
// the run and decrypts the contents, each step in its own span.
func (s *Service) open(ctx context.Context, c Caller, id string,
	b *bundle.Bundle) (*bundle.Manifest, *bundle.Contents, error) {
	vctx, sp := startStep(ctx, "sandbox.verify", attribute.String(attrBundle, id))
	v, err := bundle.Verify(vctx, b, s.d.Verify)
	endStep(sp, err)
	if err != nil {
		return nil, nil, s.rejectBundle(ctx, c, id, err)
	}
	m := v.Manifest
	if err := s.decide(ctx, c, m); err != nil {
		return nil, nil, err
	}
	key, ok := s.recipientKey(m.RecipientKeyID)
	if !ok {
		return nil, nil, s.rejectBundle(ctx, c, id,
			fmt.Errorf("bundle sealed to unknown recipient key %q", m.RecipientKeyID))
	}
	_, sp = startStep(ctx, "sandbox.decrypt", attribute.String(attrBundle, id))
	contents, err := bundle.Open(v, key)
	endStep(sp, err)
	if err != nil {
		return nil, nil, s.rejectBundle(ctx, c, id, err)
	}

	return m, contents, nil
}

// rejectBundle records a failed verification and maps it to a coded error.
func (s *Service) rejectBundle(ctx context.Context, c Caller, id string, err error) error {
	coded := errs.BundleInvalid
	switch {
	case errors.Is(err, bundle.ErrExpired):
		coded = errs.BundleExpired
	case errors.Is(err, bundle.ErrRevoked), errors.Is(err, bundle.ErrRevocationUnknown):
		coded = errs.BundleRevoked
	}
	s.log.WarnContext(ctx, "bundle rejected", "bundle_id", id, "identity", c.ID, "error", err)
	s.d.Events.Publish(ctx, events.SecurityEvent{Type: "sandbox.bundle_rejected", Action: "execute",
		Resource: "bundle:" + id, Subject: c.ID, Status: events.StatusFailure,
		Severity: events.SeverityHigh, Metadata: map[string]string{"reason": coded.Name}})
	return coded.Wrap(err)
}

func (s *Service) decide(ctx context.Context, c Caller, m *bundle.Manifest) error {
	var findings []authz.Finding
	for _, f := range m.Findings {
		findings = append(findings, authz.Finding{RuleID: f.RuleID, Severity: f.Severity, Line: f.Line})
	}
	in := authz.Input{Subject: c.subject(), Action: "exec",
		Resource: authz.Resource{Type: "sandbox", ID: m.ID,
			Labels: map[string]string{"author": m.Author, "language": m.Language}},
		Context: authz.Context{Time: s.d.Now(), Findings: findings}}
	d, err := s.d.Decider.Decide(ctx, in)
	if err != nil || !d.Allow {
		s.log.InfoContext(ctx, "execution denied", "bundle_id", m.ID, "identity", c.ID,
			"decision_id", d.ID, "error", err)
		return errs.AccessDenied.Withf("execution of bundle %q denied", m.ID)
	}
	return nil
}

func (s *Service) spec(c Caller, m *bundle.Manifest, contents *bundle.Contents) (executor.Spec, error) {
	rt, ok := runtimeOf[m.Language]
	if !ok {
		return executor.Spec{}, errs.UnsupportedLanguage.Withf("language %q", m.Language)
	}
	files := make([]proto.File, len(contents.Files))
	for i, f := range contents.Files {
		files[i] = proto.File{Path: f.Name, Data: f.Data}
	}
	return executor.Spec{
		Labels:  map[string]string{"bundle_id": m.ID, "agent_id": c.ID, "author": m.Author},
		Runtime: rt, Entrypoint: m.Entrypoint, Args: m.Args, Modules: m.Modules,
		Files: files, Stdin: contents.Stdin, Limits: s.clamp(m.Limits),
	}, nil
}

// clamp returns the requested limits bounded by the ceiling.
func (s *Service) clamp(l bundle.Limits) executor.Limits {
	ceil := s.d.Ceiling
	pick := func(req, max int64) int64 {
		if req <= 0 || (max > 0 && req > max) {
			return max
		}
		return req
	}
	ms := time.Millisecond
	return executor.Limits{
		WallTime:    time.Duration(pick(l.WallTimeMillis, int64(ceil.WallTime/ms))) * ms,
		CPUTime:     time.Duration(pick(l.CPUTimeMillis, int64(ceil.CPUTime/ms))) * ms,
		MemoryBytes: pick(l.MemoryBytes, ceil.MemoryBytes),
		Pids:        pick(l.MaxProcesses, ceil.Pids),
		OutputBytes: pick(l.MaxOutputBytes, ceil.OutputBytes),
	}
}

// finish validates the outputs, reports violations, and signs and stores the
// receipt. The receipt must be stored before the reply goes out.
// A non-empty killCause means the run was killed because its caller was
// contained, and goes into the sandbox.exec event.
func (s *Service) finish(ctx context.Context, c Caller, m *bundle.Manifest, res executor.Result,
	killCause string, started time.Time) (*ExecReply, error) {
	_, sp := startStep(ctx, "sandbox.redact", attribute.String(attrRun, res.RunID))
	stderr, imports := stripImportDenials(res.Stderr)
	fps := s.fingerprints.Load()
	stdout, outFound := scan.Redact(res.Stdout, fps)
	stderr, errFound := scan.Redact(stderr, fps)
	redactions := append(outFound, errFound...)
	sp.SetAttributes(attribute.Int("nodex.redactions", len(redactions)))
	endStep(sp, nil)
	violations := s.reportViolations(ctx, c, m, res, imports, redactions)

	rep := &ExecReply{RunID: res.RunID, BundleID: m.ID, Reason: res.Reason, ExitCode: res.ExitCode,
		Signal: res.Signal, Stdout: validUTF8(stdout), Stderr: validUTF8(stderr),
		StdoutTruncated: res.StdoutTruncated, StderrTruncated: res.StderrTruncated,
		CPUTimeMs: res.CPUTime.Milliseconds(), WallTimeMs: res.WallTime.Milliseconds(),
		PeakMemoryBytes: res.PeakMemoryBytes, Redactions: len(redactions), Violations: violations}
	fitOutput(rep, maxReplyOutputBytes)
	rc := &receipt.Receipt{RunID: res.RunID, BundleID: m.ID, CodeSHA256: m.CodeSHA256,
		Agent: c.ID, Author: m.Author, Runtime: m.Language,
		Limits: receipt.Limits{WallTimeMs: res.Limits.WallTime.Milliseconds(),
			CPUTimeMs: res.Limits.CPUTime.Milliseconds(), MemoryBytes: res.Limits.MemoryBytes,
			Pids: res.Limits.Pids, OutputBytes: res.Limits.OutputBytes},
		StdoutSHA256: receipt.Digest([]byte(rep.Stdout)), StderrSHA256: receipt.Digest([]byte(rep.Stderr)),
		Reason: res.Reason, ExitCode: res.ExitCode, Signal: res.Signal,
		CPUTimeMs: rep.CPUTimeMs, WallTimeMs: rep.WallTimeMs, PeakMemory: res.PeakMemoryBytes,
		Violations: len(violations), Redactions: len(redactions), Insecure: res.Insecure,
		Started: started.UTC(), Finished: s.d.Now().UTC(), Signer: s.d.SignerID, KeyVersion: s.d.KeyVersion}
	rctx, sp := startStep(ctx, "sandbox.receipt", attribute.String(attrRun, res.RunID))
	signed, err := receipt.Sign(rc, s.d.SigningKey)
	if err != nil {
		endStep(sp, err)
		return nil, errs.Internal.Wrap(err)
	}
	err = s.d.Receipts.Put(rctx, res.RunID, signed)
	endStep(sp, err)
	if err != nil {
		return nil, errs.Unavailable.Wrap(fmt.Errorf("storing receipt %s: %w", res.RunID, err))
	}
	rep.Receipt = signed
	meta := map[string]string{"run_id": res.RunID, "reason": res.Reason,
		"exit_code": strconv.Itoa(res.ExitCode), "insecure": strconv.FormatBool(res.Insecure)}
	if killCause != "" {
		meta["kill_cause"] = killCause
	}
	s.d.Events.Publish(ctx, events.SecurityEvent{Type: "sandbox.exec", Action: "execute",
		Resource: "bundle:" + m.ID, Subject: c.ID, Status: statusOf(res), Severity: events.SeverityInfo,
		Metadata: meta})
	return rep, nil
}

func statusOf(res executor.Result) string {
	if res.Reason == executor.ReasonExited && res.ExitCode == 0 {
		return events.StatusSuccess
	}
	return events.StatusFailure
}

func validUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// stripImportDenials removes the import guard's report lines from stderr and
// returns the denied module names.
func stripImportDenials(stderr []byte) ([]byte, []string) {
	if !strings.Contains(string(stderr), executor.DeniedImportPrefix) {
		return stderr, nil
	}
	var kept []string
	var denied []string
	for _, line := range strings.SplitAfter(string(stderr), "\n") {
		if name, ok := strings.CutPrefix(line, executor.DeniedImportPrefix); ok {
			denied = append(denied, strings.TrimSpace(name))
			continue
		}
		kept = append(kept, line)
	}
	return []byte(strings.Join(kept, "")), denied
}

// maxReplyOutputBytes bounds stdout and stderr together, as JSON-encoded in
// the reply, so that the sealed reply stays under NATS's default 1 MiB
// max_payload. Without it two outputs under their own cap could add up to a
// reply the server refuses, and the caller would get nothing.
const maxReplyOutputBytes = 640 << 10

// fitOutput shortens the longer of stdout and stderr until both fit in max
// bytes of JSON, marking what it cut as truncated. The receipt's digests are
// taken afterwards, so they cover exactly what the caller receives.
func fitOutput(rep *ExecReply, max int) {
	for jsonLen(rep.Stdout)+jsonLen(rep.Stderr) > max {
		excess := jsonLen(rep.Stdout) + jsonLen(rep.Stderr) - max
		if len(rep.Stdout) >= len(rep.Stderr) {
			rep.Stdout = cutUTF8(rep.Stdout, excess)
			rep.StdoutTruncated = true
		} else {
			rep.Stderr = cutUTF8(rep.Stderr, excess)
			rep.StderrTruncated = true
		}
	}
}

// cutUTF8 removes at least n bytes, and at least an eighth, from the end of
// s without splitting a UTF-8 sequence.
func cutUTF8(s string, n int) string {
	n = max(n, len(s)/8, 1)
	if n >= len(s) {
		return ""
	}
	s = s[:len(s)-n]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}

	return s
}

// jsonLen returns the length of s encoded as a JSON string.
func jsonLen(s string) int {
	b, err := json.Marshal(s)
	if err != nil {
		return len(s) * 6
	}

	return len(b)
}
