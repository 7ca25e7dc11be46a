# Test policy for the keyvault's actions: operators may do everything, an
# agent may retrieve a key of provider P only with role key-reader:P, and
# only the sandbox-runner may read the fingerprint key.
package nodex.authz

import rego.v1

default allow := false

active if input.subject.status == "active"

allow if {
	active
	input.subject.kind == "operator"
}

allow if {
	active
	input.action == "retrieve"
	input.resource.type == "key"
	sprintf("key-reader:%s", [input.context.provider]) in input.subject.roles
}

allow if {
	active
	input.action == "fingerprint_key"
	"service:sandbox" in input.subject.roles
}

# An identity under an API_ABUSE rate restriction keeps access at a
# tightened rate, which the policy passes as a decision flag.
flags contains "rate_limit_per_minute:1" if input.subject.id == "agent-throttled"

decision := {
	"allow": allow,
	"reasons": [sprintf("test policy: allow=%v", [allow])],
	"flags": flags,
}
