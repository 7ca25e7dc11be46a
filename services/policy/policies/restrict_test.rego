package nodex.authz_test

import data.nodex.authz

# Containment restrictions at data.nodex.rbac.restrictions. The helpers req
# and noon (2026-03-04T12:00:00Z) come from authz_test.rego.

key_reader := {"id": "agent-7", "kind": "agent", "roles": ["key-reader:openai"]}

retrieve_openai := with_context(
	req(key_reader, "retrieve", {"type": "key", "id": "openai-dev"}),
	{"provider": "openai"},
)

key_access_restriction := {"agent-7": {"key_access": {
	"reason": "api abuse",
	"incident_id": "inc-1",
	"set_by": "incident",
	"since": "2026-03-04T11:00:00Z",
}}}

test_key_reader_allowed_without_restriction if {
	d := authz.decision with input as retrieve_openai
	d.allow
	d.flags == []
}

test_key_access_restriction_denies_retrieve if {
	d := authz.decision with input as retrieve_openai
		with data.nodex.rbac.restrictions as key_access_restriction
	not d.allow
	d.reasons == [`key access of "agent-7" is restricted by incident "inc-1": api abuse`]
}

test_key_access_restriction_denies_other_key_actions if {
	op := {"id": "agent-7", "kind": "operator", "roles": ["operator"]}
	d := authz.decision with input as req(op, "list", {"type": "key"})
		with data.nodex.rbac.restrictions as key_access_restriction
	not d.allow
}

test_key_access_restriction_leaves_code_alone if {
	s := {"id": "agent-7", "kind": "agent", "roles": ["agent"]}
	d := authz.decision with input as req(s, "submit", {"type": "code"})
		with data.nodex.rbac.restrictions as key_access_restriction
	d.allow
}

test_key_access_restriction_of_other_identity_ignored if {
	other := {"agent-8": key_access_restriction["agent-7"]}
	d := authz.decision with input as retrieve_openai
		with data.nodex.rbac.restrictions as other
	d.allow
}

test_expired_restriction_no_longer_applies if {
	expired := {"agent-7": {"key_access": object.union(
		key_access_restriction["agent-7"].key_access,
		{"expires_at": "2026-03-04T12:00:00Z"},
	)}}
	d := authz.decision with input as retrieve_openai
		with data.nodex.rbac.restrictions as expired
	d.allow
}

test_unexpired_restriction_applies if {
	later := {"agent-7": {"key_access": object.union(
		key_access_restriction["agent-7"].key_access,
		{"expires_at": "2026-03-04T12:00:01Z"},
	)}}
	d := authz.decision with input as retrieve_openai
		with data.nodex.rbac.restrictions as later
	not d.allow
}

test_rate_limit_restriction_flags_retrieve if {
	limited := {"agent-7": {"rate_limit": {
		"reason": "api abuse", "incident_id": "inc-1", "set_by": "incident",
		"since": "2026-03-04T11:00:00Z", "requests_per_minute": 6,
	}}}
	d := authz.decision with input as retrieve_openai
		with data.nodex.rbac.restrictions as limited
	d.allow
	d.flags == ["rate_limit_per_minute:6"]
}

test_incident_service_may_restrict if {
	s := {"id": "incident", "kind": "service", "roles": ["service:incident"]}
	d := authz.decision with input as req(s, "restrict", {"type": "policy", "id": "agent-7"})
	d.allow
}

test_operator_may_restrict if {
	d := authz.decision with input as req(operator, "restrict", {"type": "policy", "id": "agent-7"})
	d.allow
}

test_no_other_service_may_restrict if {
	every role in ["service:keyvault", "service:monitor", "service:codesec", "service:sandbox",
		"service:policy"] {
		s := {"id": "svc", "kind": "service", "roles": [role]}
		d := authz.decision with input as req(s, "restrict", {"type": "policy", "id": "a"})
		not d.allow
	}
}

test_agent_may_not_restrict if {
	d := authz.decision with input as req(agent, "restrict", {"type": "policy", "id": "agent-7"})
	not d.allow
}
