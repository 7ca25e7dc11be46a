package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/errs"
)

// Subjects and stream of asynchronous runs. A job goes to the sandbox's
// work queue; its result comes back on the agent's own results subject,
// sealed to the agent alone.
const (
	SubjectJobs          = "nodex.v1.sandbox.jobs"
	SubjectResultsPrefix = "nodex.v1.sandbox.results."
	StreamResults        = "NODEX_SANDBOX_RESULTS"
)

// DefaultJobExpiry is how long a queued job stays valid: the sandbox
// rejects a job it picks up later than this.
const DefaultJobExpiry = 10 * time.Minute

// JobRequest is the body of a job on nodex.v1.sandbox.jobs.
type JobRequest struct {
	JobID    string `json:"job_id"`
	BundleID string `json:"bundle_id"`
}

// JobResult is the outcome of one job. Exactly one of Result and Error is
// set.
type JobResult struct {
	JobID  string      `json:"job_id"`
	Result *ExecReply  `json:"result,omitempty"`
	Error  *errs.Error `json:"error,omitempty"`
}

// ResultsSubject returns the subject on which identity id receives job
// results: its id in lower case with every character outside a-z, 0-9 and
// _ written as _.
func ResultsSubject(id string) string {
	token := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			return r
		}
		return '_'
	}, strings.ToLower(id))

	return SubjectResultsPrefix + token
}

// resultsConsumer returns the only consumer name NATS lets identity id
// create on the results stream.
func resultsConsumer(id string) string { return "results-" + id }

// Job is a run queued by [Agent.Start].
type Job struct {
	// ID is the job id, chosen by the agent.
	ID string
	// Submit is codesec's verdict on the submission.
	Submit SubmitReply

	done chan struct{}
	res  JobResult
}

// Done is closed when the job's result arrived.
func (j *Job) Done() <-chan struct{} { return j.done }

// Wait blocks until the result arrived or ctx is done. A run the sandbox
// refused returns its coded error.
func (j *Job) Wait(ctx context.Context) (*Result, error) {
	select {
	case <-j.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for job %s: %w", j.ID, ctx.Err())
	}
	res := &Result{Submit: j.Submit, Exec: j.res.Result}
	if j.res.Error != nil {
		return res, fmt.Errorf("running job %s: %w", j.ID, j.res.Error)
	}
	if j.res.Result == nil {
		return res, fmt.Errorf("job %s: result has neither a run nor an error", j.ID)
	}

	return res, nil
}

// jobs routes results from the agent's results consumer to waiting jobs.
type jobs struct {
	once    sync.Once
	err     error
	mu      sync.Mutex
	pending map[string]*Job
}

// Start submits s and queues its run in the sandbox's work queue, then
// returns without waiting for the run. Job.Wait returns the result, which
// the sandbox stores on the agent's results stream for 24 hours.
func (a *Agent) Start(ctx context.Context, s Submission) (*Job, error) {
	if err := a.consumeResults(); err != nil {
		return nil, err
	}
	sub, err := a.Submit(ctx, s)
	if err != nil {
		return nil, err
	}
	job := &Job{ID: uuid.NewString(), Submit: *sub, done: make(chan struct{})}
	a.jobs.mu.Lock()
	a.jobs.pending[job.ID] = job
	a.jobs.mu.Unlock()

	ctx, sp := a.tracer.Start(ctx, "agent.start_job")
	defer sp.End()
	_, err = a.p.Bus.PublishJob(ctx, SubjectJobs, RoleSandbox,
		JobRequest{JobID: job.ID, BundleID: sub.BundleID}, time.Now().Add(DefaultJobExpiry))
	if err != nil {
		a.jobs.mu.Lock()
		delete(a.jobs.pending, job.ID)
		a.jobs.mu.Unlock()
		return nil, fmt.Errorf("queueing bundle %s: %w", sub.BundleID, err)
	}

	return job, nil
}

// consumeResults starts the agent's results consumer once. It lives until
// the agent closes.
func (a *Agent) consumeResults() error {
	a.jobs.once.Do(func() {
		a.jobs.pending = map[string]*Job{}
		cfg := bus.ConsumeConfig{
			Stream: StreamResults,
			Consumer: jetstream.ConsumerConfig{
				Durable:       resultsConsumer(a.ID()),
				FilterSubject: ResultsSubject(a.ID()),
				DeliverPolicy: jetstream.DeliverNewPolicy,
			},
		}
		a.jobs.err = a.p.Bus.Consume(context.Background(), cfg, a.deliverResult)
	})
	if a.jobs.err != nil {
		return fmt.Errorf("consuming job results: %w", a.jobs.err)
	}

	return nil
}

// deliverResult hands one result to its job. A result of a job this
// process did not start (an earlier process's) is acknowledged and
// dropped.
func (a *Agent) deliverResult(_ context.Context, m *bus.Message) error {
	if !hasRole(m.SenderRoles, RoleSandbox) {
		return fmt.Errorf("job result from %q: %w", m.Sender, bus.ErrPoison)
	}
	var res JobResult
	if err := m.Decode(&res); err != nil {
		return errors.Join(err, bus.ErrPoison)
	}
	a.jobs.mu.Lock()
	job := a.jobs.pending[res.JobID]
	delete(a.jobs.pending, res.JobID)
	a.jobs.mu.Unlock()
	if job != nil {
		job.res = res
		close(job.done)
	}

	return nil
}

func hasRole(roles []string, role string) bool { return slices.Contains(roles, role) }
