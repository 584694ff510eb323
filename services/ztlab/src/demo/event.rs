//! What a run reports, as public serde types: the [`Event`]s it sends to a [`Sink`] while it
//! runs, and the [`Report`] it returns (with `-o json`, the CLI's stdout).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One thing that happened during a run, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Another run holds the lab; this one waits for it to end (and to restore what it changed).
    Waiting {
        /// Who holds it, as that run recorded it.
        holder: String,
    },
    /// A scenario starts.
    Started {
        /// Its id.
        scenario: String,
        /// Its title.
        title: String,
    },
    /// A line of what the runner is doing or seeing (serials, states, rows).
    Progress {
        /// The line, without decoration.
        line: String,
    },
    /// The rotation drill's load so far: every 5 s, and whenever a certificate rotated.
    Load {
        /// Seconds since the drill started.
        secs: u64,
        /// Run Demo calls made.
        requests: u64,
        /// Of which failed.
        failures: u64,
        /// Rotations seen so far, per kind of certificate (short name, count).
        rotations: Vec<(String, usize)>,
    },
    /// A step or case ended.
    Check {
        /// Its outcome.
        check: Check,
        /// Its details were sent as [`Event::Progress`] as they happened.
        details_shown: bool,
    },
    /// The run put back what a scenario changed (or says it could not).
    Cleanup {
        /// What was done.
        line: String,
    },
    /// Something went wrong on the side (a clean-up that failed).
    Warning {
        /// What.
        message: String,
    },
    /// A scenario ended.
    Finished {
        /// Its outcome.
        run: ScenarioRun,
    },
}

/// Where a run sends its events: a callback (the CLI prints them; the UI keeps them for the page).
#[derive(Clone)]
pub struct Sink(Arc<dyn Fn(Event) + Send + Sync>);

impl Sink {
    /// A sink that calls `f` for every event, in order, on the runner's task.
    pub fn new(f: impl Fn(Event) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Sends `event`.
    pub fn send(&self, event: Event) {
        (self.0)(event);
    }

    /// Sends a progress line.
    pub fn progress(&self, line: impl Into<String>) {
        self.send(Event::Progress { line: line.into() });
    }
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sink")
    }
}

/// A step of a scenario or one of its cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    Step,
    Case,
}

/// The outcome of one step or case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub kind: CheckKind,
    /// The step's position (from 1) or the case's number.
    pub n: u32,
    /// What was done.
    pub label: String,
    /// What the catalogue expects.
    pub expected: String,
    /// What happened.
    pub observed: String,
    pub passed: bool,
    /// Why: the policy's reason, the failing hop's error, where a policy was installed.
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_spiffe_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub took_ms: Option<u64>,
    /// The hops of a Run Demo, with their evidence (the frontend's report).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub evidence: Value,
    /// What the step saw on the way (serials, states, rows), one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

impl Check {
    /// A check of `kind`, not passed yet.
    pub fn new(kind: CheckKind, n: u32, label: String, expected: String) -> Self {
        Check {
            kind,
            n,
            label,
            expected,
            observed: String::new(),
            passed: false,
            reason: String::new(),
            status: None,
            caller_spiffe_id: None,
            took_ms: None,
            evidence: Value::Null,
            details: Vec::new(),
        }
    }
}

/// The outcome of one scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioRun {
    pub id: String,
    pub title: String,
    pub passed: bool,
    pub checks: Vec<Check>,
    /// Set when the scenario changed the RBAC policy and `allow-frontend` was put back after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rbac_restored: Option<String>,
}

/// The outcome of a run: every scenario's (`ztlab demo run -o json` prints it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Every expectation held.
    pub passed: bool,
    pub scenarios: Vec<ScenarioRun>,
}
