// Package busport serves the sandbox-runner's subjects: request/reply exec and
// kill, and the JetStream work queue of asynchronous jobs.
package busport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/envelope"
	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/app"
)

// Subjects and streams of the sandbox-runner.
const (
	SubjectExec    = "nodex.v1.sandbox.exec"
	SubjectKill    = "nodex.v1.sandbox.kill"
	SubjectJobs    = "nodex.v1.sandbox.jobs"
	SubjectResults = "nodex.v1.sandbox.results" // + "." + caller token
	StreamJobs     = "NODEX_SANDBOX_JOBS"
	StreamResults  = "NODEX_SANDBOX_RESULTS"
	ConsumerJobs   = "sandbox-jobs"
	queueGroup     = "sandbox"
)

// Options configure the port.
type Options struct {
	// Admission bounds runs accepted at once (running plus waiting for a
	// slot). A request past it gets sandbox_busy at once: backpressure.
	Admission int
	Directory envelope.Directory
	Log       *slog.Logger
	// Replicas is the replica count of the job and result streams when
	// Register creates them; zero means 1. More replicas are kept.
	Replicas int
}

// Port holds the admission semaphore shared by both entry points.
type Port struct {
	c     *bus.Client
	svc   *app.Service
	opts  Options
	admit chan struct{}
}

// Register serves exec and kill on c and consumes the job queue.
func Register(ctx context.Context, c *bus.Client, svc *app.Service, o Options) (*Port, error) {
	if o.Admission <= 0 || o.Directory == nil || o.Log == nil {
		return nil, errors.New("busport: Register needs Admission, Directory and Log")
	}
	p := &Port{c: c, svc: svc, opts: o, admit: make(chan struct{}, o.Admission)}
	if err := c.Handle(SubjectExec, queueGroup, p.handleExec); err != nil {
		return nil, fmt.Errorf("serving %s: %w", SubjectExec, err)
	}
	// No queue group: every replica kills its own runs of the bundle or agent.
	if err := c.Handle(SubjectKill, "", p.handleKill); err != nil {
		return nil, fmt.Errorf("serving %s: %w", SubjectKill, err)
	}
	if err := p.consumeJobs(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// caller looks the sender's status up in the registry; an unknown sender
// gets an empty status, which the policy denies.
func (p *Port) caller(ctx context.Context, id, kind string, roles []string) app.Caller {
	c := app.Caller{ID: id, Kind: kind, Roles: roles}
	if party, err := p.opts.Directory.Party(ctx, id); err == nil {
		c.Status = party.Status
	}
	return c
}

func (p *Port) tryAdmit() bool {
	select {
	case p.admit <- struct{}{}:
		return true
	default:
		return false
	}
}

func (p *Port) release() { <-p.admit }

func (p *Port) handleExec(ctx context.Context, req *bus.Request) (any, error) {
	var in app.ExecRequest
	if err := req.Decode(&in); err != nil {
		return nil, errs.InvalidRequest.Withf("decoding exec request: %v", err)
	}
	if !p.tryAdmit() {
		p.opts.Log.WarnContext(ctx, "exec rejected: runner full", "identity", req.Sender,
			"bundle_id", in.BundleID)
		return nil, errs.SandboxBusy
	}
	defer p.release()
	return p.svc.Exec(ctx, p.caller(ctx, req.Sender, req.SenderKind, req.SenderRoles), in)
}

func (p *Port) handleKill(ctx context.Context, req *bus.Request) (any, error) {
	var in app.KillRequest
	if err := req.Decode(&in); err != nil {
		return nil, errs.InvalidRequest.Withf("decoding kill request: %v", err)
	}
	return p.svc.Kill(ctx, p.caller(ctx, req.Sender, req.SenderKind, req.SenderRoles), in)
}

// JobRequest is the body of an asynchronous job: ExecRequest plus an id that
// the caller chooses to match the result.
type JobRequest struct {
	JobID    string `json:"job_id"`
	BundleID string `json:"bundle_id"`
}

// JobResult is published to the caller's results subject.
type JobResult struct {
	JobID  string         `json:"job_id"`
	Result *app.ExecReply `json:"result,omitempty"`
	Error  *errs.Error    `json:"error,omitempty"`
}

// ResultsSubject returns the subject on which identity id receives job
// results: its id with every character outside a-z, 0-9 and _ turned into _.
func ResultsSubject(id string) string {
	token := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			return r
		}
		return '_'
	}, strings.ToLower(id))
	return SubjectResults + "." + token
}

func (p *Port) consumeJobs(ctx context.Context) error {
	js := p.c.JetStream()
	for _, sc := range []jetstream.StreamConfig{
		{Name: StreamJobs, Subjects: []string{SubjectJobs}, Retention: jetstream.WorkQueuePolicy,
			MaxAge: time.Hour, Description: "asynchronous sandbox jobs"},
		{Name: StreamResults, Subjects: []string{SubjectResults + ".>"}, MaxAge: 24 * time.Hour,
			Description: "results of asynchronous sandbox jobs, sealed to the caller"},
	} {
		sc.Replicas = p.opts.Replicas
		if _, err := bus.EnsureStream(ctx, js, sc); err != nil {
			return err
		}
	}
	return p.c.Consume(ctx, bus.ConsumeConfig{Stream: StreamJobs, NakDelay: time.Second,
		Consumer: jetstream.ConsumerConfig{Durable: ConsumerJobs, AckWait: 5 * time.Minute}},
		p.handleJob)
}

// handleJob runs one job when a slot is free. A full runner naks the job, so
// it waits in the stream (the queue) instead of in memory.
func (p *Port) handleJob(ctx context.Context, m *bus.Message) error {
	var in JobRequest
	if err := m.Decode(&in); err != nil {
		return fmt.Errorf("%w: decoding job: %v", bus.ErrPoison, err)
	}
	if !p.tryAdmit() {
		return errs.SandboxBusy
	}
	defer p.release()
	res := JobResult{JobID: in.JobID}
	rep, err := p.svc.Exec(ctx, p.caller(ctx, m.Sender, m.SenderKind, m.SenderRoles),
		app.ExecRequest{BundleID: in.BundleID})
	if err != nil {
		res.Error = errs.From(err).Public()
	} else {
		res.Result = rep
	}
	if err := p.publishResult(ctx, m.Sender, res); err != nil {
		p.opts.Log.ErrorContext(ctx, "job result lost", "job_id", in.JobID, "identity", m.Sender,
			"msg_id", m.ID, "error", err)
		return fmt.Errorf("%w: %v", bus.ErrPoison, err) // the run happened; do not run it again
	}
	return nil
}

// publishResult seals the result to the calling identity alone and stores it
// on that identity's results subject.
func (p *Port) publishResult(ctx context.Context, to string, res JobResult) error {
	body, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("encoding job result: %w", err)
	}
	subject := ResultsSubject(to)
	sealed, err := p.c.Codec().Seal(ctx, envelope.Message{Kind: envelope.KindEvent, Subject: subject,
		To: []envelope.Target{envelope.ToIdentity(to)}, ContentType: envelope.ContentTypeJSON, Body: body})
	if err != nil {
		return fmt.Errorf("sealing job result for %s: %w", to, err)
	}
	msg := &nats.Msg{Subject: subject, Data: sealed.Frame, Header: nats.Header{}}
	if _, err := p.c.JetStream().PublishMsg(ctx, msg, jetstream.WithMsgID(sealed.MsgID())); err != nil {
		return fmt.Errorf("publishing job result on %s: %w", subject, err)
	}
	return nil
}
