# Package nodex.authz decides every NodeX access request.
#
# Input: the decision input (schemas/policy/decision-input.schema.json).
# Data: data.nodex.rbac.roles (role name -> role) and
# data.nodex.rbac.bindings (identity id -> role names).
# Output: decision = {"allow": bool, "reasons": [string], "flags": [string]}.
#
# A request is allowed only when no deny reason applies and at least one of
# the subject's roles grants the action on the resource type.
package nodex.authz

# Role data is read by key, never as a whole object, so that a decision
# costs about the same with 10 or 10,000 roles and bindings.

key_reader_prefix := "key-reader:"

# Effective roles: those the identity registry gives the subject plus those
# bound to its id in the policy data.
roles contains r if some r in input.subject.roles

roles contains r if some r in data.nodex.rbac.bindings[input.subject.id]

# key_reader_provider returns the provider of a parametric key-reader role.
key_reader_provider(r) := p if {
	startswith(r, key_reader_prefix)
	p := substring(r, count(key_reader_prefix), -1)
	regex.match(`^[a-z0-9_-]+$`, p)
}

defined(r) if data.nodex.rbac.roles[r]

defined(r) if key_reader_provider(r)

# A role may be limited to subject kinds, so that an agent bound to a
# service role gains nothing from it.
usable(r) if not data.nodex.rbac.roles[r].kinds

usable(r) if input.subject.kind in data.nodex.rbac.roles[r].kinds

role_permissions contains [r, p] if {
	some r in roles
	some p in data.nodex.rbac.roles[r].permissions
}

role_permissions contains [r, p] if {
	some r in roles
	provider := key_reader_provider(r)
	p := {"resource": "key", "actions": ["retrieve"], "providers": [provider]}
}

# Roles whose permission covers the request, ignoring time windows.
covering contains r if {
	some [r, p] in role_permissions
	usable(r)
	covers(p)
}

# Roles whose permission covers the request at input.context.time.
matching contains r if {
	some [r, p] in role_permissions
	usable(r)
	covers(p)
	in_window(p)
}

# Roles that grant the request, labels included.
grants contains r if {
	some r in matching
	prod_allowed(r)
}

covers(p) if {
	p.resource in {"*", input.resource.type}
	some a in p.actions
	a in {"*", input.action}
	provider_allowed(p)
}

provider_allowed(p) if not p.providers

provider_allowed(p) if input.context.provider in p.providers

in_window(p) if not p.window

in_window(p) if {
	ns := time.parse_rfc3339_ns(input.context.time)
	[hour, _, _] := time.clock([ns, "UTC"])
	hour >= p.window.start_hour
	hour < p.window.end_hour
	weekday_allowed(p.window, ns)
}

weekday_allowed(w, _) if not w.days

weekday_allowed(w, ns) if time.weekday(ns) in w.days

prod_resource if input.resource.labels.env == "prod"

prod_allowed(_) if not prod_resource

prod_allowed(r) if data.nodex.rbac.roles[r].prod == true

# Actions that run code, which critical findings block.
runs_code if [input.resource.type, input.action] in {
	["code", "submit"],
	["code", "run"],
	["sandbox", "exec"],
}

critical_findings := [f | some f in input.context.findings; f.severity == "critical"]

high_findings := [f | some f in input.context.findings; f.severity == "high"]

deny contains msg if {
	input.subject.status != "active"
	msg := sprintf("identity %q has status %q; only active identities are allowed", [
		input.subject.id,
		input.subject.status,
	])
}

deny contains "subject has no roles" if count(roles) == 0

deny contains msg if {
	some r in roles
	not defined(r)
	msg := unknown_role_reason(r)
}

deny contains msg if {
	some r in roles
	defined(r)
	not usable(r)
	msg := sprintf("role %q is not valid for subject kind %q", [r, input.subject.kind])
}

deny contains msg if {
	count(roles) > 0
	count(covering) == 0
	msg := sprintf("no role grants %q on %q", [input.action, input.resource.type])
}

deny contains msg if {
	count(covering) > 0
	count(matching) == 0
	msg := sprintf("no role grants %q on %q at %s", [
		input.action,
		input.resource.type,
		input.context.time,
	])
}

deny contains "resource is labelled env=prod and no granting role is allowed on prod" if {
	count(matching) > 0
	count(grants) == 0
}

deny contains msg if {
	runs_code
	count(critical_findings) > 0
	msg := sprintf("code has %d critical findings", [count(critical_findings)])
}

# An agent runs only code it submitted itself: the sandbox runner labels the
# resource with the bundle's author.
deny contains "agents may run only bundles they authored" if {
	input.subject.kind == "agent"
	[input.resource.type, input.action] in {["sandbox", "exec"], ["code", "run"]}
	input.resource.labels.author != input.subject.id
}

# Containment restrictions, set and lifted on nodex.v1.policy.restrict,
# are stored at data.nodex.rbac.restrictions[identity][kind]. A restriction
# applies until its expires_at; one whose expiry cannot be parsed applies,
# so that a malformed value never lifts a containment.
restriction(kind) := r if {
	r := data.nodex.rbac.restrictions[input.subject.id][kind]
	not restriction_expired(r)
}

restriction_expired(r) if {
	r.expires_at
	time.parse_rfc3339_ns(input.context.time) >= time.parse_rfc3339_ns(r.expires_at)
}

# A key_access restriction denies every action on keys, retrieve included.
deny contains msg if {
	input.resource.type == "key"
	r := restriction("key_access")
	msg := sprintf("key access of %q is restricted by incident %q: %s", [
		input.subject.id,
		r.incident_id,
		r.reason,
	])
}

# A rate_limit restriction rides on allowed retrieves as a flag carrying the
# cap in requests per minute, for the keyvault to apply to the caller.
# NOTE: services/keyvault does not read this flag yet, so until it does the
# caller keeps the keyvault's configured per-caller rate.
flags contains sprintf("rate_limit_per_minute:%d", [r.requests_per_minute]) if {
	[input.resource.type, input.action] == ["key", "retrieve"]
	r := restriction("rate_limit")
}

unknown_role_reason(r) := msg if {
	lower(r) != r
	defined(lower(r))
	msg := sprintf("unknown role %q (role names are case-sensitive; %q exists)", [r, lower(r)])
} else := sprintf("unknown role %q", [r])

flags contains "findings_high" if {
	runs_code
	count(high_findings) > 0
}

allow_reasons := [msg |
	some r in sort(grants)
	msg := sprintf("role %q grants %q on %q", [r, input.action, input.resource.type])
]

decision := {"allow": false, "reasons": sort(deny), "flags": []} if {
	count(deny) > 0
} else := {"allow": true, "reasons": allow_reasons, "flags": sort(flags)} if {
	count(grants) > 0
} else := {"allow": false, "reasons": ["no role grants the request"], "flags": []}
