//! Issue 5's nine document-access scenarios as data, with the decision input each one sends
//! and the decision the policy must give. Shared by the tests (in-process, conformance against
//! a real `opa`, end to end) and the benchmark.

use serde_json::{Value, json};

/// The Data API path of the document decision.
pub const DECISION_PATH: &str = "ztlab/documents/decision";

/// One scenario: a user (directly, or through an agent) asks for a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scenario {
    /// Its number in the table.
    pub number: u8,
    /// The user, if any.
    pub user: Option<&'static str>,
    /// The agent acting for the user, if any.
    pub agent: Option<&'static str>,
    /// The document.
    pub document: &'static str,
    /// Whether access is granted.
    pub allow: bool,
    /// The policy's reason.
    pub reason: &'static str,
}

const fn s(
    number: u8,
    user: Option<&'static str>,
    agent: Option<&'static str>,
    document: &'static str,
    allow: bool,
    reason: &'static str,
) -> Scenario {
    Scenario { number, user, agent, document, allow, reason }
}

/// The nine scenarios.
pub const NINE: [Scenario; 9] = [
    s(1, Some("alice"), None, "DOC-001", true, "alice has engineering"),
    s(2, Some("bob"), None, "DOC-001", false, "bob lacks engineering"),
    s(3, Some("carol"), None, "DOC-002", false, "carol lacks finance"),
    s(4, Some("alice"), None, "DOC-003", false, "alice lacks admin"),
    s(5, Some("alice"), Some("gpt4"), "DOC-001", true, "alice and gpt4 have engineering"),
    s(6, Some("bob"), Some("claude"), "DOC-003", true, "bob and claude have admin"),
    s(7, None, Some("gpt4"), "DOC-001", false, "agent without a user (gpt4)"),
    s(8, Some("alice"), Some("summarizer"), "DOC-001", false, "summarizer lacks engineering"),
    s(9, Some("bob"), Some("gpt4"), "DOC-003", false, "gpt4 lacks admin"),
];

/// The caller's SPIFFE ID in trust domain `td`: the agent's when an agent acts, else the
/// frontend's (a user reading directly).
pub fn caller_id(td: &str, agent: Option<&str>) -> String {
    match agent {
        Some(a) => format!("spiffe://{td}/agent/{a}"),
        None => format!("spiffe://{td}/ns/demo/sa/frontend"),
    }
}

impl Scenario {
    /// `Alice → GPT-4 → DOC-001`.
    pub fn title(&self) -> String {
        let mut parts: Vec<&str> = self.user.into_iter().chain(self.agent).collect();
        parts.push(self.document);
        format!("#{} {}", self.number, parts.join(" → "))
    }

    /// The decision input the document service sends for it in trust domain `td`.
    pub fn input(&self, td: &str) -> Value {
        json!({
            "caller_spiffe_id": caller_id(td, self.agent),
            "user": self.user,
            "agent": self.agent,
            "document": self.document,
        })
    }

    /// The decision the policy must give.
    pub fn expected(&self) -> Value {
        json!({"allow": self.allow, "reason": self.reason})
    }
}
