# Tests for data.ztlab.documents.decision: issue 5's nine scenarios, then the edge cases.
# Run with `opa test policies/rego`.
package ztlab.documents_test

import data.ztlab.documents

frontend := "spiffe://ztlab.test/ns/demo/sa/frontend"

agent(name) := sprintf("spiffe://ztlab.test/agent/%s", [name])

# A user reading through the frontend.
direct(user, doc) := {"caller_spiffe_id": frontend, "user": user, "agent": null, "document": doc}

# Agent `name` acting for `user`.
delegated(user, name, doc) := {"caller_spiffe_id": agent(name), "user": user, "agent": name, "document": doc}

granted(reason) := {"allow": true, "reason": reason}

denied(reason) := {"allow": false, "reason": reason}

# The nine scenarios.

test_1_alice_reads_doc_001 if {
	documents.decision == granted("alice has engineering") with input as direct("alice", "DOC-001")
}

test_2_bob_denied_doc_001 if {
	documents.decision == denied("bob lacks engineering") with input as direct("bob", "DOC-001")
}

test_3_carol_denied_doc_002 if {
	documents.decision == denied("carol lacks finance") with input as direct("carol", "DOC-002")
}

test_4_alice_denied_doc_003 if {
	documents.decision == denied("alice lacks admin") with input as direct("alice", "DOC-003")
}

test_5_alice_via_gpt4_reads_doc_001 if {
	documents.decision == granted("alice and gpt4 have engineering") with input as delegated("alice", "gpt4", "DOC-001")
}

test_6_bob_via_claude_reads_doc_003 if {
	documents.decision == granted("bob and claude have admin") with input as delegated("bob", "claude", "DOC-003")
}

test_7_gpt4_without_user_denied if {
	documents.decision == denied("agent without a user (gpt4)") with input as delegated(null, "gpt4", "DOC-001")
}

test_8_alice_via_summarizer_denied_doc_001 if {
	documents.decision == denied("summarizer lacks engineering") with input as delegated("alice", "summarizer", "DOC-001")
}

test_9_bob_via_gpt4_denied_doc_003 if {
	documents.decision == denied("gpt4 lacks admin") with input as delegated("bob", "gpt4", "DOC-003")
}

# The rules over the whole directory: direct access iff the user has the department, delegated
# access iff both have it.

wrong_direct contains [u, d] if {
	some u, user in data.ztlab.directory.users
	some d, doc in data.ztlab.directory.documents
	want := doc.department in user.departments
	got := documents.decision.allow with input as direct(u, d)
	got != want
}

wrong_delegated contains [u, a, d] if {
	some u, user in data.ztlab.directory.users
	some a, ag in data.ztlab.directory.agents
	some d, doc in data.ztlab.directory.documents
	want := count({x | x := doc.department; x in user.departments; x in ag.departments}) == 1
	got := documents.decision.allow with input as delegated(u, a, d)
	got != want
}

test_direct_matrix if count(wrong_direct) == 0

test_delegated_matrix if count(wrong_delegated) == 0

test_agent_without_user_denied_for_every_agent_and_document if {
	every a, _ in data.ztlab.directory.agents {
		every d, _ in data.ztlab.directory.documents {
			not allowed_without_user(a, d)
		}
	}
}

allowed_without_user(a, d) if documents.decision.allow with input as delegated(null, a, d)

# Reasons.

test_both_lack if {
	documents.decision == denied("carol and summarizer lack admin") with input as delegated("carol", "summarizer", "DOC-003")
}

test_user_lacks_agent_has if {
	documents.decision == denied("carol lacks finance") with input as delegated("carol", "gpt4", "DOC-002")
}

# The agent comes from the caller's SPIFFE ID; `agent` in the input is optional.

test_agent_derived_from_caller if {
	req := {"caller_spiffe_id": agent("gpt4"), "user": "alice", "document": "DOC-001"}
	documents.decision == granted("alice and gpt4 have engineering") with input as req
}

test_agent_claim_must_match_caller if {
	req := object.union(delegated("bob", "gpt4", "DOC-003"), {"agent": "claude"})
	documents.decision == denied("agent claude in the request does not match the caller spiffe://ztlab.test/agent/gpt4") with input as req
}

test_direct_caller_cannot_claim_agent if {
	req := object.union(direct("bob", "DOC-003"), {"agent": "claude"})
	documents.decision == denied("agent claude in the request does not match the caller spiffe://ztlab.test/ns/demo/sa/frontend") with input as req
}

test_empty_agent_is_no_agent if {
	req := object.union(direct("alice", "DOC-001"), {"agent": ""})
	documents.decision == granted("alice has engineering") with input as req
}

# Any other caller is denied.

test_other_workload_denied if {
	req := object.union(direct("alice", "DOC-001"), {"caller_spiffe_id": "spiffe://ztlab.test/ns/demo/sa/backend"})
	documents.decision == denied("caller spiffe://ztlab.test/ns/demo/sa/backend may not read documents") with input as req
}

test_unknown_agent_denied if {
	documents.decision == denied("caller spiffe://ztlab.test/agent/evil may not read documents") with input as delegated("alice", "evil", "DOC-001")
}

test_agent_ids_match_exactly if {
	every id in [
		"spiffe://ztlab.test/agent/gpt4x",
		"spiffe://ztlab.test/agent/gpt4/extra",
		"spiffe://ztlab.test/agents/gpt4",
		"spiffe://other.test/agent/gpt4",
		"spiffe://ztlab.test/ns/demo/sa/frontend/x",
	] {
		not documents.decision.allow with input as {"caller_spiffe_id": id, "user": "alice", "document": "DOC-001"}
	}
}

test_trust_domain_comes_from_data if {
	documents.decision.allow with input as {"caller_spiffe_id": "spiffe://lab.example/ns/demo/sa/frontend", "user": "alice", "document": "DOC-001"}
		with data.ztlab.directory.trust_domain as "lab.example"
	not documents.decision.allow with input as direct("alice", "DOC-001")
		with data.ztlab.directory.trust_domain as "lab.example"
}

# Incomplete or unknown input.

test_direct_without_user_denied if {
	documents.decision == denied("no user in the request") with input as direct(null, "DOC-001")
}

test_empty_user_is_no_user if {
	documents.decision == denied("no user in the request") with input as direct("", "DOC-001")
	documents.decision == denied("agent without a user (claude)") with input as delegated("", "claude", "DOC-001")
}

test_missing_user_is_no_user if {
	documents.decision == denied("agent without a user (gpt4)") with input as {"caller_spiffe_id": agent("gpt4"), "document": "DOC-001"}
}

test_unknown_user_denied if {
	documents.decision == denied("unknown user mallory") with input as direct("mallory", "DOC-001")
	documents.decision == denied("unknown user mallory") with input as delegated("mallory", "claude", "DOC-001")
}

test_unknown_document_denied if {
	documents.decision == denied("unknown document DOC-999") with input as direct("alice", "DOC-999")
}

test_missing_document_denied if {
	documents.decision == denied("no document in the request") with input as {"caller_spiffe_id": frontend, "user": "alice"}
}

test_missing_caller_denied if {
	documents.decision == denied("no caller SPIFFE ID in the request") with input as {"user": "alice", "document": "DOC-001"}
	documents.decision == denied("no caller SPIFFE ID in the request") with input as {}
}

test_no_input_denied if {
	documents.decision == denied("no caller SPIFFE ID in the request")
}

test_every_decision_has_allow_and_reason if {
	every req in [direct("alice", "DOC-001"), direct("x", "y"), delegated(null, "gpt4", "DOC-003"), {}, {"user": 5}] {
		d := documents.decision with input as req
		is_boolean(d.allow)
		is_string(d.reason)
		d.reason != ""
	}
}
