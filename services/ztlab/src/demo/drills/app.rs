//! The app's drills: the RBAC swap, Run Demo, the GitHub token, and the delegation cases (a user
//! logged in through the frontend, with or without an AI agent acting for them).

use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{Value, json};
use zt_runtime::app::{RbacLoad, RbacMode};
use zt_scenarios::{Case, Decision, Drill};

use super::{SWAP_WAIT, case_expectation, decision_word, millis, step_check};
use crate::demo::event::{Check, CheckKind};
use crate::demo::http;
use crate::demo::target::Target;

/// How an installed RBAC policy was taken up, in words.
pub fn rbac_load_text(load: RbacLoad) -> String {
    match load {
        RbacLoad::Loaded(t) => format!("envoy-backend loaded it in place in {:.1} ms", t.as_secs_f64() * 1000.0),
        RbacLoad::Unchanged => "it was installed already".into(),
        RbacLoad::EnvoyDown => "envoy-backend is not running; it reads the file when it starts".into(),
    }
}

/// `rbac`: installs the backend Envoy's policy and waits until Envoy has loaded it.
pub async fn rbac_step(target: &dyn Target, n: u32, st: &Drill, mode: RbacMode) -> anyhow::Result<Check> {
    let start = Instant::now();
    let (file, load) = target.install_rbac(mode, SWAP_WAIT).await?;
    let observed = target.current_rbac().map(|m| m.to_string()).unwrap_or_else(|| "none".into());
    let mut check = step_check(n, st, mode.to_string());
    check.passed = observed == mode.to_string() && load != RbacLoad::EnvoyDown;
    check.observed = observed;
    check.reason = format!("installed in {file}; {}", rbac_load_text(load));
    check.took_ms = millis(start);
    Ok(check)
}

/// `ok`, or the reason of the first failing hop, with that hop's error.
pub fn demo_outcome(report: &Value) -> (String, String) {
    if report["ok"] == true {
        return ("ok".into(), "every hop green".into());
    }
    let failing = report["hops"].as_array().and_then(|h| h.iter().find(|x| x["ok"] == false));
    match failing {
        Some(h) => (
            h["reason"].as_str().unwrap_or("?").to_owned(),
            format!(
                "{} → {}: {}",
                h["from"].as_str().unwrap_or("?"),
                h["to"].as_str().unwrap_or("?"),
                h["error"].as_str().unwrap_or("failed")
            ),
        ),
        None => ("?".into(), format!("unexpected answer: {report}")),
    }
}

/// `run-demo`: `POST /api/run-demo` on the frontend, polled for up to [`SWAP_WAIT`] until it
/// gives the expected outcome.
pub async fn run_demo_step(target: &dyn Target, n: u32, st: &Drill, want: &str) -> anyhow::Result<Check> {
    use zt_runtime::wait::{self, poll_until};
    let start = Instant::now();
    let url = target.frontend_url("/api/run-demo");
    // What a press gave: the outcome, its reason and the hops; an error when nothing answered.
    let outcome = poll_until(SWAP_WAIT, Duration::from_millis(100), || async {
        let (status, text) = http::request("POST", &url, None, None).await;
        if status == 0 {
            return wait::Check::Failed(Err(text));
        }
        let report: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let (got, reason) = if report.is_null() {
            (format!("http {status}"), text.chars().take(200).collect())
        } else {
            demo_outcome(&report)
        };
        let seen = (got, reason, report["hops"].clone());
        if seen.0 == want { wait::Check::Done(seen) } else { wait::Check::NotYet(Ok(seen)) }
    })
    .await;
    let (passed, (got, reason, hops)) = match outcome {
        Ok(seen) => (true, seen),
        Err(Ok(seen)) => (false, seen),
        Err(Err(text)) => bail!("step {n}: the frontend does not answer at {url}: {text}"),
    };
    let mut check = step_check(n, st, want);
    check.passed = passed;
    check.observed = got;
    check.reason = reason;
    check.took_ms = millis(start);
    check.evidence = hops;
    Ok(check)
}

/// The policy's reason in a document answer (a denial's `reason`, a grant's `decision.reason`),
/// else its error.
pub fn policy_reason(body: &Value) -> String {
    body["reason"]
        .as_str()
        .or_else(|| body["decision"]["reason"].as_str())
        .or_else(|| body["error"].as_str())
        .or_else(|| body.as_str())
        .unwrap_or_default()
        .to_owned()
}

/// A delegation case: the user logs in through the frontend; without an agent the frontend
/// reads the document for them, with one `agents act` reads it with the agent's SVID.
pub async fn case(target: &dyn Target, c: &Case) -> anyhow::Result<Check> {
    let mut check = Check::new(CheckKind::Case, c.n, c.label(), case_expectation(c));
    let start = Instant::now();
    let token = match &c.user {
        None => None,
        Some(user) => match login(target, user).await? {
            Ok(t) => Some(t),
            Err((status, why)) => {
                check.observed = format!("login refused for {user}");
                check.status = Some(status);
                check.reason = why;
                return Ok(check);
            }
        },
    };
    let (status, body, caller) = match &c.agent {
        Some(agent) => {
            let a = target.act(agent, token.as_deref(), &c.doc).await?;
            (a.status, a.body, a.caller)
        }
        None => {
            let url = target.frontend_url(&format!("/api/documents/{}", c.doc));
            let (status, text) = http::request("GET", &url, None, token.as_deref()).await;
            if status == 0 {
                bail!("case {}: the frontend does not answer at {url}: {text}", c.n);
            }
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            (status, body, target.frontend_id().to_owned())
        }
    };
    let reason = policy_reason(&body);
    let observed = match status {
        200 if body["id"] == c.doc.as_str() => Some(Decision::Granted),
        // 403: the policy said no; 401: refused before the policy, for want of a user.
        401 | 403 => Some(Decision::Denied),
        _ => None,
    };
    check.observed = observed.map(decision_word).unwrap_or("error").to_owned();
    check.passed = observed == Some(c.expect);
    if let Some(because) = &c.because
        && check.passed
        && !reason.contains(because.as_str())
    {
        check.passed = false;
        check.observed = format!("{} (the reason lacks {because:?})", check.observed);
    }
    check.status = Some(status);
    check.reason = reason;
    check.caller_spiffe_id = Some(caller);
    check.took_ms = millis(start);
    Ok(check)
}

/// Logs `user` in through the frontend with the seeded password (`<user>99`): the token, or
/// (status, why).
async fn login(target: &dyn Target, user: &str) -> anyhow::Result<Result<String, (u16, String)>> {
    let url = target.frontend_url("/api/login");
    let (status, text) =
        http::request("POST", &url, Some(json!({"username": user, "password": format!("{user}99")})), None).await;
    if status == 0 {
        bail!("the frontend does not answer at {url}: {text}");
    }
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    match body["token"].as_str() {
        Some(t) if status == 200 => Ok(Ok(t.to_owned())),
        _ => Ok(Err((status, policy_reason(&body)))),
    }
}

/// `github`: the user stores a GitHub token (kept in OpenBao KV) and lists their repositories
/// through the backend, from the lab's GitHub fixture.
pub async fn github_step(target: &dyn Target, n: u32, st: &Drill, user: &str) -> anyhow::Result<Check> {
    let mut check = step_check(n, st, "repositories, fixture: true");
    let start = Instant::now();
    let token = match login(target, user).await? {
        Ok(t) => t,
        Err((status, why)) => {
            check.observed = format!("login refused for {user}");
            check.status = Some(status);
            check.reason = why;
            return Ok(check);
        }
    };
    check.details.push(format!("POST /api/login as {user}: a session token"));
    let gh = format!("ghp_fixture_{user}_demo");
    let (status, body) =
        http::request("PUT", &target.frontend_url("/api/github/token"), Some(json!({"token": gh})), Some(&token)).await;
    check.details.push(format!("PUT /api/github/token → {status} (stored in OpenBao KV; the token is never shown)"));
    if !(200..300).contains(&status) {
        check.observed = format!("storing the token failed ({status})");
        check.reason = body.chars().take(200).collect();
        return Ok(check);
    }
    let (status, text) = http::request("GET", &target.frontend_url("/api/github/repos"), None, Some(&token)).await;
    let repos: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    check.status = Some(status);
    let list = repos["repos"].as_array().or_else(|| repos["repositories"].as_array()).or_else(|| repos.as_array());
    let names: Vec<String> = list
        .into_iter()
        .flatten()
        .filter_map(|r| r["full_name"].as_str().or_else(|| r["name"].as_str()).map(str::to_owned))
        .collect();
    let fixture = repos["fixture"] == true;
    check.details.push(format!("GET /api/github/repos → {status}: {}", names.join(", ")));
    check.observed = match (fixture, names.len()) {
        (true, n) if n > 0 => format!("{n} repositories, fixture"),
        (false, n) if n > 0 => format!("{n} repositories, not from the fixture"),
        _ => format!("no repositories ({status})"),
    };
    check.passed = fixture && !names.is_empty();
    check.reason = if fixture {
        "fixture: the lab cannot reach GitHub, so a local fixture of its API answered (labelled in the UI)".into()
    } else {
        text.chars().take(200).collect()
    };
    check.took_ms = millis(start);
    Ok(check)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_outcome_names_the_failing_hop() {
        let ok = json!({"ok": true, "hops": []});
        assert_eq!(demo_outcome(&ok).0, "ok");
        let denied = json!({"ok": false, "hops": [
            {"from": "frontend", "to": "backend", "ok": false, "reason": "rbac", "error": "RBAC: denied for spiffe://x/y"},
            {"from": "backend", "to": "postgres", "ok": false, "reason": "skipped"},
        ]});
        let (got, why) = demo_outcome(&denied);
        assert_eq!(got, "rbac");
        assert!(why.contains("RBAC: denied for spiffe://x/y"), "{why}");
    }

    #[test]
    fn policy_reason_reads_denials_and_grants() {
        assert_eq!(policy_reason(&json!({"allow": false, "reason": "bob lacks engineering"})), "bob lacks engineering");
        assert_eq!(policy_reason(&json!({"id": "DOC-001", "decision": {"allow": true, "reason": "ok"}})), "ok");
    }
}
