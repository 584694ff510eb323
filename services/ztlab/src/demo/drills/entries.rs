//! Drills on entry management: `entry-lifecycle` (an entry created through entry-manager, synced
//! to every SPIRE server, deleted, audited) and `site-outage` (a SPIRE server stopped: entry sync
//! retries, or the workloads keep their cached SVIDs). A stopped server is started again when
//! the drill ends; the run loop does it too if the drill is cut short.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::Value;
use zt_entry_api::client::Client;
use zt_entry_api::pb;
use zt_runtime::wait::{self, poll_until};
use zt_scenarios::{Drill, OutageExpect};

use super::app::demo_outcome;
use super::{Live, millis, step_check};
use crate::demo::event::{Check, Sink};
use crate::demo::http;
use crate::demo::target::Target;

/// A throwaway entry for every site of the lab.
fn demo_entry(target: &dyn Target, tag: &str) -> anyhow::Result<pb::EntrySpec> {
    let sites = target.sites();
    let first = sites.first().context("the lab has no sites")?;
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    let path = format!("/demo/{tag}-{stamp}");
    Ok(pb::EntrySpec {
        spiffe_id: format!("spiffe://{}{path}", target.trust_domain()),
        parent_id: target.node_alias(first)?,
        selectors: vec![
            pb::Selector { r#type: "unix".into(), value: "uid:4242".into() },
            pb::Selector { r#type: "unix".into(), value: format!("path:/opt/ztlab-demo{path}") },
        ],
        x509_svid_ttl: 120,
        jwt_svid_ttl: 60,
        dns_names: Vec::new(),
        admin: false,
        downstream: false,
        hint: "demo".into(),
        site_ids: sites,
    })
}

fn is_state(e: &pb::Entry, site: &str, state: pb::SyncState) -> bool {
    e.site_status.iter().any(|s| s.site_id == site && s.state == state as i32)
}

fn all_synced(e: &pb::Entry) -> bool {
    !e.site_status.is_empty() && e.site_status.iter().all(|s| s.state == pb::SyncState::Synced as i32)
}

/// `a=SYNCED  b=FAILED (attempts 2, next retry 10:00:03Z: …)`.
fn site_states(e: &pb::Entry) -> String {
    let mut parts = Vec::new();
    for s in &e.site_status {
        let mut t = format!("{}={}", s.site_id, zt_entry_api::json::state(s.state));
        if s.state == pb::SyncState::Failed as i32 {
            let next = zt_entry_api::json::time(&s.next_retry_at);
            let err: String = s.last_error.chars().take(80).collect();
            t.push_str(&format!(" (attempts {}, next retry {}: {err})", s.attempts, next.as_str().unwrap_or("-")));
        }
        parts.push(t);
    }
    parts.join("  ")
}

async fn create_entry(client: &Client, spec: &pb::EntrySpec) -> anyhow::Result<pb::Entry> {
    Ok(client
        .entries()
        .create_entry(pb::CreateEntryRequest { entry: Some(spec.clone()) })
        .await
        .map_err(|s| anyhow::anyhow!("create entry: {:?}: {}", s.code(), s.message()))?
        .into_inner())
}

/// Polls entry `id` until `done`, saying each change of its per-site states: the entry, and
/// whether `done` held before `timeout`.
async fn watch_entry(
    client: &Client,
    id: &str,
    timeout: Duration,
    live: &mut Live<'_>,
    done: impl Fn(&pb::Entry) -> bool,
) -> anyhow::Result<(pb::Entry, bool)> {
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let e = client
            .entries()
            .get_entry(pb::GetEntryRequest { id: id.to_owned() })
            .await
            .map_err(|s| anyhow::anyhow!("get entry {id}: {:?}: {}", s.code(), s.message()))?
            .into_inner();
        let now = site_states(&e);
        if now != last {
            live.say(format!("{:>5.1} s  {now}", start.elapsed().as_secs_f64()));
            last = now;
        }
        if done(&e) {
            return Ok((e, true));
        }
        if start.elapsed() >= timeout {
            return Ok((e, false));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Deletes entry `id` and waits until entry-manager has removed it from every site.
async fn delete_entry(client: &Client, id: &str, timeout: Duration) -> anyhow::Result<bool> {
    client
        .entries()
        .delete_entry(pb::DeleteEntryRequest { id: id.to_owned() })
        .await
        .map_err(|s| anyhow::anyhow!("delete entry {id}: {:?}: {}", s.code(), s.message()))?;
    Ok(crate::api::wait_deleted(client, id, timeout).await)
}

/// `entry-lifecycle`: create, SYNCED at every site and present on every SPIRE server, delete,
/// gone from every server, and both in the audit trail. The entry is never left behind.
pub async fn entry_lifecycle_step(target: &dyn Target, n: u32, st: &Drill, sink: &Sink) -> anyhow::Result<Check> {
    let mut check = step_check(n, st, "SYNCED everywhere, on every SPIRE server, then gone, audited");
    let client = target.entry_client()?;
    let spec = demo_entry(target, "entry")?;
    let sites = spec.site_ids.clone();
    let start = Instant::now();
    let id = create_entry(&client, &spec).await?.id;
    let mut live = Live::new(sink);
    let result = lifecycle(target, &client, &id, &spec, &mut live).await;
    if !matches!(result, Ok(ref r) if r.is_empty())
        && client.entries().get_entry(pb::GetEntryRequest { id: id.clone() }).await.is_ok()
    {
        let _ = delete_entry(&client, &id, Duration::from_secs(30)).await;
    }
    let problem = result?;
    check.details = live.lines;
    check.passed = problem.is_empty();
    check.observed = if check.passed { "synced, shown, deleted, audited".into() } else { problem };
    check.reason = format!("entry {id}, {} site(s)", sites.len());
    check.took_ms = millis(start);
    Ok(check)
}

/// The lifecycle of entry `id`, created from `spec`: what went wrong, or nothing.
async fn lifecycle(
    target: &dyn Target,
    client: &Client,
    id: &str,
    spec: &pb::EntrySpec,
    live: &mut Live<'_>,
) -> anyhow::Result<String> {
    let sites = &spec.site_ids;
    live.say(format!("created {id} for {} on sites {} (the CLI's admin key)", spec.spiffe_id, sites.join(", ")));
    let (synced, ok) = watch_entry(client, id, Duration::from_secs(30), live, all_synced).await?;
    if !ok {
        return Ok(format!("not SYNCED everywhere within 30 s: {}", site_states(&synced)));
    }
    let mut on_spire = Vec::new();
    for s in &synced.site_status {
        let shown = target.spire_show_entry(&s.site_id, &s.spire_entry_id).await.unwrap_or_default();
        let found = shown.contains(&spec.spiffe_id);
        live.say(format!(
            "spire-server entry show -entryID {} (site {}): {}",
            s.spire_entry_id,
            s.site_id,
            if found { "present" } else { "MISSING" }
        ));
        for l in shown.lines().filter(|l| l.starts_with("SPIFFE ID") || l.starts_with("Parent ID")) {
            live.say(format!("    {}", l.trim()));
        }
        if found {
            on_spire.push((s.site_id.clone(), s.spire_entry_id.clone()));
        }
    }
    if on_spire.len() != sites.len() {
        return Ok(format!("on {} of {} SPIRE servers", on_spire.len(), sites.len()));
    }
    live.say(format!("deleting {id}"));
    if !delete_entry(client, id, Duration::from_secs(30)).await? {
        return Ok("still being deleted after 30 s".into());
    }
    let mut left = Vec::new();
    for (site, spire_id) in &on_spire {
        let gone = target.spire_show_entry(site, spire_id).await.is_err();
        live.say(format!("site {site}: SPIRE entry {spire_id} {}", if gone { "gone" } else { "STILL THERE" }));
        if !gone {
            left.push(site.clone());
        }
    }
    if !left.is_empty() {
        return Ok(format!("still on the SPIRE server of {}", left.join(", ")));
    }
    let events = client
        .audit()
        .list_audit_events(pb::ListAuditEventsRequest {
            entry_id: id.to_owned(),
            actor: String::new(),
            since: None,
            until: None,
            page_size: 50,
            page_token: String::new(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("audit: {:?}: {}", s.code(), s.message()))?
        .into_inner()
        .events;
    for e in events.iter().rev() {
        let at = zt_entry_api::json::time(&e.at);
        live.say(format!("audit  {}  {}  {}  {}", at.as_str().unwrap_or("-"), e.actor, e.action, e.resource_id));
    }
    let has = |a: &str| events.iter().any(|e| e.action == a);
    if !(has("entry.create") && has("entry.delete")) {
        return Ok("the audit trail lacks entry.create or entry.delete".into());
    }
    Ok(String::new())
}

/// `site-outage`: stops `site`'s SPIRE server; with `expect = "cached"` Run Demo must stay green
/// on the SVIDs the agent cached, else an entry for every site must be FAILED with retries at
/// `site` and SYNCED once the server is back. The server is started again whatever happened.
/// `seconds`: with `cached`, how long Run Demo must stay green.
pub async fn site_outage_step(
    target: &dyn Target,
    n: u32,
    st: &Drill,
    (site, expect, seconds): (&str, OutageExpect, Option<u64>),
    sink: &Sink,
) -> anyhow::Result<Check> {
    let server = format!("spire-server-{site}");
    let cached = expect == OutageExpect::Cached;
    let mut check = step_check(
        n,
        st,
        if cached { "Run Demo green throughout, on cached SVIDs" } else { "FAILED with retries, then SYNCED" },
    );
    anyhow::ensure!(target.sites().iter().any(|s| s == site), "step {n}: site {site:?}: no such site in the lab");
    let start = Instant::now();
    let mut live = Live::new(sink);
    live.say(format!("stopping {server}"));
    target.stop_component(&server).await?;
    let down = !target.is_running(&server);
    live.say(format!("{server}: {}", if down { "down" } else { "STILL RUNNING" }));
    let result = if cached {
        outage_cached(target, seconds, &mut live).await.map(|r| (r, None))
    } else {
        outage_retries(target, site, &mut live).await
    };
    // Always bring back what was stopped.
    let restarted = Instant::now();
    let restart = target.restart_stopped().await;
    match &restart {
        Ok(()) => live.say(format!("restarted {server} in {:.1} s", restarted.elapsed().as_secs_f64())),
        Err(e) => live.say(format!("could not restart {server}: {e}")),
    }
    restart.with_context(|| format!("restarting {server}"))?;
    let ((mut passed, mut observed), entry) = result?;
    if let Some(id) = entry.filter(|_| passed) {
        // The retry after the restart syncs the entry; then it is deleted again.
        let (passed2, observed2) = outage_recovered(target, &id, &mut live).await?;
        passed = passed2;
        observed = format!("{observed}; {observed2}");
    }
    if cached && passed {
        let url = target.frontend_url("/api/run-demo");
        let green = poll_until(Duration::from_secs(30), Duration::from_millis(500), || async {
            let (_, text) = http::request("POST", &url, None, None).await;
            let report: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if report["ok"] == true { wait::Check::Done(()) } else { wait::Check::NotYet(()) }
        })
        .await;
        if green.is_ok() {
            live.say("after the restart: Run Demo ok");
        } else {
            passed = false;
            observed = format!("{observed}; Run Demo not green 30 s after the restart");
        }
    }
    check.details = live.lines;
    check.passed = passed && down;
    check.observed = observed;
    check.reason = if cached {
        format!("the SPIRE agent of site {site} kept serving the SVIDs it had cached while its server was down")
    } else {
        format!("entry-manager retried site {site} with backoff and synced it once its SPIRE server was back")
    };
    check.took_ms = millis(start);
    Ok(check)
}

/// With `site`'s SPIRE server down: an entry for every site is SYNCED elsewhere and FAILED with
/// retries at `site`. The outcome, and the entry (for [`outage_recovered`]).
async fn outage_retries(
    target: &dyn Target,
    site: &str,
    live: &mut Live<'_>,
) -> anyhow::Result<((bool, String), Option<String>)> {
    let client = target.entry_client()?;
    let spec = demo_entry(target, "outage")?;
    let e = create_entry(&client, &spec).await?;
    live.say(format!("created {} for {} on sites {}", e.id, spec.spiffe_id, spec.site_ids.join(", ")));
    let others: Vec<String> = spec.site_ids.iter().filter(|s| *s != site).cloned().collect();
    let (e, ok) = watch_entry(&client, &e.id, Duration::from_secs(30), live, |e| {
        others.iter().all(|o| is_state(e, o, pb::SyncState::Synced))
            && e.site_status.iter().any(|s| {
                s.site_id == site
                    && s.state == pb::SyncState::Failed as i32
                    && s.attempts >= 1
                    && s.next_retry_at.is_some()
            })
    })
    .await?;
    let outcome = if ok {
        let b = e.site_status.iter().find(|s| s.site_id == site);
        (true, format!("{site} FAILED with {} attempt(s) and a retry scheduled", b.map(|s| s.attempts).unwrap_or(0)))
    } else {
        (false, format!("not FAILED-with-retry within 30 s: {}", site_states(&e)))
    };
    Ok((outcome, Some(e.id)))
}

/// After the restart: the `retries` drill's entry `id` is SYNCED everywhere; then it is deleted.
async fn outage_recovered(target: &dyn Target, id: &str, live: &mut Live<'_>) -> anyhow::Result<(bool, String)> {
    let client = target.entry_client()?;
    let (e, ok) = watch_entry(&client, id, Duration::from_secs(60), live, all_synced).await?;
    let gone = delete_entry(&client, id, Duration::from_secs(30)).await?;
    live.say(format!("deleted {id}{}", if gone { "" } else { " (still being deleted)" }));
    Ok(if ok { (true, "SYNCED everywhere after the restart".into()) } else { (false, site_states(&e)) })
}

/// With the workloads' SPIRE server down: Run Demo every second for `seconds`.
async fn outage_cached(
    target: &dyn Target,
    seconds: Option<u64>,
    live: &mut Live<'_>,
) -> anyhow::Result<(bool, String)> {
    let window = Duration::from_secs(seconds.unwrap_or(5));
    let start = Instant::now();
    let (mut calls, mut failures) = (0u32, 0u32);
    while start.elapsed() < window {
        let (status, text) = http::request("POST", &target.frontend_url("/api/run-demo"), None, None).await;
        let report: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        calls += 1;
        let (got, why) = if report.is_null() { (format!("http {status}"), text) } else { demo_outcome(&report) };
        if got != "ok" {
            failures += 1;
        }
        let detail = if got == "ok" { String::new() } else { format!(" ({why})") };
        live.say(format!("{:>3} s  Run Demo {got}{detail}  (SPIRE server down)", start.elapsed().as_secs()));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok((failures == 0, format!("{} of {calls} Run Demo calls green with the SPIRE server down", calls - failures)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_states_show_failures_with_their_retry() {
        let e = pb::Entry {
            site_status: vec![
                pb::SiteStatus { site_id: "a".into(), state: pb::SyncState::Synced as i32, ..Default::default() },
                pb::SiteStatus {
                    site_id: "b".into(),
                    state: pb::SyncState::Failed as i32,
                    attempts: 2,
                    last_error: "SPIRE server unavailable".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert_eq!(site_states(&e), "a=SYNCED  b=FAILED (attempts 2, next retry -: SPIRE server unavailable)");
        assert!(!all_synced(&e) && is_state(&e, "b", pb::SyncState::Failed));
    }
}
