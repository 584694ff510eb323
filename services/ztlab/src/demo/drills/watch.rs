//! Drills that watch certificates and credentials change under load: `rotation` (every kind of
//! SVID replaced while Run Demo is pressed), `openbao-lease` (the backend's database lease
//! counting down and rotated) and `revoke-lease` (a revoked lease recovered at once).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::Value;
use zt_scenarios::Drill;

use super::app::demo_outcome;
use super::{Live, millis, step_check};
use crate::demo::event::{Check, Event, Sink};
use crate::demo::http;
use crate::demo::target::{Envoy, Helper, Target};

/// One kind of certificate whose serials are watched.
#[derive(Debug)]
struct Watched {
    name: &'static str,
    initial: usize,
    seen: BTreeSet<String>,
}

impl Watched {
    fn rotations(&self) -> usize {
        self.seen.len().saturating_sub(self.initial)
    }
}

/// The kinds of certificates the rotation drill watches, in order.
const WATCHED: [&str; 5] =
    ["envoy-frontend (SDS)", "envoy-backend (SDS)", "helper-backend", "helper-postgres", "opa (native)"];

/// The serials of watched kind `i` now.
async fn sample(target: &dyn Target, i: usize) -> Vec<String> {
    match i {
        0 => target.envoy_serials(Envoy::Frontend).await,
        1 => target.envoy_serials(Envoy::Backend).await,
        2 => target.helper_serial(Helper::Backend).into_iter().collect(),
        3 => target.helper_serial(Helper::Postgres).into_iter().collect(),
        _ => {
            let (_, h) = http::get_json(&target.opa_healthz_url()).await;
            h["svid_serial"].as_str().map(zt_runtime::app::normalize_serial).into_iter().collect()
        }
    }
}

/// `rotation`: Run Demo pressed continuously for `seconds` while every kind of certificate is
/// sampled each second; passes with no failed request and at least one rotation of each kind.
pub async fn rotation_step(target: &dyn Target, n: u32, st: &Drill, sink: &Sink) -> anyhow::Result<Check> {
    let seconds = st.seconds().unwrap_or_default();
    let window = Duration::from_secs(seconds);
    let mut check = step_check(n, st, "0 failures, ≥1 rotation of each kind");
    let mut watched = Vec::new();
    for (i, name) in WATCHED.into_iter().enumerate() {
        let seen: BTreeSet<String> = sample(target, i).await.into_iter().collect();
        if seen.is_empty() {
            bail!("step {n}: no certificate serial for {name} (is the lab up?)");
        }
        check
            .details
            .push(format!("{name:<22} serial at start: {}", seen.iter().cloned().collect::<Vec<_>>().join(", ")));
        watched.push(Watched { name, initial: seen.len(), seen });
    }
    let url = target.frontend_url("/api/run-demo");
    let (mut requests, mut failures, mut first_failure) = (0u64, 0u64, None::<String>);
    let start = Instant::now();
    let mut next_sample = Instant::now() + Duration::from_secs(1);
    let mut next_print = Instant::now();
    let mut printed_rotations = 0;
    while start.elapsed() < window {
        let (status, text) = http::request("POST", &url, None, None).await;
        requests += 1;
        let report: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if report["ok"] != true {
            failures += 1;
            if first_failure.is_none() {
                let (got, why) = demo_outcome(&report);
                first_failure =
                    Some(if report.is_null() { format!("http {status}: {text}") } else { format!("{got}: {why}") });
            }
        }
        if Instant::now() >= next_sample {
            for (i, w) in watched.iter_mut().enumerate() {
                w.seen.extend(sample(target, i).await);
            }
            next_sample = Instant::now() + Duration::from_secs(1);
        }
        let total: usize = watched.iter().map(Watched::rotations).sum();
        if Instant::now() >= next_print || total != printed_rotations {
            let rotations = watched
                .iter()
                .map(|w| (w.name.split(' ').next().unwrap_or(w.name).to_owned(), w.rotations()))
                .collect();
            sink.send(Event::Load { secs: start.elapsed().as_secs(), requests, failures, rotations });
            printed_rotations = total;
            next_print = Instant::now() + Duration::from_secs(5);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for w in &watched {
        check.details.push(format!("{:<22} {} rotation(s), serials seen: {}", w.name, w.rotations(), w.seen.len()));
    }
    let all_rotated = watched.iter().all(|w| w.rotations() >= 1);
    check.passed = failures == 0 && all_rotated;
    let min = watched.iter().map(Watched::rotations).min().unwrap_or(0);
    check.observed = format!("{failures} failures in {requests} requests, ≥{min} rotation of each kind");
    check.reason = match (&first_failure, all_rotated) {
        (Some(f), _) => format!("first failure: {f}"),
        (None, true) => "every certificate was replaced under load, and no request failed".into(),
        (None, false) => format!(
            "the lab's X.509-SVID TTL is {} s and SPIRE rotates at about half of it; a {} s window needs a lab \
             with x509_svid_ttl_secs ≤ {}",
            target.x509_svid_ttl_secs(),
            window.as_secs(),
            window.as_secs()
        ),
    };
    check.took_ms = millis(start);
    Ok(check)
}

/// `openbao-lease`: the backend's lease read every 2 s until the backend rotates it (the TTL
/// must be seen counting down first); then the old role must be gone from PostgreSQL.
pub async fn openbao_lease_step(target: &dyn Target, n: u32, st: &Drill, sink: &Sink) -> anyhow::Result<Check> {
    let seconds = st.seconds().unwrap_or_default();
    let wait = Duration::from_secs(seconds);
    let mut check = step_check(n, st, "TTL counting down, a new user, the old role gone");
    let url = target.backend_lease_url();
    let read = || async {
        let (status, v) = http::get_json(&url).await;
        if status != 200 || v["db_user"].as_str().is_none() {
            bail!("the backend's lease at {url}: {status} {v}");
        }
        Ok(v)
    };
    let line = |v: &Value, t: Instant| {
        format!(
            "{:>3} s  user {}  ttl_left {} s of {} s  lease {}  rotations {}",
            t.elapsed().as_secs(),
            v["db_user"].as_str().unwrap_or("?"),
            v["ttl_left_secs"],
            v["lease_duration_secs"],
            v["lease_id"].as_str().unwrap_or("?"),
            v["rotations"]
        )
    };
    let start = Instant::now();
    let first = read().await?;
    let mut old_user = first["db_user"].as_str().unwrap_or_default().to_owned();
    let mut live = Live::new(sink);
    live.say("the backend logged in to OpenBao with its JWT-SVID (role backend, audience openbao):");
    live.say(line(&first, start));
    let (mut countdown, mut last) = (false, first.clone());
    let rotated = loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let v = read().await?;
        let user = v["db_user"].as_str().unwrap_or_default();
        if user == old_user
            && let (Some(a), Some(b)) = (last["ttl_left_secs"].as_u64(), v["ttl_left_secs"].as_u64())
            && b < a
        {
            countdown = true;
        }
        live.say(line(&v, start));
        if user != old_user && !countdown {
            // Rotated before a countdown was seen: watch the new user's lease instead.
            live.say("(rotated before the countdown showed; watching the new user's lease)");
            old_user = user.to_owned();
        } else if user != old_user {
            break Some(v);
        }
        if start.elapsed() >= wait {
            break None;
        }
        last = v;
    };
    let Some(new) = rotated else {
        check.details = live.lines;
        check.observed = format!("no rotation within {} s", wait.as_secs());
        check.reason = format!(
            "the lab's database credentials live {} s and rotate at a fraction of that (db_rotate_at); use a \
             lab with db_ttl_secs ≤ {} for this window",
            target.db_ttl_secs(),
            wait.as_secs()
        );
        check.took_ms = millis(start);
        return Ok(check);
    };
    let new_user = new["db_user"].as_str().unwrap_or_default().to_owned();
    // OpenBao drops the old role when the backend revokes the old lease, right after rotating.
    let (gone, shown) = role_gone(target, &old_user, Duration::from_secs(15)).await?;
    live.say(shown);
    check.details = live.lines;
    check.passed = countdown && gone;
    check.observed = format!("{} → {new_user}, old role {}", old_user, if gone { "gone" } else { "still there" });
    check.reason = if countdown {
        "the TTL counted down; the backend rotated before expiry and revoked the old lease".into()
    } else {
        "the TTL was not seen counting down".into()
    };
    check.took_ms = millis(start);
    Ok(check)
}

/// Whether PostgreSQL role `user` is gone from the app's PostgreSQL (waiting up to `wait` for
/// it to go), and the psql line that shows it.
async fn role_gone(target: &dyn Target, user: &str, wait: Duration) -> anyhow::Result<(bool, String)> {
    let safe = !user.is_empty() && user.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    anyhow::ensure!(safe, "unexpected database user name {user:?}");
    let sql = format!("SELECT count(*) FROM pg_roles WHERE rolname = '{user}'");
    let deadline = Instant::now() + wait;
    let left = loop {
        let left = target.psql_app(&sql).await?.trim().to_owned();
        if left == "0" || Instant::now() >= deadline {
            break left;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    Ok((left == "0", format!("psql: {sql} → {left}")))
}

/// `revoke-lease`: the backend's current lease is revoked with the lab's lease-revoker token
/// (it may revoke the backend's database leases and nothing else); Run Demo is pressed every
/// half second until it is green again, which must happen within `seconds`; then the backend's
/// lease is a new one and the revoked role is gone from PostgreSQL.
pub async fn revoke_lease_step(target: &dyn Target, n: u32, st: &Drill, sink: &Sink) -> anyhow::Result<Check> {
    let seconds = st.seconds().unwrap_or_default();
    let within = Duration::from_secs(seconds);
    let mut check =
        step_check(n, st, format!("green again within {} s, a new lease, the revoked role gone", within.as_secs()));
    let mut live = Live::new(sink);
    let lease_url = target.backend_lease_url();
    let (status, before) = http::get_json(&lease_url).await;
    let (Some(lease_id), Some(old_user)) = (before["lease_id"].as_str(), before["db_user"].as_str()) else {
        bail!("the backend reports no lease at {lease_url}: {status} {before}");
    };
    let (lease_id, old_user) = (lease_id.to_owned(), old_user.to_owned());
    let revoker = target.lease_revoker()?;
    let addr = revoker.addr.as_str();
    let revoke = |lease: String| {
        let url = format!("{addr}/v1/sys/leases/revoke/{lease}");
        let token = revoker.token.clone();
        async move { http::send("PUT", &url, &[("x-vault-token", token.as_str())], None).await }
    };
    // The token is narrow: another mount's lease is refused.
    let (other, _) = revoke("auth/jwt/login/not-the-backends".into()).await;
    live.say(format!("lease-revoker token on a lease outside database/creds/backend/: {other} (refused)"));
    let (code, text) = revoke(lease_id.clone()).await;
    if code != 204 && code != 200 {
        check.observed = format!("revocation refused: {code}");
        check.reason = format!("PUT {addr}/v1/sys/leases/revoke/{lease_id}: {code} {}", text.trim());
        check.details = live.lines;
        return Ok(check);
    }
    let revoked_at = Instant::now();
    live.say(format!("revoked lease {lease_id} (user {old_user}) with the lease-revoker token: {code}"));
    let url = target.frontend_url("/api/run-demo");
    let (mut failures, mut calls, mut reasons) = (0u32, 0u32, BTreeSet::new());
    let green_after = loop {
        let (status, text) = http::request("POST", &url, None, None).await;
        calls += 1;
        let report: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let (got, reason) = if report.is_null() {
            (format!("http {status}"), text.chars().take(160).collect())
        } else {
            demo_outcome(&report)
        };
        if got == "ok" {
            break Some(revoked_at.elapsed());
        }
        failures += 1;
        if reasons.insert(got.clone()) {
            live.say(format!("{:>5} ms  Run Demo: {got}: {reason}", revoked_at.elapsed().as_millis()));
        }
        if revoked_at.elapsed() >= within {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (_, after) = http::get_json(&lease_url).await;
    let new_lease = after["lease_id"].as_str().unwrap_or_default().to_owned();
    let new_user = after["db_user"].as_str().unwrap_or_default().to_owned();
    live.say(format!("the backend's lease now: {new_lease} (user {new_user})"));
    let (gone, shown) = role_gone(target, &old_user, Duration::from_secs(5)).await?;
    live.say(shown);
    let fresh = !new_lease.is_empty() && new_lease != lease_id;
    check.passed = green_after.is_some() && fresh && gone;
    check.observed = match green_after {
        Some(t) => format!(
            "green after {} ms ({failures} of {calls} calls failed), {}, old role {}",
            t.as_millis(),
            if fresh { "new lease" } else { "same lease" },
            if gone { "gone" } else { "still there" }
        ),
        None => format!("still failing after {} s ({failures} of {calls} calls failed)", within.as_secs()),
    };
    check.reason = if reasons.is_empty() {
        "no Run Demo failed: the backend had already replaced the credentials".into()
    } else {
        format!("failing hops said: {}", reasons.into_iter().collect::<Vec<_>>().join(", "))
    };
    check.details = live.lines;
    check.took_ms = millis(revoked_at);
    Ok(check)
}
