package broker

import (
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/nodexsec/nodex/libs/events"
)

// Kinds of [Denial].
const (
	DenialPublish   = "publish"
	DenialSubscribe = "subscribe"
	DenialAuth      = "auth"
	DenialConsumer  = "consumer"
)

// Denial is one refusal by the broker or its server: a publish or
// subscribe outside a connection's permissions, a rejected connection, or
// a push consumer removed because it delivered outside its creator's inbox.
type Denial struct {
	// Kind is DenialPublish, DenialSubscribe, DenialAuth or DenialConsumer.
	Kind string
	// Identity is the authenticated identity id; empty when the
	// connection never authenticated or its identity is unknown.
	Identity string
	// ConnID is the server's client id of the connection; Server names
	// the server that holds it.
	ConnID uint64
	Server string
	// Host is the client's address, when known.
	Host string
	// Subject is the refused subject or deliver subject; empty for auth.
	Subject string
	// Reason is the broker's cause, for auth and consumer denials. It
	// names public keys and subjects only, never a secret.
	Reason string
	// Suppressed counts the denials of the same kind and identity (or host,
	// for auth) that the rate limit held back since the last report.
	Suppressed int
}

// DefaultDenialInterval is the least time between two reports of denials of
// one kind by one identity or host; repeats in between are counted.
const DefaultDenialInterval = 10 * time.Second

// denialMaxKeys bounds the limiter's host entries, so that a flood of
// connections from new hosts cannot grow the table without bound. Past it,
// host-keyed denials share one entry per kind. Identity-keyed denials keep
// their own entries: identities exist only in the root-signed registry, so
// their number is bounded already, and one identity's repeated denials must
// stay attributable to it (the monitor counts them per identity).
const denialMaxKeys = 4096

// denialLimiter reports the first denial per key at once and counts the
// repeats until the interval has passed.
type denialLimiter struct {
	interval time.Duration
	report   func(Denial)

	mu   sync.Mutex
	keys map[string]*denialSlot
}

type denialSlot struct {
	last       time.Time
	suppressed int
	pending    Denial // latest suppressed denial, reported by flush
}

func newDenialLimiter(interval time.Duration, report func(Denial)) *denialLimiter {
	if interval <= 0 {
		interval = DefaultDenialInterval
	}

	return &denialLimiter{interval: interval, report: report, keys: map[string]*denialSlot{}}
}

func denialKey(d Denial) string {
	if d.Identity != "" {
		return d.Kind + "/id/" + d.Identity
	}

	return d.Kind + "/host/" + d.Host
}

// add reports d now or counts it for a later report.
func (l *denialLimiter) add(d Denial, now time.Time) {
	key := denialKey(d)
	l.mu.Lock()
	slot, ok := l.keys[key]
	if !ok && d.Identity == "" && len(l.keys) >= denialMaxKeys {
		key = d.Kind + "/overflow"
		slot, ok = l.keys[key]
	}
	if !ok {
		slot = &denialSlot{}
		l.keys[key] = slot
	}
	if !slot.last.IsZero() && now.Sub(slot.last) < l.interval {
		slot.suppressed++
		slot.pending = d
		l.mu.Unlock()
		return
	}
	d.Suppressed = slot.suppressed
	slot.last, slot.suppressed = now, 0
	l.mu.Unlock()
	l.report(d)
}

// flush reports the counted repeats of every key whose interval has passed
// and removes idle keys.
func (l *denialLimiter) flush(now time.Time) {
	var out []Denial
	l.mu.Lock()
	for key, slot := range l.keys {
		if now.Sub(slot.last) < l.interval {
			continue
		}
		if slot.suppressed == 0 {
			delete(l.keys, key)
			continue
		}
		d := slot.pending
		d.Suppressed = slot.suppressed - 1
		slot.last, slot.suppressed = now, 0
		out = append(out, d)
	}
	l.mu.Unlock()
	for _, d := range out {
		l.report(d)
	}
}

// OnDenial registers fn to receive every reported [Denial], after the rate
// limit. fn is called from the broker's goroutines and must not block.
func (b *Broker) OnDenial(fn func(Denial)) {
	b.denialMu.Lock()
	defer b.denialMu.Unlock()

	b.denialFns = append(b.denialFns, fn)
}

func (b *Broker) reportDenial(d Denial) {
	b.denialMu.Lock()
	fns := append([]func(Denial){}, b.denialFns...)
	b.denialMu.Unlock()
	for _, fn := range fns {
		fn(d)
	}
}

// violationQueue carries permission violations from the server's logger
// to the broker.
type violationQueue struct {
	ch      chan Denial
	dropped atomic.Uint64
}

func newViolationQueue() *violationQueue {
	return &violationQueue{ch: make(chan Denial, 1024)}
}

// violationLog receives the server's log lines and turns permission
// violations into denials. nats-server 2.15 reports them only there, as
// client-prefixed errors such as
// `127.0.0.1:50000 - cid:5 - "name" - Publish Violation - Subject "x"`.
// Every line also goes to next, when set.
type violationLog struct {
	q        *violationQueue
	serverID string
	next     server.Logger
}

// installViolationLog makes srv log through a violationLog in front of
// its current logger, if any. Call it before the server starts.
func installViolationLog(srv *server.Server, q *violationQueue, debug, trace bool) {
	srv.SetLoggerV2(violationLog{q: q, serverID: srv.ID(), next: srv.Logger()}, debug, trace, false)
}

var _ server.Logger = violationLog{}

var (
	cidPattern = regexp.MustCompile(` - cid:(\d+)`)
	// subscribePattern finds the subject in the text of a subscription
	// violation, which the server formats itself before logging it.
	subscribePattern = regexp.MustCompile(`Subscription Violation - Subject ("(?:[^"\\]|\\.)*")`)
)

// Formats that nats-server 2.15 logs publish violations with; the subject
// or reply subject is the call's only argument.
const (
	publishViolation = "Publish Violation - Subject %q"
	replyViolation   = "Publish Violation - Reply %q"
)

func (l violationLog) Errorf(format string, v ...any) {
	if l.next != nil {
		l.next.Errorf(format, v...)
	}
	if !strings.Contains(format, " Violation - ") {
		return
	}
	d, ok := parseViolation(format, v)
	if !ok {
		return
	}
	d.Server = l.serverID
	// The server may hold the client's lock here, so the identity lookup,
	// which lists connections, runs on the broker's own goroutine.
	select {
	case l.q.ch <- d:
	default:
		l.q.dropped.Add(1)
	}
}

// parseViolation reads a permission violation from the format and
// arguments of a server log call, never from the formatted line. The
// server writes the client's connection name, which the client chooses,
// into the format itself, so a name holding verbs such as %d would shift
// the arguments, and a name holding violation text could pose as the
// subject. So the subject comes from the last argument, or for a
// subscription from the last match in the format, and the host and
// connection id from the literal prefix before the name.
func parseViolation(format string, v []any) (Denial, bool) {
	var d Denial
	switch {
	case strings.HasSuffix(format, publishViolation) || strings.HasSuffix(format, replyViolation):
		if len(v) == 0 {
			return d, false
		}
		d.Kind = DenialPublish
		switch subject := v[len(v)-1].(type) {
		case []byte:
			d.Subject = string(subject)
		case string:
			d.Subject = subject
		default:
			return d, false
		}
	default:
		all := subscribePattern.FindAllStringSubmatch(format, -1)
		if all == nil {
			return d, false
		}
		quoted := all[len(all)-1][1]
		subject, err := strconv.Unquote(quoted)
		if err != nil {
			subject = quoted
		}
		d.Kind = DenialSubscribe
		d.Subject = subject
	}
	if c := cidPattern.FindStringSubmatch(format); c != nil {
		d.ConnID, _ = strconv.ParseUint(c[1], 10, 64)
	}
	if host, _, ok := strings.Cut(format, " - "); ok {
		d.Host = host
	}

	return d, true
}

func (l violationLog) Noticef(format string, v ...any) {
	if l.next != nil {
		l.next.Noticef(format, v...)
	}
}

func (l violationLog) Warnf(format string, v ...any) {
	if l.next != nil {
		l.next.Warnf(format, v...)
	}
}

func (l violationLog) Fatalf(format string, v ...any) {
	if l.next != nil {
		l.next.Fatalf(format, v...)
	}
}

func (l violationLog) Debugf(format string, v ...any) {
	if l.next != nil {
		l.next.Debugf(format, v...)
	}
}

func (l violationLog) Tracef(format string, v ...any) {
	if l.next != nil {
		l.next.Tracef(format, v...)
	}
}

// runViolations names the identity of each violation and passes it to the
// rate limiter, until done is closed. Violations dropped because the queue
// was full are reported as one denial with Suppressed set.
func (b *Broker) runViolations(done <-chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()

	for {
		select {
		case <-done:
			return
		case d := <-b.violations.ch:
			if d.ConnID != 0 {
				d.Identity = b.conns.identityOf(connRef{server: d.Server, cid: d.ConnID})
				if d.Identity == "" {
					d.Identity = b.lookupConn(d.ConnID)
				}
			}
			b.denials.add(d, time.Now())
		case now := <-tick.C:
			if n := b.violations.dropped.Swap(0); n > 0 {
				b.reportDenial(Denial{Kind: DenialPublish, Reason: "violation queue full",
					Server: b.srv.ID(), Suppressed: int(n)})
			}
			b.denials.flush(now)
		}
	}
}

// lookupConn returns the authorized user of connection cid on the local
// server, for a violation that came before the connect event.
func (b *Broker) lookupConn(cid uint64) string {
	cz, err := b.srv.Connz(&server.ConnzOptions{CID: cid, Username: true})
	if err != nil || len(cz.Conns) == 0 {
		return ""
	}

	return cz.Conns[0].AuthorizedUser
}

// Event returns d as a security event of type broker.denied, for the
// composition root to publish through a service's event publisher. The
// event's subject is the authenticated identity, empty for a connection
// that never authenticated; its metadata name the connection.
func (d Denial) Event() events.SecurityEvent {
	action := map[string]string{DenialPublish: "publish", DenialSubscribe: "subscribe",
		DenialAuth: "connect", DenialConsumer: "create_consumer"}[d.Kind]
	meta := map[string]string{"kind": d.Kind, "connection": strconv.FormatUint(d.ConnID, 10),
		"server": d.Server, "suppressed": strconv.Itoa(d.Suppressed)}
	for k, v := range map[string]string{"host": d.Host, "reason": d.Reason} {
		if v != "" {
			meta[k] = clip(v)
		}
	}
	ev := events.SecurityEvent{Type: "broker.denied", Action: action, Subject: d.Identity,
		Status: events.StatusFailure, Severity: events.SeverityMedium, Metadata: meta}
	if d.Subject != "" {
		ev.Resource = clip("subject:" + d.Subject)
	}

	return ev
}

// clip shortens s to the event field limit without splitting a UTF-8
// sequence.
func clip(s string) string {
	if len(s) <= events.MaxFieldBytes {
		return s
	}
	s = s[:events.MaxFieldBytes]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}

	return s
}
