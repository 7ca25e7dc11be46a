package nodex.authz_test

import data.nodex.authz

noon := "2026-03-04T12:00:00Z"

req(subject, action, resource) := {
	"subject": object.union(
		{"id": "id-1", "kind": "agent", "roles": [], "status": "active", "attributes": {}},
		subject,
	),
	"action": action,
	"resource": object.union({"type": "", "id": "", "labels": {}}, resource),
	"context": {"time": noon, "trace_id": "", "findings": [], "purpose": "", "provider": "", "attributes": {}},
}

with_context(r, ctx) := object.union(r, {"context": object.union(r.context, ctx)})

agent := {"kind": "agent", "roles": ["agent"]}

operator := {"kind": "operator", "roles": ["operator"]}

test_agent_may_submit_code if {
	d := authz.decision with input as req(agent, "submit", {"type": "code"})
	d.allow
	d.reasons == [`role "agent" grants "submit" on "code"`]
}

test_agent_may_not_retrieve_keys if {
	d := authz.decision with input as req(agent, "retrieve", {"type": "key", "id": "openai"})
	not d.allow
	d.reasons == [`no role grants "retrieve" on "key"`]
}

test_operator_wildcard_covers_rotate_kek if {
	d := authz.decision with input as req(operator, "rotate_kek", {"type": "key"})
	d.allow
}

test_suspended_identity_denied if {
	s := object.union(operator, {"status": "suspended"})
	d := authz.decision with input as req(s, "list", {"type": "key"})
	not d.allow
	d.reasons == [`identity "id-1" has status "suspended"; only active identities are allowed`]
}

test_empty_status_denied if {
	s := object.union(operator, {"status": ""})
	d := authz.decision with input as req(s, "list", {"type": "key"})
	not d.allow
}

test_no_roles_denied if {
	d := authz.decision with input as req({"roles": []}, "submit", {"type": "code"})
	not d.allow
	"subject has no roles" in d.reasons
}

test_unknown_role_denied if {
	s := {"kind": "agent", "roles": ["agent", "root"]}
	d := authz.decision with input as req(s, "submit", {"type": "code"})
	not d.allow
	d.reasons == [`unknown role "root"`]
}

test_role_case_differs_denied if {
	s := {"kind": "operator", "roles": ["Operator"]}
	d := authz.decision with input as req(s, "list", {"type": "key"})
	not d.allow
	`unknown role "Operator" (role names are case-sensitive; "operator" exists)` in d.reasons
}

test_service_role_useless_to_agent if {
	s := {"kind": "agent", "roles": ["service:incident"]}
	d := authz.decision with input as req(s, "suspend", {"type": "identity", "id": "x"})
	not d.allow
	`role "service:incident" is not valid for subject kind "agent"` in d.reasons
}

test_service_roles_hold_no_other_rights if {
	s := {"kind": "service", "roles": ["service:codesec"]}
	d := authz.decision with input as req(s, "retrieve", {"type": "key", "id": "openai"})
	not d.allow
}

test_incident_may_contain if {
	s := {"kind": "service", "roles": ["service:incident"]}
	calls := [
		["identity", "suspend"],
		["bundle", "revoke"],
		["sandbox", "kill"],
		["key", "rotate"],
		["key", "disable"],
	]
	every call in calls {
		d := authz.decision with input as req(s, call[1], {"type": call[0], "id": "x"})
		d.allow
	}
}

test_sandbox_may_get_bundles_only if {
	s := {"kind": "service", "roles": ["service:sandbox"]}
	allowed := authz.decision with input as req(s, "get", {"type": "bundle", "id": "b1"})
	allowed.allow
	denied := authz.decision with input as req(s, "revoke", {"type": "bundle", "id": "b1"})
	not denied.allow
}

test_key_reader_reads_own_provider if {
	s := {"kind": "agent", "roles": ["agent", "key-reader:openai"]}
	r := with_context(req(s, "retrieve", {"type": "key", "id": "openai-main"}), {"provider": "openai"})
	d := authz.decision with input as r
	d.allow
}

test_key_reader_other_provider_denied if {
	s := {"kind": "agent", "roles": ["key-reader:openai"]}
	r := with_context(req(s, "retrieve", {"type": "key", "id": "claude"}), {"provider": "anthropic"})
	d := authz.decision with input as r
	not d.allow
}

test_key_reader_cannot_rotate if {
	s := {"kind": "agent", "roles": ["key-reader:openai"]}
	r := with_context(req(s, "rotate", {"type": "key", "id": "openai-main"}), {"provider": "openai"})
	d := authz.decision with input as r
	not d.allow
}

test_key_reader_bad_provider_unknown if {
	s := {"kind": "agent", "roles": ["key-reader:Open AI"]}
	d := authz.decision with input as req(s, "retrieve", {"type": "key", "id": "k"})
	not d.allow
	`unknown role "key-reader:Open AI"` in d.reasons
}

test_prod_key_needs_prod_role if {
	s := {"kind": "agent", "roles": ["key-reader:openai"]}
	res := {"type": "key", "id": "openai-prod", "labels": {"env": "prod"}}
	d := authz.decision with input as with_context(req(s, "retrieve", res), {"provider": "openai"})
	not d.allow
	d.reasons == ["resource is labelled env=prod and no granting role is allowed on prod"]
}

test_prod_key_explicit_prod_reader if {
	s := {"kind": "agent", "roles": ["key-reader:openai"]}
	res := {"type": "key", "id": "openai-prod", "labels": {"env": "prod"}}
	r := with_context(req(s, "retrieve", res), {"provider": "openai"})
	d := authz.decision with input as r with data.nodex.rbac.roles["key-reader:openai"] as {"prod": true}
	d.allow
}

test_operator_prod_allowed if {
	res := {"type": "key", "id": "openai-prod", "labels": {"env": "prod"}}
	d := authz.decision with input as req(operator, "rotate", res)
	d.allow
}

test_critical_finding_denies_exec if {
	r := with_context(req(agent, "exec", {"type": "sandbox", "id": "b1"}), {"findings": [
		{"rule_id": "py.eval", "severity": "critical", "line": 3},
		{"rule_id": "py.socket", "severity": "low", "line": 9},
	]})
	d := authz.decision with input as r
	not d.allow
	d.reasons == ["code has 1 critical findings"]
}

test_high_finding_flags_submit if {
	r := with_context(req(agent, "submit", {"type": "code"}), {"findings": [
		{"rule_id": "py.subprocess", "severity": "high", "line": 1},
	]})
	d := authz.decision with input as r
	d.allow
	d.flags == ["findings_high"]
}

windowed_roles := {"night-ops": {
	"kinds": ["operator"],
	"permissions": [{
		"resource": "incident",
		"actions": ["contain"],
		"window": {"start_hour": 22, "end_hour": 24, "days": ["Wednesday"]},
	}],
}}

test_time_window_inside if {
	s := {"kind": "operator", "roles": ["night-ops"]}
	r := with_context(req(s, "contain", {"type": "incident", "id": "i1"}), {"time": "2026-03-04T23:30:00Z"})
	d := authz.decision with input as r with data.nodex.rbac.roles as windowed_roles
	d.allow
}

test_time_window_outside if {
	s := {"kind": "operator", "roles": ["night-ops"]}
	r := req(s, "contain", {"type": "incident", "id": "i1"})
	d := authz.decision with input as r with data.nodex.rbac.roles as windowed_roles
	not d.allow
	d.reasons == [`no role grants "contain" on "incident" at 2026-03-04T12:00:00Z`]
}

test_time_window_wrong_day if {
	s := {"kind": "operator", "roles": ["night-ops"]}
	r := with_context(req(s, "contain", {"type": "incident", "id": "i1"}), {"time": "2026-03-05T23:30:00Z"})
	d := authz.decision with input as r with data.nodex.rbac.roles as windowed_roles
	not d.allow
}

test_binding_adds_role if {
	s := {"id": "agent-7", "kind": "agent", "roles": []}
	d := authz.decision with input as req(s, "submit", {"type": "code"})
		with data.nodex.rbac.bindings as {"agent-7": ["agent"]}
	d.allow
}

test_no_rbac_data_denies if {
	d := authz.decision with input as req(operator, "list", {"type": "key"}) with data.nodex.rbac as {}
	not d.allow
}

test_agent_runs_own_bundle if {
	r := req(agent, "exec", {"type": "sandbox", "id": "b1", "labels": {"author": "id-1"}})
	d := authz.decision with input as r
	d.allow
}

test_agent_cannot_run_others_bundle if {
	r := req(agent, "exec", {"type": "sandbox", "id": "b1", "labels": {"author": "agent-2"}})
	d := authz.decision with input as r
	not d.allow
	d.reasons == ["agents may run only bundles they authored"]
}
