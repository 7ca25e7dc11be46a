package broker

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/nodexsec/nodex/libs/identity"
)

// DefaultSweepInterval is how often the broker lists every connection of
// the NODEX account and closes those of identities that are not active.
// The sweep backs up the connect-event tracking: it also finds connections
// whose event the broker missed.
const DefaultSweepInterval = 10 * time.Second

// sweepMaxConns bounds one CONNZ listing per server.
// NOTE: a server with more connections than this is swept only partially.
const sweepMaxConns = 10_000

// sweepWait is how long a sweep collects CONNZ replies from the servers of
// a cluster after the first one arrives.
const sweepWait = 250 * time.Millisecond

// connzReply is one server's reply to a CONNZ request.
type connzReply struct {
	Server server.ServerInfo `json:"server"`
	Data   server.Connz      `json:"data"`
	Error  *server.ApiError  `json:"error,omitempty"`
}

// sweep lists the NODEX account's connections on every server and closes
// the connections of identities that exist in the registry but are not
// active, and those granted other permissions than the identity has now. It returns how many connections it closed.
func (b *Broker) sweep() (int, error) {
	inbox := b.sysNC.NewRespInbox()
	replies := make(chan *nats.Msg, 64)
	sub, err := b.sysNC.ChanSubscribe(inbox, replies)
	if err != nil {
		return 0, fmt.Errorf("subscribing to CONNZ replies: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()

	body, _ := json.Marshal(map[string]any{
		"acc": AccountNodeX, "auth": true, "limit": sweepMaxConns,
	})
	if err := b.sysNC.PublishRequest("$SYS.REQ.SERVER.PING.CONNZ", inbox, body); err != nil {
		return 0, fmt.Errorf("requesting CONNZ: %w", err)
	}

	closed := 0
	timeout := 5 * time.Second
	for {
		select {
		case msg := <-replies:
			n, err := b.sweepReply(msg.Data)
			if err != nil {
				return closed, err
			}
			closed += n
			timeout = sweepWait
		case <-time.After(timeout):
			if closed == 0 && timeout != sweepWait {
				return 0, errors.New("requesting CONNZ: no server replied within 5s")
			}

			return closed, nil
		}
	}
}

func (b *Broker) sweepReply(data []byte) (int, error) {
	var r connzReply
	if err := json.Unmarshal(data, &r); err != nil {
		return 0, fmt.Errorf("decoding CONNZ reply: %w", err)
	}
	if r.Error != nil {
		return 0, fmt.Errorf("CONNZ on server %s: %s", r.Server.ID, r.Error.Description)
	}
	closed := 0
	for _, c := range r.Data.Conns {
		id := c.AuthorizedUser
		_, err := b.view.Active(id)
		// A kick after a role change that failed, or a connect event that
		// was missed, leaves a connection with permissions it no longer has.
		if !errors.Is(err, identity.ErrNotActive) &&
			(err != nil || !b.stalePermissions(id, c.Tags)) {
			continue
		}
		b.kick(id, connRef{server: r.Server.ID, cid: c.Cid})
		closed++
	}

	return closed, nil
}

// runSweeps sweeps every interval until done is closed.
func (b *Broker) runSweeps(interval time.Duration, done <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()

	for {
		select {
		case <-done:
			return
		case <-t.C:
			if _, err := b.sweep(); err != nil {
				b.cfg.OnError(err)
			}
			if err := b.sweepConsumers(); err != nil {
				b.cfg.OnError(err)
			}
		}
	}
}
