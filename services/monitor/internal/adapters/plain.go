// Package adapters implements the monitor's outbound ports over JetStream:
// the threat stream, the dedupe and open-threat KV buckets, and openers that
// turn stored messages into events.
package adapters

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/nodexsec/nodex/services/monitor/internal/app"
)

// PlainOpener decodes events stored as plain JSON, without an envelope.
// It proves nothing about the sender, so it is for tests and for a
// single-process development setup only. With TrustSource set it treats the
// event's source as its authenticated signer, which is sound only when NATS
// permissions let nothing but NodeX services publish on nodex.v1.events.>.
type PlainOpener struct {
	TrustSource bool
}

var _ app.Opener = PlainOpener{}

// Open implements [app.Opener].
func (o PlainOpener) Open(_ context.Context, msg *app.Message) (app.Opened, error) {
	var out app.Opened
	dec := json.NewDecoder(bytes.NewReader(msg.Data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out.Event); err != nil {
		return app.Opened{}, &app.Rejection{
			Reason: "undecodable",
			Err:    fmt.Errorf("decoding event JSON: %w", err),
		}
	}
	if o.TrustSource {
		out.Sender = out.Event.Source
		out.SenderKind = "service"
	}

	return out, nil
}
