//! The app chain end to end, started with `ztlab up` like a presenter does: frontend → Envoy
//! (SDS) → Envoy (RBAC) → backend → PostgreSQL (spiffe-helper certificates + OpenBao dynamic
//! credentials), with real SPIRE, Envoy, OpenBao, PostgreSQL and spiffe-helper.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use e2e::applab::{AppLab, AppLabOptions, http, http_json};
use serde_json::{Value, json};

async fn run_demo(lab: &AppLab) -> Value {
    let (status, body) = http_json("POST", &lab.frontend("/api/run-demo"), None, None).await;
    assert_eq!(status, 200, "run-demo answers 200 whatever the outcome: {body}");
    body
}

fn hop<'a>(demo: &'a Value, to: &str) -> &'a Value {
    demo["hops"].as_array().and_then(|h| h.iter().find(|x| x["to"] == to)).unwrap_or(&Value::Null)
}

/// Runs `curl` against the backend's Envoy: (exit code, stdout + stderr).
fn curl(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new("curl").args(["-sS", "--max-time", "5"]).args(args).output().expect("curl");
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_demo_rbac_flip_negatives_and_github() {
    let token_log_marker = format!("s3cr3t{}", std::process::id());
    let lab = tokio::task::spawn_blocking(|| {
        AppLab::start(AppLabOptions { rust_log: "debug".into(), ..AppLabOptions::default() })
    })
    .await
    .expect("start");
    let td = "spiffe://ztlab.test";

    // The happy path: every hop green, with its evidence.
    let demo = run_demo(&lab).await;
    assert_eq!(demo["ok"], true, "{demo:#}");
    let envoy = &hop(&demo, "backend")["evidence"];
    assert_eq!(envoy["client_spiffe_id"], format!("{td}/ns/demo/sa/frontend"), "{demo:#}");
    assert_eq!(envoy["server_spiffe_id"], format!("{td}/ns/demo/sa/backend"), "{demo:#}");
    let pg = &hop(&demo, "postgres")["evidence"];
    assert_eq!(pg["client_spiffe_id"], format!("{td}/ns/demo/sa/backend"), "what PostgreSQL verified: {demo:#}");
    assert_eq!(pg["ssl_version"], "TLSv1.3", "{demo:#}");
    let db_user = pg["db_user"].as_str().unwrap_or_default().to_owned();
    assert!(db_user.starts_with("v-"), "an OpenBao dynamic user: {demo:#}");
    let bao = &hop(&demo, "openbao")["evidence"];
    assert!(bao["ttl_left_secs"].as_i64().unwrap_or(0) > 0, "{demo:#}");

    // Users: seeded, bcrypt, login JWT; bad password and weak registration refused.
    let (s, login) = http_json("POST", &lab.frontend("/api/login"), Some(json!({"username": "jake", "password": "jake99"})), None).await;
    assert_eq!(s, 200, "{login}");
    let token = login["token"].as_str().expect("token").to_owned();
    let (s, _) = http_json("POST", &lab.frontend("/api/login"), Some(json!({"username": "jake", "password": "nope"})), None).await;
    assert_eq!(s, 401);
    let (s, orders) = http_json("GET", &lab.frontend("/api/orders"), None, Some(&token)).await;
    assert_eq!(s, 200, "{orders}");
    assert!(orders.as_array().is_some_and(|o| !o.is_empty()) || orders["orders"].as_array().is_some_and(|o| !o.is_empty()), "{orders}");

    // GitHub: the token goes to OpenBao KV, repositories come from the (labelled) fixture.
    let gh = format!("ghp_fixture_jake{token_log_marker}");
    let (s, body) = http("PUT", &lab.frontend("/api/github/token"), Some(json!({"token": gh})), Some(&token)).await;
    assert!((200..300).contains(&s), "{s} {body}");
    let (s, repos) = http_json("GET", &lab.frontend("/api/github/repos"), None, Some(&token)).await;
    assert_eq!(s, 200, "{repos}");
    assert_eq!(repos["fixture"], true, "{repos}");
    let seen = repos.to_string();
    assert!(seen.contains(&format!("jake{token_log_marker}")), "repos of the token's user: {repos}");
    let (ok, kv) = lab.ztlab(&["status"]);
    assert!(ok, "{kv}");

    // RBAC flip under load: requests through the frontend's Envoy switch within 2 s, and nothing
    // but the RBAC denial fails.
    let url = format!("http://127.0.0.1:{}/api/orders", lab.ports.frontend_envoy);
    let stop = Arc::new(AtomicBool::new(false));
    let denied = Arc::new(AtomicU64::new(0));
    let other_errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let last = Arc::new(Mutex::new((0u16, Instant::now())));
    let load = {
        let (stop, denied, other, last, url, token) =
            (stop.clone(), denied.clone(), other_errors.clone(), last.clone(), url.clone(), token.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (s, body) = http("GET", &url, None, Some(&token)).await;
                match s {
                    200 => {}
                    403 if body.starts_with("RBAC: denied for spiffe://ztlab.test/ns/demo/sa/frontend") => {
                        denied.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => other.lock().await.push(format!("{s} {body}")),
                }
                *last.lock().await = (s, Instant::now());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (mode, want) in [("deny-frontend", 403u16), ("allow-frontend", 200u16)] {
        let flipped = Instant::now();
        let (ok, out) = lab.ztlab(&["policy", "rbac", mode]);
        assert!(ok, "{out}");
        loop {
            let (s, at) = *last.lock().await;
            if s == want && at > flipped {
                break;
            }
            assert!(flipped.elapsed() < Duration::from_secs(2), "{mode} did not take effect within 2 s (last {s})");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        eprintln!("{mode}: effective after {:?}", flipped.elapsed());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load");
    assert!(denied.load(Ordering::Relaxed) > 0, "some requests were denied");
    let other = other_errors.lock().await;
    assert!(other.is_empty(), "failures other than the RBAC denial: {other:?}");
    let (_, stats) = http("GET", &format!("http://127.0.0.1:{}/stats?filter=rbac", lab.ports.backend_envoy_admin), None, None).await;
    assert!(stats.contains("http.inbound.rbac.denied"), "{stats}");

    // Negatives at the backend's Envoy.
    let envoy = format!("https://127.0.0.1:{}/api/orders", lab.ports.backend_envoy);
    let (code, out) = curl(&["-k", &envoy]);
    assert_ne!(code, 0, "no client certificate must be refused at TLS: {out}");
    assert!(out.contains("certificate required") || out.contains("alert"), "{out}");
    let certs = lab.state().join("backend/certs");
    let (cert, key, ca) = (certs.join("svid.pem"), certs.join("svid_key.pem"), certs.join("svid_bundle.pem"));
    let (code, out) = curl(&[
        "-k",
        "--cert",
        &cert.display().to_string(),
        "--key",
        &key.display().to_string(),
        "--cacert",
        &ca.display().to_string(),
        "-w",
        "\n%{http_code}",
        &envoy,
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.trim_end().ends_with("403"), "another SPIFFE ID gets 403 from RBAC: {out}");
    assert!(out.contains("RBAC: denied for spiffe://ztlab.test/ns/demo/sa/backend"), "{out}");

    // The GitHub token never shows up in any log, even at debug level.
    let logs = lab.all_logs();
    assert!(logs.contains("/api/github/token"), "the request itself is logged (the check can fail)");
    assert!(!logs.contains(&token_log_marker), "the GitHub token leaked into a log");
}

use tokio::sync::Mutex;
