package broker

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/nodexsec/nodex/libs/identity"
)

// connRef names one client connection in a cluster.
type connRef struct {
	server string
	cid    uint64
}

// connTable maps identity ids to their open connections, as learned from
// the system account's connect and disconnect events.
type connTable struct {
	mu    sync.Mutex
	byID  map[string]map[connRef]struct{}
	byRef map[connRef]string
}

func newConnTable() *connTable {
	return &connTable{byID: map[string]map[connRef]struct{}{}, byRef: map[connRef]string{}}
}

// identityOf returns the identity id of connection c, or "" if unknown.
func (t *connTable) identityOf(c connRef) string {
	t.mu.Lock()
	defer t.mu.Unlock()

	return t.byRef[c]
}

func (t *connTable) add(id string, c connRef) {
	t.mu.Lock()
	defer t.mu.Unlock()

	if t.byID[id] == nil {
		t.byID[id] = map[connRef]struct{}{}
	}
	t.byID[id][c] = struct{}{}
	t.byRef[c] = id
}

func (t *connTable) remove(id string, c connRef) {
	t.mu.Lock()
	defer t.mu.Unlock()

	delete(t.byID[id], c)
	delete(t.byRef, c)
	if len(t.byID[id]) == 0 {
		delete(t.byID, id)
	}
}

func (t *connTable) list(id string) []connRef {
	t.mu.Lock()
	defer t.mu.Unlock()

	out := make([]connRef, 0, len(t.byID[id]))
	for c := range t.byID[id] {
		out = append(out, c)
	}

	return out
}

// subscribeConnEvents tracks the connections of the NODEX account.
func (b *Broker) subscribeConnEvents() error {
	connect := fmt.Sprintf("$SYS.ACCOUNT.%s.CONNECT", AccountNodeX)
	if _, err := b.sysNC.Subscribe(connect, b.onConnect); err != nil {
		return fmt.Errorf("subscribing to %s: %w", connect, err)
	}
	disconnect := fmt.Sprintf("$SYS.ACCOUNT.%s.DISCONNECT", AccountNodeX)
	if _, err := b.sysNC.Subscribe(disconnect, b.onDisconnect); err != nil {
		return fmt.Errorf("subscribing to %s: %w", disconnect, err)
	}
	if err := b.sysNC.Flush(); err != nil {
		return fmt.Errorf("flushing connection event subscriptions: %w", err)
	}

	return nil
}

// clientIdentity returns the identity id of a client: the callout sets it
// as the user JWT's name, which the server reports as the user. (NameTag
// carries the account name for callout users in nats-server 2.15.)
func clientIdentity(c server.ClientInfo) string { return c.User }

func (b *Broker) onConnect(msg *nats.Msg) {
	var ev server.ConnectEventMsg
	if err := json.Unmarshal(msg.Data, &ev); err != nil {
		b.cfg.OnError(fmt.Errorf("decoding connect event: %w", err))
		return
	}
	id := clientIdentity(ev.Client)
	if identity.ValidateID(id) != nil {
		return
	}
	ref := connRef{server: ev.Server.ID, cid: ev.Client.ID}
	_, err := b.view.Active(id)
	if errors.Is(err, identity.ErrNotFound) {
		// The broker's own users are not in the registry.
		return
	}
	b.conns.add(id, ref)
	// A suspension or a role change that landed between the callout and
	// this event would otherwise leave the connection open with what the
	// callout granted.
	if errors.Is(err, identity.ErrNotActive) || b.stalePermissions(id, ev.Client.Tags) {
		go b.kick(id, ref)
	}
}

// permissionTagPrefix starts the user JWT tag that carries a digest of the
// permissions the callout granted.
const permissionTagPrefix = "nodex-perm:"

// permissionTag returns the tag naming the digest of p.
func permissionTag(p jwt.Permissions) string {
	data, _ := json.Marshal(p)
	sum := sha256.Sum256(data)

	return permissionTagPrefix + hex.EncodeToString(sum[:12])
}

// stalePermissions reports whether a connection of identity id with tags
// was granted other permissions than id has now. A connection without the
// tag, or an identity the view cannot look up, is left to the other checks.
func (b *Broker) stalePermissions(id string, tags jwt.TagList) bool {
	ident, err := b.view.Identity(id)
	if err != nil {
		return false
	}
	for _, tag := range tags {
		if strings.HasPrefix(tag, permissionTagPrefix) {
			return tag != permissionTag(Permissions(b.cfg.Grants, ident))
		}
	}

	return false
}

func (b *Broker) onDisconnect(msg *nats.Msg) {
	var ev server.DisconnectEventMsg
	if err := json.Unmarshal(msg.Data, &ev); err != nil {
		b.cfg.OnError(fmt.Errorf("decoding disconnect event: %w", err))
		return
	}
	b.conns.remove(clientIdentity(ev.Client), connRef{server: ev.Server.ID, cid: ev.Client.ID})
}

// onIdentityChange closes every connection of an identity that stopped
// being active, or whose NATS permissions changed. The callout fixes a
// connection's permissions in its user JWT, so a removed role would
// otherwise keep its subjects until the client reconnects. A closed client
// reconnects at once and gets the new permissions.
func (b *Broker) onIdentityChange(c identity.Change) {
	if c.New.Active() {
		if c.Old != nil && c.Old.Active() && !b.samePermissions(c.Old, c.New) {
			for _, ref := range b.conns.list(c.New.ID) {
				go b.kick(c.New.ID, ref)
			}
		}
		return
	}
	for _, ref := range b.conns.list(c.New.ID) {
		go b.kick(c.New.ID, ref)
	}
	// The sweep also finds connections whose connect event was missed.
	go func() {
		if _, err := b.sweep(); err != nil {
			b.cfg.OnError(err)
		}
	}()
}

// samePermissions reports whether the callout would grant old and updated
// the same NATS permissions.
func (b *Broker) samePermissions(old, updated *identity.Identity) bool {
	return permissionTag(Permissions(b.cfg.Grants, old)) ==
		permissionTag(Permissions(b.cfg.Grants, updated))
}

// kick sends the system account request $SYS.REQ.SERVER.<id>.KICK to the
// server holding ref, which closes the connection. The request reaches
// other nodes of a cluster too.
func (b *Broker) kick(id string, ref connRef) {
	subject := fmt.Sprintf("$SYS.REQ.SERVER.%s.KICK", ref.server)
	body, _ := json.Marshal(server.KickClientReq{CID: ref.cid})
	reply, err := b.sysNC.Request(subject, body, 5*time.Second)
	if err != nil {
		b.cfg.OnError(fmt.Errorf("closing connection %d of %q: %w", ref.cid, id, err))
		return
	}
	var resp server.ServerAPIResponse
	if err := json.Unmarshal(reply.Data, &resp); err == nil && resp.Error != nil {
		b.cfg.OnError(fmt.Errorf("closing connection %d of %q: %s", ref.cid, id,
			resp.Error.Description))
		return
	}
	b.conns.remove(id, ref)
}
