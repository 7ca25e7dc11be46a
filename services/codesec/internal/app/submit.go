package app

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/bundle"
	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/services/codesec/internal/domain"
)

// Verdicts in a submit reply.
const (
	VerdictAllow          = "allow"
	VerdictAllowWithFlags = "allow_with_flags"
)

// SubmitResult is the reply to an accepted submission.
type SubmitResult struct {
	BundleID   string           `json:"bundle_id"`
	Verdict    string           `json:"verdict"`
	Flags      []string         `json:"flags"`
	DecisionID string           `json:"decision_id"`
	CodeSHA256 string           `json:"code_sha256"`
	Expires    time.Time        `json:"expires"`
	Findings   []bundle.Finding `json:"findings"`
}

// Submit scans a validated submission, requests a policy decision, and
// seals and stores the code when the policy allows it. A refusal is a coded
// errs.CodeRefused error that lists the reasons and the first findings, and
// a persisted codesec.submission_denied event.
func (s *Service) Submit(ctx context.Context, c Caller, sub *domain.Submission,
	traceID string) (*SubmitResult, error) {
	files := make([]bundle.File, 0, len(sub.Files))
	for _, f := range sub.Files {
		files = append(files, bundle.File{Name: f.Name, Data: []byte(f.Content)})
	}
	findings, err := s.d.Scanner.Scan(sub.Language, files)
	if err != nil {
		return nil, errs.Internal.Wrap(fmt.Errorf("scanning submission of %q: %w", c.ID, err))
	}
	s.reportCritical(ctx, c, sub, findings, traceID)

	decision, err := s.decide(ctx, c, "submit", authz.Resource{Type: "code"}, findings, traceID)
	if err != nil {
		s.d.Log.ErrorContext(ctx, "policy decision failed", "identity", c.ID, "error", err)
		return nil, errs.Unavailable.Withf("the policy decision failed, so the code was " +
			"refused; retry later").Wrap(err)
	}
	if !decision.Allow {
		return nil, s.refuse(ctx, c, sub, findings, decision, traceID)
	}

	return s.seal(ctx, c, sub, files, findings, decision)
}

func (s *Service) seal(ctx context.Context, c Caller, sub *domain.Submission, files []bundle.File,
	findings []bundle.Finding, decision authz.Decision) (*SubmitResult, error) {
	now := s.d.Now().UTC()
	m := bundle.Manifest{
		ID: s.d.NewID(), Language: sub.Language, Entrypoint: sub.Entrypoint,
		Modules: sub.Modules, Args: sub.Args, Limits: sub.Limits, Author: c.ID,
		Created: now, Expires: now.Add(s.d.BundleTTL), Findings: findings,
		DecisionID: decision.ID,
	}
	recipient, err := s.d.Recipient.Recipient(ctx)
	if err != nil {
		return nil, errs.Unavailable.Wrap(fmt.Errorf("finding the sandbox key: %w", err))
	}
	contents := bundle.Contents{Files: files, Stdin: []byte(sub.Stdin)}
	b, signed, err := bundle.Seal(m, contents, s.d.Signer, recipient)
	if err != nil {
		return nil, errs.Internal.Wrap(fmt.Errorf("sealing bundle for %q: %w", c.ID, err))
	}
	if err := s.d.Store.Put(ctx, signed.ID, b); err != nil {
		return nil, errs.Unavailable.Wrap(err)
	}

	verdict := VerdictAllow
	if len(decision.Flags) > 0 {
		verdict = VerdictAllowWithFlags
	}
	s.d.Audit.Publish(ctx, events.SecurityEvent{
		Type: "codesec.submission_accepted", Action: "submit", Resource: "bundle:" + signed.ID,
		Subject: c.ID, Status: events.StatusSuccess, Severity: events.SeverityInfo,
		Metadata: map[string]string{"decision_id": decision.ID, "verdict": verdict,
			"findings": fmt.Sprint(len(findings)), "language": sub.Language},
	})
	s.d.Log.InfoContext(ctx, "bundle sealed", "identity", c.ID, "bundle_id", signed.ID,
		"verdict", verdict, "findings", len(findings))

	return &SubmitResult{BundleID: signed.ID, Verdict: verdict, Flags: nonNil(decision.Flags),
		DecisionID: decision.ID, CodeSHA256: signed.CodeSHA256, Expires: signed.Expires,
		Findings: nonNil(findings)}, nil
}

// refuse records a denied submission and returns the coded error for the
// reply. The event must persist: the monitor reads it as evidence of code
// injection. If it cannot be persisted, the submission is still refused.
func (s *Service) refuse(ctx context.Context, c Caller, sub *domain.Submission,
	findings []bundle.Finding, decision authz.Decision, traceID string) error {
	ev := events.SecurityEvent{
		Type: "codesec.submission_denied", Action: "submit", Resource: "code",
		Subject: c.ID, Status: events.StatusFailure, Severity: events.SeverityHigh,
		TraceID: traceID,
		Metadata: map[string]string{"decision_id": decision.ID, "language": sub.Language,
			"findings": fmt.Sprint(len(findings)), "rule_ids": ruleIDs(findings, 16),
			"reasons": truncate(strings.Join(decision.Reasons, "; "), 512)},
	}
	if err := s.d.Audit.PublishSync(ctx, ev); err != nil {
		s.d.Log.ErrorContext(ctx, "denied submission event lost", "identity", c.ID,
			"decision_id", decision.ID, "error", err)
	}
	s.d.Log.InfoContext(ctx, "submission denied", "identity", c.ID, "decision_id", decision.ID,
		"findings", len(findings))

	return errs.CodeRefused.Withf("the policy refused the code (%s); findings: %s; remove "+
		"these constructs and submit again", strings.Join(decision.Reasons, "; "),
		describeFindings(findings, 8))
}

// reportCritical publishes one codesec.finding event per submission that
// has critical findings, whatever the policy decides.
func (s *Service) reportCritical(ctx context.Context, c Caller, sub *domain.Submission,
	findings []bundle.Finding, traceID string) {
	var critical []bundle.Finding
	for _, f := range findings {
		if f.Severity == events.SeverityCritical {
			critical = append(critical, f)
		}
	}
	if len(critical) == 0 {
		return
	}
	s.d.Audit.Publish(ctx, events.SecurityEvent{
		Type: "codesec.finding", Action: "submit", Resource: "code", Subject: c.ID,
		Status: events.StatusFailure, Severity: events.SeverityCritical, TraceID: traceID,
		Metadata: map[string]string{"language": sub.Language, "rule_ids": ruleIDs(critical, 16),
			"count": fmt.Sprint(len(critical)), "first": describeFindings(critical, 1)},
	})
}

func ruleIDs(findings []bundle.Finding, limit int) string {
	var ids []string
	for _, f := range findings {
		if len(ids) == limit {
			break
		}
		ids = append(ids, f.RuleID)
	}

	return strings.Join(ids, ",")
}

// describeFindings lists up to limit findings as "RULE file:line".
func describeFindings(findings []bundle.Finding, limit int) string {
	if len(findings) == 0 {
		return "none"
	}
	var parts []string
	for i, f := range findings {
		if i == limit {
			parts = append(parts, fmt.Sprintf("and %d more", len(findings)-limit))
			break
		}
		parts = append(parts, fmt.Sprintf("%s (%s) at %s:%d", f.RuleID, f.Severity, f.File, f.Line))
	}

	return strings.Join(parts, ", ")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}

	return s[:n]
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}

	return s
}
