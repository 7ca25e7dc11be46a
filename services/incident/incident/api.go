package incident

import (
	"github.com/nodexsec/nodex/services/incident/internal/app"
	"github.com/nodexsec/nodex/services/incident/internal/domain"
	"github.com/nodexsec/nodex/services/incident/internal/ports"
)

// Operator subjects and the role that serves them. A client sends each
// request with bus.Client.Request(ctx, subject, Role, req, &reply).
const (
	SubjectList   = ports.SubjectList
	SubjectGet    = ports.SubjectGet
	SubjectUpdate = ports.SubjectUpdate
	SubjectReport = ports.SubjectReport
	Role          = ports.Role
)

// Request and reply bodies of the operator subjects; their JSON Schemas are
// in schemas/incident/.
type (
	// ListRequest filters nodex.v1.incident.list.
	ListRequest = ports.ListRequest
	// ListReply is the reply of nodex.v1.incident.list.
	ListReply = ports.ListReply
	// GetRequest names the incident of nodex.v1.incident.get and .report.
	GetRequest = ports.GetRequest
	// GetReply is the reply of nodex.v1.incident.get and .update.
	GetReply = ports.GetReply
	// UpdateRequest is one operator command of nodex.v1.incident.update.
	UpdateRequest = ports.UpdateRequest
	// ReportReply is the reply of nodex.v1.incident.report.
	ReportReply = ports.ReportReply
	// Incident is one stored incident.
	Incident = domain.Incident
	// Summary is one row of an incident list.
	Summary = domain.Summary
	// Report is an incident's report as data.
	Report = domain.Report
	// Verb is an operator command.
	Verb = app.Verb
	// State is a lifecycle state.
	State = domain.State
)

// The operator verbs of [UpdateRequest].
const (
	VerbAssess          = app.VerbAssess
	VerbContain         = app.VerbContain
	VerbApprove         = app.VerbApprove
	VerbAck             = app.VerbAck
	VerbInvestigate     = app.VerbInvestigate
	VerbRemediate       = app.VerbRemediate
	VerbClose           = app.VerbClose
	VerbReopen          = app.VerbReopen
	VerbLift            = app.VerbLift
	VerbNote            = app.VerbNote
	VerbResolveFollowUp = app.VerbResolveFollowUp
)

// The lifecycle states, in their only legal order.
const (
	StateOpen          = domain.StateOpen
	StateAssessed      = domain.StateAssessed
	StateContained     = domain.StateContained
	StateInvestigating = domain.StateInvestigating
	StateRemediated    = domain.StateRemediated
	StateClosed        = domain.StateClosed
)
