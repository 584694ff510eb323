# METADATA
# title: Document access with AI-agent delegation
# description: |
#   Who may read which document. Query `data.ztlab.documents.decision` with
#
#     {"caller_spiffe_id": "spiffe://<td>/…", "user": "alice" | null,
#      "agent": "gpt4" | null, "document": "DOC-001"}
#
#   and get {"allow": bool, "reason": string}.
#
#   The caller is the SPIFFE ID the document service authenticated over mTLS. It decides who
#   is asking:
#   - one of `data.ztlab.directory.direct_callers` (the frontend): the user reads directly;
#   - `spiffe://<td>/agent/<name>` for a known agent: that agent acts for the user.
#   The agent is derived from the caller's SPIFFE ID, never trusted from the input: `input.agent`
#   is optional, and when it is given it must name the same agent as the caller's ID.
#   `user` is the subject of a user token the document service has verified.
#
#   Rules: direct access iff the user has the document's department; delegated access iff both
#   the user and the agent have it; an agent without a user is denied; any other caller is
#   denied. Every decision carries a reason.
package ztlab.documents

dir := data.ztlab.directory

# The exact SPIFFE ID of a path in the lab's trust domain.
spiffe_id(path) := sprintf("spiffe://%s%s", [dir.trust_domain, path])

# The exact SPIFFE ID of agent `name`.
agent_id(name) := spiffe_id(sprintf("/agent/%s", [name]))

caller := input.caller_spiffe_id

# Conditions used under `not` are named rules: `not f(input.x)` with `input.x` undefined is
# undefined in OPA, while `not rule` is true when the rule is undefined.
has_caller if is_string(input.caller_spiffe_id)

has_document if is_string(input.document)

# The caller is a user-facing service: the user reads directly.
direct_caller if {
	some path in dir.direct_callers
	caller == spiffe_id(path)
}

# The agent the caller is, from its SPIFFE ID.
caller_agent := name if {
	some name, _ in dir.agents
	caller == agent_id(name)
}

# The verified user, if any (a null or empty user means none).
user := input.user if {
	is_string(input.user)
	input.user != ""
}

known_user if dir.users[user]

# The input names an agent (null or empty: it does not).
agent_claimed if {
	input.agent != null
	input.agent != ""
}

agent_claim_matches if input.agent == caller_agent

# The department the requested document requires.
required := dir.documents[input.document].department

user_has(department) if department in dir.users[user].departments

agent_has(department) if department in dir.agents[caller_agent].departments

deny(reason) := {"allow": false, "reason": reason}

grant(reason) := {"allow": true, "reason": reason}

default decision := {"allow": false, "reason": "denied by default"}

# The first matching branch decides; the order is the order of the reasons a caller sees.
decision := deny("no caller SPIFFE ID in the request") if {
	not has_caller
} else := deny("no document in the request") if {
	not has_document
} else := deny(sprintf("unknown document %s", [input.document])) if {
	not required
} else := deny(sprintf("caller %s may not read documents", [caller])) if {
	not direct_caller
	not caller_agent
} else := deny(sprintf("agent %v in the request does not match the caller %s", [input.agent, caller])) if {
	agent_claimed
	not agent_claim_matches
} else := deny(sprintf("agent without a user (%s)", [caller_agent])) if {
	caller_agent
	not user
} else := deny("no user in the request") if {
	not user
} else := deny(sprintf("unknown user %s", [user])) if {
	not known_user
} else := deny(sprintf("%s and %s lack %s", [user, caller_agent, required])) if {
	caller_agent
	not user_has(required)
	not agent_has(required)
} else := deny(sprintf("%s lacks %s", [user, required])) if {
	not user_has(required)
} else := deny(sprintf("%s lacks %s", [caller_agent, required])) if {
	caller_agent
	not agent_has(required)
} else := grant(sprintf("%s and %s have %s", [user, caller_agent, required])) if {
	caller_agent
} else := grant(sprintf("%s has %s", [user, required]))
