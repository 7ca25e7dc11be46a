package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/logx"
	"github.com/nodexsec/nodex/services/monitor/internal/app"
)

// SubjectReport is the request subject on which agents report their own
// security events.
const SubjectReport = "nodex.v1.monitor.report"

// Report is the body of a nodex.v1.monitor.report request and ReportReply
// its reply.
type (
	Report      = app.Report
	ReportReply = app.ReportReply
)

// MaxReportSeverity is the highest severity a reported event is stored
// with.
const MaxReportSeverity = app.MaxReportSeverity

// serveReports serves nodex.v1.monitor.report in queue group monitor. Each
// report is stored through pub, which must wait for the stream's ack, so
// the reply's id names a stored event. Reports rejected for rate are
// counted by det as the reporter's flood.
func serveReports(c *bus.Client, pub *events.Publisher, det *app.Detector, cfg Config,
	log *slog.Logger) error {
	reporter := app.NewReporter(pub, cfg.ReportRatePerSecond, cfg.ReportBurst, nil)
	reporter.OnShed(det.ShedReport)
	h := func(ctx context.Context, req *bus.Request) (any, error) {
		var r Report
		if err := req.Decode(&r); err != nil {
			return nil, errs.InvalidRequest.Withf(
				"decoding report: %v; send type, action, resource, status, severity and "+
					"metadata only, since the monitor sets id, time, source and subject", err)
		}
		reply, err := reporter.Report(ctx, req.Sender, req.SenderKind, len(req.Body), r)
		switch {
		case errors.Is(err, app.ErrReportNotAgent):
			log.WarnContext(ctx, "event report denied", logx.KeyIdentity, req.Sender)
			return nil, errs.AccessDenied.Withf(
				"only agents report events here; services publish their own")
		case errors.Is(err, app.ErrReportInvalid):
			return nil, errs.InvalidRequest.Withf("%v", err)
		case errors.Is(err, app.ErrReportRateLimited):
			return nil, errs.RateLimited.Withf("%v; retry later", err)
		case err != nil:
			return nil, errs.AuditUnavailable.Wrap(err)
		}
		log.DebugContext(ctx, "event reported", logx.KeyIdentity, req.Sender,
			logx.KeyEventType, reply.Type, "event_id", reply.ID)

		return reply, nil
	}
	if err := c.Handle(SubjectReport, "monitor", h); err != nil {
		return fmt.Errorf("serving %s: %w", SubjectReport, err)
	}

	return nil
}
