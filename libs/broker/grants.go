package broker

import (
	"slices"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/nodexsec/nodex/libs/envelope"
	"github.com/nodexsec/nodex/libs/identity"
)

// Grant is one row of the permission table: the NATS rights that every
// identity holding Role receives. In subjects, "{id}" becomes the
// identity id, "{wrap}" its wrap-key token, "{token}" its subject token
// (the id with '-' turned into '_') and "{wrap_to}" its wrap recipient
// token. A subject with "{wrap_to_role}" becomes one subject per role of
// the identity, with the role's wrap recipient token.
type Grant struct {
	// Role selects identities: "*" is everyone, otherwise a role such as
	// "agent" or "service:codesec".
	Role string
	// Kinds, if set, limits the row to identities of these kinds, so that a
	// service or operator role given to an agent by mistake grants nothing.
	Kinds []identity.Kind
	// Publish and Subscribe list allowed subjects.
	Publish   []string
	Subscribe []string
	// DenyPublish and DenySubscribe override every allow.
	DenyPublish   []string
	DenySubscribe []string
	// Streams are JetStream stream names this role manages: create,
	// update, read, consume and publish to. KV buckets are "KV_<bucket>",
	// object stores "OBJ_<bucket>".
	Streams []string
	// ReadStreams are streams this role may read and consume but not
	// change.
	ReadStreams []string
	// Responses lets the role reply once to each request it receives.
	Responses bool
}

// responseTTL is how long a service may take to reply to one request
// before its right to publish on that reply subject lapses. Sandbox runs
// are the slowest requests.
const responseTTL = 5 * time.Minute

// RequestServices are the services that serve request subjects
// nodex.v1.<service>.<verb>.
var RequestServices = []string{"codesec", "sandbox", "keyvault", "policy", "monitor", "incident"}

// DefaultGrants returns the permission table of a NodeX deployment. A
// caller may append rows, for example for a new stream, before passing it
// to [Start].
func DefaultGrants() []Grant {
	// Every party verifies signatures and seals to roles with the whole
	// registry: its view watches the bucket, and the heartbeat digest covers
	// every record.
	everyone := Grant{
		Role:        "*",
		Subscribe:   []string{"_INBOX.{id}.>"},
		Publish:     append([]string{"$KV." + envelope.WrapBucket + ".wrap.{wrap}.>"}, ownWraps()...),
		ReadStreams: []string{"KV_" + identity.Bucket},
	}
	// Services and operators read the whole wrap bucket. Agents read only
	// the wraps in ownWraps, because the keys show who writes to whom.
	wrapReaders := Grant{
		Role:        "*",
		Kinds:       []identity.Kind{identity.KindService, identity.KindOperator},
		ReadStreams: []string{"KV_" + envelope.WrapBucket},
	}
	for _, svc := range RequestServices {
		everyone.Publish = append(everyone.Publish, "nodex.v1."+svc+".*")
	}
	everyone.Publish = append(everyone.Publish, ownResults()...)
	// The agent denies apply by kind, so an agent without the "agent" role
	// gets them too.
	agent := Grant{
		Role:          "*",
		Kinds:         []identity.Kind{identity.KindAgent},
		DenyPublish:   []string{"nodex.v1.events.>", "nodex.v1.threats.>", "$O.>"},
		DenySubscribe: []string{"nodex.>"},
	}
	operator := Grant{
		Role:      identity.RoleOperator,
		Kinds:     []identity.Kind{identity.KindOperator},
		Publish:   []string{"$JS.API.>", "$KV.>", "$O.>", "$JS.ACK.>", "$JS.FC.>", "nodex.v1.policy.role.*"},
		Subscribe: []string{"nodex.v1.events.>", "nodex.v1.threats.>"},
	}

	grants := []Grant{everyone, wrapReaders, agent, operator}
	for _, svc := range identity.Services {
		grants = append(grants, serviceGrant(svc))
	}

	return grants
}

// ResultsConsumer returns the name of the only consumer identity id may
// create on NODEX_SANDBOX_RESULTS.
func ResultsConsumer(id string) string { return "results-" + id }

// ownResults returns the subjects that let an identity read its own
// asynchronous sandbox results: one consumer named results-{id}, filtered
// to nodex.v1.sandbox.results.{token}, and nothing else of that stream.
func ownResults() []string {
	const s = "NODEX_SANDBOX_RESULTS"
	c := s + ".results-{id}"

	return []string{
		"$JS.API.STREAM.INFO." + s,
		"$JS.API.CONSUMER.CREATE." + c + ".nodex.v1.sandbox.results.{token}",
		"$JS.API.CONSUMER.INFO." + c, "$JS.API.CONSUMER.DELETE." + c,
		"$JS.API.CONSUMER.MSG.NEXT." + c, "$JS.ACK." + c + ".>",
	}
}

// ownWraps returns the direct get subjects of the wraps an identity may
// read: those it sent, and those addressed to it or to one of its roles,
// of every key version or epoch. Key layout: [envelope.WrapKey.String].
func ownWraps() []string {
	get := "$JS.API.DIRECT.GET.KV_" + envelope.WrapBucket + ".$KV." + envelope.WrapBucket + ".wrap."

	return []string{get + "{wrap}.>", get + "*.*.{wrap_to}.*", get + "*.*.{wrap_to_role}.*"}
}

// serviceGrant returns the base rights of service svc plus the streams it
// owns or reads.
func serviceGrant(svc string) Grant {
	g := Grant{
		Role:        identity.ServiceRole(svc),
		Kinds:       []identity.Kind{identity.KindService},
		Subscribe:   []string{"nodex.v1." + svc + ".>"},
		Publish:     []string{"nodex.v1.events." + svc + ".>"},
		ReadStreams: []string{"NODEX_EVENTS", "KV_NODEX_POLICY"},
		Responses:   true,
	}
	switch svc {
	case "codesec":
		g.Streams = []string{"OBJ_NODEX_BUNDLES", "KV_NODEX_REVOKED"}
	case "sandbox":
		g.ReadStreams = append(g.ReadStreams, "OBJ_NODEX_BUNDLES", "KV_NODEX_REVOKED",
			"KV_NODEX_KEY_FINGERPRINTS")
		g.Streams = []string{"NODEX_SANDBOX_JOBS", "NODEX_SANDBOX_RESULTS", "KV_NODEX_RECEIPTS"}
		g.Publish = append(g.Publish, "nodex.v1.sandbox.results.>")
	case "keyvault":
		g.Streams = []string{"KV_NODEX_KEYVAULT", "KV_NODEX_KEYVAULT_REQUESTS", "KV_NODEX_KEY_FINGERPRINTS"}
	case "policy":
		g.Streams = []string{"KV_NODEX_POLICY"}
	case "monitor":
		g.Publish = append(g.Publish, "nodex.v1.threats.>")
		g.Streams = []string{"NODEX_THREATS", "KV_MONITOR_SEEN", "KV_MONITOR_THREATS"}
	case "incident":
		g.ReadStreams = append(g.ReadStreams, "NODEX_THREATS")
		g.Streams = []string{"KV_NODEX_INCIDENTS"}
		// Containment writes authority-signed downgrades; readers verify
		// the signature, so the write right alone grants nothing.
		g.Publish = append(g.Publish, "$KV."+identity.Bucket+".id.*")
	}

	return g
}

// Permissions computes the NATS permissions of ident from grants: the
// union of every row whose role ident holds, with denies applied last.
func Permissions(grants []Grant, ident *identity.Identity) jwt.Permissions {
	var p jwt.Permissions
	r := strings.NewReplacer("{id}", ident.ID, "{wrap}", envelope.WrapSenderToken(ident.ID),
		"{token}", subjectToken(ident.ID),
		"{wrap_to}", envelope.WrapRecipientToken(envelope.RecipientIdentity, ident.ID))
	expand := func(subjects []string) []string {
		out := make([]string, 0, len(subjects))
		for _, s := range subjects {
			if !strings.Contains(s, "{wrap_to_role}") {
				out = append(out, r.Replace(s))
				continue
			}
			for _, role := range ident.Roles {
				tok := envelope.WrapRecipientToken(envelope.RecipientRole, role)
				out = append(out, r.Replace(strings.ReplaceAll(s, "{wrap_to_role}", tok)))
			}
		}

		return out
	}
	for _, g := range grants {
		if g.Role != "*" && !ident.HasRole(g.Role) {
			continue
		}
		if len(g.Kinds) > 0 && !slices.Contains(g.Kinds, ident.Kind) {
			continue
		}
		p.Pub.Allow.Add(expand(g.Publish)...)
		p.Sub.Allow.Add(expand(g.Subscribe)...)
		p.Pub.Deny.Add(expand(g.DenyPublish)...)
		p.Sub.Deny.Add(expand(g.DenySubscribe)...)
		for _, s := range g.Streams {
			p.Pub.Allow.Add(manageStream(s)...)
		}
		for _, s := range g.ReadStreams {
			p.Pub.Allow.Add(readStream(s)...)
		}
		if g.Responses {
			p.Resp = &jwt.ResponsePermission{MaxMsgs: 1, Expires: responseTTL}
		}
	}
	p.Pub.Allow.Add("$JS.API.INFO", "$JS.API.STREAM.NAMES")
	// NODEX_EVENTS is append-only, so no identity may delete or purge it.
	p.Pub.Deny.Add(
		"$JS.API.STREAM.DELETE.NODEX_EVENTS", "$JS.API.STREAM.PURGE.NODEX_EVENTS",
		"$JS.API.STREAM.MSG.DELETE.NODEX_EVENTS",
	)
	slices.Sort(p.Pub.Allow)
	p.Pub.Allow = slices.Compact(p.Pub.Allow)

	return p
}

// subjectToken returns id as a subject token: every byte outside a-z, 0-9
// and _ becomes _. Ids never contain _, so distinct ids keep distinct
// tokens.
func subjectToken(id string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			return r
		}

		return '_'
	}, id)
}

// readStream returns the JetStream API subjects for reading stream s:
// stream info, direct and API message gets, and consumers that read it.
func readStream(s string) []string {
	return []string{
		"$JS.API.STREAM.INFO." + s,
		"$JS.API.STREAM.MSG.GET." + s,
		"$JS.API.DIRECT.GET." + s, "$JS.API.DIRECT.GET." + s + ".>",
		"$JS.API.CONSUMER.CREATE." + s, "$JS.API.CONSUMER.CREATE." + s + ".>",
		"$JS.API.CONSUMER.DURABLE.CREATE." + s + ".>",
		"$JS.API.CONSUMER.INFO." + s + ".>", "$JS.API.CONSUMER.DELETE." + s + ".>",
		"$JS.API.CONSUMER.MSG.NEXT." + s + ".>",
		"$JS.API.CONSUMER.NAMES." + s, "$JS.API.CONSUMER.LIST." + s,
		"$JS.ACK." + s + ".>", "$JS.FC." + s + ".>",
	}
}

// manageStream returns the subjects for managing stream s: reading it,
// creating and updating it, and publishing to it if it is a KV bucket or
// an object store. Deletion of a stream stays with the operator.
func manageStream(s string) []string {
	out := append(readStream(s),
		"$JS.API.STREAM.CREATE."+s, "$JS.API.STREAM.UPDATE."+s,
		"$JS.API.STREAM.MSG.DELETE."+s, "$JS.API.STREAM.PURGE."+s,
	)
	if b, ok := strings.CutPrefix(s, "KV_"); ok {
		out = append(out, "$KV."+b+".>")
	}
	if b, ok := strings.CutPrefix(s, "OBJ_"); ok {
		out = append(out, "$O."+b+".>")
	}

	return out
}
