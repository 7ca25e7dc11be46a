package broker

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/nodexsec/nodex/libs/identity"
)

// ErrUnauthorized reports a rejected connection. The client only sees the
// server's generic "Authorization Violation"; the cause goes to OnError.
var ErrUnauthorized = errors.New("broker: connection not authorized")

// handleCallout replies to one auth callout request from the server.
func (b *Broker) handleCallout(msg *nats.Msg) {
	rc, err := jwt.DecodeAuthorizationRequestClaims(string(msg.Data))
	if err != nil {
		// Without a decoded request there is no user key or server id for
		// a reply. The server rejects the client when the callout times out.
		b.cfg.OnError(fmt.Errorf("decoding auth callout request: %w", err))
		return
	}
	req := &rc.AuthorizationRequest
	userJWT, id, err := b.authorize(req)
	if errors.Is(err, identity.ErrNotFound) {
		// An identity created a moment ago can connect before the view's KV
		// watch has delivered its record. The nonce signature is already
		// verified, so only the holder of the nkey gets this wait, and the
		// semaphore keeps made-up nkeys from holding up other connections:
		// past it the connection is rejected at once. Each client network
		// (hostGroup) gets only a few of the slots, so one sending made-up
		// nkeys cannot take the wait away from identities connecting
		// elsewhere.
		host := hostGroup(req.ClientInformation.Host)
		if b.lateKeyHosts.acquire(host) {
			select {
			case b.lateKeys <- struct{}{}:
				go func() {
					defer func() { <-b.lateKeys; b.lateKeyHosts.release(host) }()
					userJWT, id, err := b.authorizeLate(req)
					b.respondCallout(msg, req, userJWT, id, err)
				}()
				return
			default:
				b.lateKeyHosts.release(host)
			}
		}
	}
	b.respondCallout(msg, req, userJWT, id, err)
}

// lateKeyWait bounds how long a callout waits for the registry view to
// show an unknown nkey, well inside nats-server's default auth callout
// timeout of 2 s. maxLateKeyWaits bounds how many wait at once.
// maxLateKeyWaitsPerHost bounds those of one client network (hostGroup).
const (
	lateKeyWait            = time.Second
	maxLateKeyWaits        = 16
	maxLateKeyWaitsPerHost = 2
)

// hostGroup returns the network that client address host counts under for
// the late-key waits: its /24 for IPv4 and its /64 for IPv6, because one
// party often holds a whole such block. An address that does not parse
// counts alone.
//
// NOTE: clients behind one NAT or proxy share a group. An attacker with
// more than eight groups can still fill every wait, and the agent SDK then
// retries the rejected connections for 5 s.
func hostGroup(host string) string {
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	bits := 64
	if ip.Unmap().Is4() {
		ip, bits = ip.Unmap(), 24
	}
	prefix, err := ip.Prefix(bits)
	if err != nil {
		return host
	}

	return prefix.String()
}

// hostSlots counts the late-key waits of each client network.
type hostSlots struct {
	mu     sync.Mutex
	byHost map[string]int
}

// acquire takes one of host's slots, or reports false when it has
// maxLateKeyWaitsPerHost already.
func (h *hostSlots) acquire(host string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.byHost[host] >= maxLateKeyWaitsPerHost {
		return false
	}
	if h.byHost == nil {
		h.byHost = make(map[string]int)
	}
	h.byHost[host]++

	return true
}

// release returns a slot that acquire took. The map keeps only the hosts
// that wait now, so it holds about maxLateKeyWaits hosts at most.
func (h *hostSlots) release(host string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.byHost[host]--; h.byHost[host] <= 0 {
		delete(h.byHost, host)
	}
}

// authorizeLate retries authorize while the view does not know the
// connection's nkey, for up to lateKeyWait.
func (b *Broker) authorizeLate(req *jwt.AuthorizationRequest) (string, string, error) {
	deadline := time.Now().Add(lateKeyWait)
	for {
		time.Sleep(20 * time.Millisecond)
		userJWT, id, err := b.authorize(req)
		if !errors.Is(err, identity.ErrNotFound) || time.Now().After(deadline) {
			return userJWT, id, err
		}
	}
}

// respondCallout sends the callout reply: the user JWT, or a rejection
// whose cause goes to OnError and the denial report.
func (b *Broker) respondCallout(msg *nats.Msg, req *jwt.AuthorizationRequest, userJWT, id string,
	err error) {
	resp := jwt.NewAuthorizationResponseClaims(req.UserNkey)
	resp.Audience = req.Server.ID
	if err != nil {
		b.cfg.OnError(err)
		resp.Error = "not authorized"
		b.denials.add(Denial{Kind: DenialAuth, Identity: id, ConnID: req.ClientInformation.ID,
			Server: req.Server.ID, Host: req.ClientInformation.Host, Reason: err.Error()}, time.Now())
	} else {
		resp.Jwt = userJWT
	}
	token, err := resp.Encode(b.issuer)
	if err != nil {
		b.cfg.OnError(fmt.Errorf("signing auth callout response: %w", err))
		return
	}
	if err := msg.Respond([]byte(token)); err != nil {
		b.cfg.OnError(fmt.Errorf("sending auth callout response: %w", err))
	}
}

// authorize checks the client's nkey signature over the server nonce and
// the identity's status, and returns a user JWT with its permissions. The
// identity id is returned whenever the nonce signature named one, even with
// an error.
func (b *Broker) authorize(req *jwt.AuthorizationRequest) (string, string, error) {
	ident, err := b.verifyNonce(req)
	if err != nil {
		return "", "", err
	}
	if !ident.Active() {
		return "", ident.ID, fmt.Errorf("%w: identity %q is %s", ErrUnauthorized, ident.ID, ident.Status)
	}
	uc := jwt.NewUserClaims(req.UserNkey)
	// Outside operator mode the audience names the account the user joins.
	uc.Audience = AccountNodeX
	uc.Name = ident.ID
	uc.Permissions = Permissions(b.cfg.Grants, ident)
	// The tag travels with the connection into connect events and CONNZ,
	// so every node can tell a connection granted before a role change.
	uc.Tags.Add(permissionTag(uc.Permissions))
	token, err := uc.Encode(b.issuer)
	if err != nil {
		return "", ident.ID, fmt.Errorf("signing user JWT for %q: %w", ident.ID, err)
	}

	return token, ident.ID, nil
}

// verifyNonce returns the identity whose nkey signed the nonce of this
// connection. nats.go signs the nonce with the nkey and sends the
// signature in unpadded base64url; standard base64 is accepted as the
// server itself does.
func (b *Broker) verifyNonce(req *jwt.AuthorizationRequest) (*identity.Identity, error) {
	pub := req.ConnectOptions.Nkey
	nonce := req.ClientInformation.Nonce
	if pub == "" || nonce == "" || req.ConnectOptions.SignedNonce == "" {
		return nil, fmt.Errorf("%w: client %d from %s sent no nkey signature",
			ErrUnauthorized, req.ClientInformation.ID, req.ClientInformation.Host)
	}
	sig, err := base64.RawURLEncoding.DecodeString(req.ConnectOptions.SignedNonce)
	if err != nil {
		sig, err = base64.StdEncoding.DecodeString(req.ConnectOptions.SignedNonce)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: nkey %s sent a malformed signature", ErrUnauthorized, pub)
	}
	kp, err := nkeys.FromPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: invalid nkey %q", ErrUnauthorized, pub)
	}
	if err := kp.Verify([]byte(nonce), sig); err != nil {
		return nil, fmt.Errorf("%w: bad nonce signature for nkey %s", ErrUnauthorized, pub)
	}
	ident, err := b.view.ByNATSKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: nkey %s: %w", ErrUnauthorized, pub, err)
	}

	return ident, nil
}
