//! The runners of a scenario's steps and cases, one module per group. Each gets the lab through
//! [`Target`] only, sends what it sees to the [`Sink`] as it goes, and returns its [`Check`].
//!
//! - [`app`]: `rbac`, `run-demo`, `github`, and the delegation cases.
//! - [`watch`]: `rotation`, `openbao-lease`, `revoke-lease`: certificates and credentials
//!   watched under load.
//! - [`entries`]: `entry-lifecycle`, `site-outage`: entries through entry-manager, SPIRE
//!   servers stopped.
//! - [`network`]: `network-policy`: the Cilium policies' matrix.

mod app;
mod entries;
mod network;
mod watch;

use std::time::{Duration, Instant};

use anyhow::bail;
use zt_scenarios::{Case, Decision, Drill, OutageExpect};

pub use app::rbac_load_text;

use super::event::{Check, CheckKind, Sink};
use super::target::Target;

/// How long a policy swap may take to show: a `run-demo` step waits this long for its expected
/// outcome, and an installed RBAC policy must be loaded by then.
pub const SWAP_WAIT: Duration = Duration::from_secs(2);

/// Runs step `n`, `st`: its check, and whether its details were sent as progress as they were
/// seen (else they are shown with the check).
pub async fn step(target: &dyn Target, n: u32, st: &Drill, sink: &Sink) -> anyhow::Result<(Check, bool)> {
    Ok(match st {
        Drill::Rbac { mode } => (app::rbac_step(target, n, st, *mode).await?, false),
        Drill::RunDemo { expect } => (app::run_demo_step(target, n, st, expect).await?, false),
        Drill::Github { user, .. } => (app::github_step(target, n, st, user).await?, false),
        Drill::Rotation { .. } => (watch::rotation_step(target, n, st, sink).await?, false),
        Drill::OpenbaoLease { .. } => (watch::openbao_lease_step(target, n, st, sink).await?, true),
        Drill::RevokeLease { .. } => (watch::revoke_lease_step(target, n, st, sink).await?, true),
        Drill::EntryLifecycle => (entries::entry_lifecycle_step(target, n, st, sink).await?, true),
        Drill::SiteOutage { site, expect, seconds } => {
            (entries::site_outage_step(target, n, st, (site, *expect, *seconds), sink).await?, true)
        }
        Drill::NetworkPolicy { .. } => (network::network_policy_step(n, st, sink).await?, true),
        other => bail!("step {n}: no runner for {:?}", other.action()),
    })
}

/// Runs case `c`.
pub async fn case(target: &dyn Target, c: &Case) -> anyhow::Result<Check> {
    app::case(target, c).await
}

/// What a step does, in words (`ztlab demo show`, and each check's label).
pub fn step_label(st: &Drill) -> String {
    match st {
        Drill::Rbac { mode } => format!("rbac {mode}"),
        Drill::RunDemo { expect } => format!("run-demo, expect {expect}"),
        Drill::Rotation { seconds } => format!("rotation, watch for {seconds} s"),
        Drill::OpenbaoLease { seconds } => format!("openbao-lease, rotation within {seconds} s"),
        Drill::Github { user, .. } => format!("github as {user}, expect fixture"),
        Drill::EntryLifecycle => "entry-lifecycle: create, sync to every site, delete, audit".to_owned(),
        Drill::SiteOutage { site, expect: OutageExpect::Cached, seconds } => format!(
            "site-outage: stop spire-server-{site}, Run Demo green for {} s on cached SVIDs",
            seconds.unwrap_or(0)
        ),
        Drill::SiteOutage { site, .. } => format!("site-outage: stop spire-server-{site}, entry sync retries"),
        Drill::RevokeLease { seconds } => {
            format!("revoke-lease: revoke the backend's database lease, green again within {seconds} s")
        }
        Drill::NetworkPolicy { .. } => "network-policy, expect pass".to_owned(),
        other => format!("{:?}", other.action()),
    }
}

/// What a case expects, in words: `denied (gpt4 lacks admin)`.
pub fn case_expectation(c: &Case) -> String {
    match (&c.expect, &c.because) {
        (d, Some(b)) => format!("{} ({b})", decision_word(*d)),
        (d, None) => decision_word(*d).to_owned(),
    }
}

fn decision_word(d: Decision) -> &'static str {
    match d {
        Decision::Granted => "granted",
        Decision::Denied => "denied",
    }
}

/// A step's check, not passed yet.
fn step_check(n: u32, st: &Drill, expected: impl Into<String>) -> Check {
    Check::new(CheckKind::Step, n, step_label(st), expected.into())
}

fn millis(since: Instant) -> Option<u64> {
    Some(u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX))
}

/// A drill's live lines: each is sent as progress and kept for the check's details.
#[derive(Debug)]
struct Live<'a> {
    sink: &'a Sink,
    lines: Vec<String>,
}

impl<'a> Live<'a> {
    fn new(sink: &'a Sink) -> Self {
        Self { sink, lines: Vec::new() }
    }

    fn say(&mut self, line: impl Into<String>) {
        let line = line.into();
        self.sink.progress(line.clone());
        self.lines.push(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_labelled_with_their_parameters() {
        let c = zt_scenarios::Catalogue::builtin().expect("builtin");
        let s = c.get("failure-drills").expect("failure-drills");
        assert_eq!(step_label(&s.drills().expect("drills")[0]), "site-outage: stop spire-server-b, entry sync retries");
    }
}
