//! The app chain end to end, started with `ztlab up` like a presenter does: frontend → Envoy
//! (SDS) → Envoy (RBAC) → backend → PostgreSQL (spiffe-helper certificates + OpenBao dynamic
//! credentials), with real SPIRE, Envoy, OpenBao, PostgreSQL and spiffe-helper.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use e2e::applab::{AppLab, AppLabOptions, http, http_json};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use zt_runtime::app::{self as appchain, AppPaths};

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
    let (s, login) =
        http_json("POST", &lab.frontend("/api/login"), Some(json!({"username": "jake", "password": "jake99"})), None)
            .await;
    assert_eq!(s, 200, "{login}");
    let token = login["token"].as_str().expect("token").to_owned();
    let (s, _) =
        http_json("POST", &lab.frontend("/api/login"), Some(json!({"username": "jake", "password": "nope"})), None)
            .await;
    assert_eq!(s, 401);
    let (s, orders) = http_json("GET", &lab.frontend("/api/orders"), None, Some(&token)).await;
    assert_eq!(s, 200, "{orders}");
    assert!(
        orders.as_array().is_some_and(|o| !o.is_empty()) || orders["orders"].as_array().is_some_and(|o| !o.is_empty()),
        "{orders}"
    );

    // GitHub: the token goes to OpenBao KV, repositories come from the (labelled) fixture.
    let gh = format!("ghp_fixture_jake_{token_log_marker}");
    let (s, body) = http("PUT", &lab.frontend("/api/github/token"), Some(json!({"token": gh})), Some(&token)).await;
    assert!((200..300).contains(&s), "{s} {body}");
    let (s, repos) = http_json("GET", &lab.frontend("/api/github/repos"), None, Some(&token)).await;
    assert_eq!(s, 200, "{repos}");
    assert_eq!(repos["fixture"], true, "{repos}");
    let seen = repos.to_string();
    assert!(seen.contains("jake/"), "repos of the token's user: {repos}");
    assert!(!seen.contains(&token_log_marker), "{repos}");
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
    let (_, stats) =
        http("GET", &format!("http://127.0.0.1:{}/stats?filter=rbac", lab.ports.backend_envoy_admin), None, None).await;
    assert!(stats.contains("http.inbound.rbac.denied"), "{stats}");

    // Negatives at the backend's Envoy.
    let envoy = format!("https://127.0.0.1:{}/api/orders", lab.ports.backend_envoy);
    let (code, out) = curl(&["-k", &envoy]);
    // 35: TLS handshake failed; 55/56: the server closed the connection during or right after it.
    assert!([35, 55, 56].contains(&code), "no client certificate must be refused at TLS (curl {code}): {out}");
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

    // OpenBao: the root token was revoked after configuring; the key file is 0600.
    let key_file = lab.state().join("openbao/unseal.json");
    let keys: Value = serde_json::from_str(&std::fs::read_to_string(&key_file).expect("key file")).expect("json");
    assert_eq!(keys["root_token"], "", "no root token is kept: {key_file:?}");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&key_file).expect("meta").permissions().mode() & 0o777, 0o600);

    // A JWT-SVID for the backend's ID but another audience is refused by OpenBao's jwt role; the
    // right audience is accepted (so the refusal is about the audience).
    let l = lab.lab();
    let exe = std::env::current_exe().expect("exe");
    l.register("a", "e2e-jwt", "/ns/demo/sa/backend", &exe, 0).await.expect("register the test binary");
    l.register("a", "e2e-jwt-other", "/ns/demo/sa/intruder", &exe, 0).await.expect("register the test binary");
    let socket = format!("unix://{}", l.workload_socket("a").expect("socket").display());
    let jwt_as = |aud: &'static str, path: &'static str| {
        let socket = socket.clone();
        let id = zt_identity::SpiffeId::new(format!("{td}{path}")).expect("id");
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match zt_tls::source::fetch_jwt_svid_as(&socket, aud, Some(&id)).await {
                    Ok(svid) => return svid.token().to_owned(),
                    Err(e) => assert!(Instant::now() < deadline, "no JWT-SVID for the test binary: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    let login = format!("http://127.0.0.1:{}/v1/auth/jwt/login", lab.ports.openbao);
    let backend = "/ns/demo/sa/backend";
    let (s, body) =
        http("POST", &login, Some(json!({"role": "backend", "jwt": jwt_as("not-openbao", backend).await})), None).await;
    assert_eq!(s, 400, "wrong audience must be refused: {body}");
    assert!(body.contains("aud"), "{body}");
    let intruder = jwt_as("openbao", "/ns/demo/sa/intruder").await;
    let (s, body) = http("POST", &login, Some(json!({"role": "backend", "jwt": intruder})), None).await;
    assert_eq!(s, 400, "another subject must be refused: {body}");
    assert!(body.contains("sub"), "{body}");
    let (s, body) =
        http("POST", &login, Some(json!({"role": "backend", "jwt": jwt_as("openbao", backend).await})), None).await;
    assert_eq!(s, 200, "the backend's ID with the right audience logs in: {body}");

    // The backend's OpenBao policy revokes its own database leases and no others.
    let bao_token = serde_json::from_str::<Value>(&body).expect("login json")["auth"]["client_token"]
        .as_str()
        .expect("client_token")
        .to_owned();
    let bao = |path: &str| format!("http://127.0.0.1:{}/v1/{path}", lab.ports.openbao);
    let (s, body) =
        http("PUT", &bao("sys/leases/revoke"), Some(json!({"lease_id": "auth/jwt/login/x"})), Some(&bao_token)).await;
    assert_eq!(s, 403, "sys/leases/revoke (any lease) is not granted: {body}");
    let (s, body) = http("PUT", &bao("sys/leases/revoke/auth/jwt/login/x"), None, Some(&bao_token)).await;
    assert_eq!(s, 403, "another mount's lease is not the backend's to revoke: {body}");
    let (s, body) = http("PUT", &bao("sys/leases/revoke/database/creds/backend/none"), None, Some(&bao_token)).await;
    assert_ne!(s, 403, "its own database leases are (control): {body}");

    // The GitHub token never shows up in any log, even at debug level.
    // Envoy flushes its access log every few seconds.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut logs = lab.all_logs();
    while !logs.contains("/api/github/token") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        logs = lab.all_logs();
    }
    assert!(logs.contains("/api/github/token"), "the request itself is logged (the check can fail)");
    assert!(!logs.contains(&token_log_marker), "the GitHub token leaked into a log");

    // OpenBao's audit log (file device, 0600): the read of jake's token by the backend's
    // JWT-SVID login is there; the token's text is not (OpenBao HMACs secret values).
    let audit_file = lab.state().join("openbao/audit.log");
    let mode = std::fs::metadata(&audit_file).expect("the OpenBao audit log exists").permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600, "audit log mode");
    let audit = std::fs::read_to_string(&audit_file).expect("audit log");
    let reads: Vec<serde_json::Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["request"]["path"] == "secret/data/github/jake" && v["request"]["operation"] == "read")
        .collect();
    assert!(!reads.is_empty(), "no audited read of secret/data/github/jake in {} lines", audit.lines().count());
    let by = reads[0]["auth"]["display_name"].as_str().unwrap_or_default();
    assert!(
        by.contains("spiffe://ztlab.test/ns/demo/sa/backend"),
        "read by the backend's JWT-SVID login: {}",
        reads[0]
    );
    assert_eq!(reads[0]["auth"]["metadata"]["role"], "backend", "{}", reads[0]);
    assert!(!audit.contains(&token_log_marker), "the GitHub token's plaintext is in OpenBao's audit log");

    // Every line of every ztlab service's log (at debug level, the libraries' lines too) is a
    // flat JSON object with the service's component; the lines of a request carry its trace ID
    // and actor.
    let logs = lab.state().join("logs");
    let log = |file: &str, component: &str| e2e::service_log(&logs.join(format!("{file}.log")), component);
    for (file, component) in [
        ("opa", "opa"),
        ("document", "document"),
        ("agents", "agents"),
        ("entry-manager", "entry-manager"),
        ("site-agent-a", "site-agent"),
        ("site-agent-b", "site-agent"),
        ("github-fixture", "github-fixture"),
    ] {
        assert!(!log(file, component).is_empty(), "{file} logged nothing");
    }
    // The backend names the workload that called (from its Envoy's XFCC), and the person it
    // acts for once their token is verified.
    let backend = log("backend", "backend");
    let logged_in = backend.iter().find(|l| l["message"] == "logged in").expect("the login line");
    let (login_trace, actor) = e2e::request_fields(logged_in);
    assert_eq!(actor, format!("{td}/ns/demo/sa/frontend"), "{logged_in:?}");
    let stored = backend.iter().find(|l| l["message"] == "stored a GitHub token in OpenBao").expect("the token line");
    assert_eq!(e2e::request_fields(stored).1, format!("jake via {td}/ns/demo/sa/frontend"), "{stored:?}");
    // The frontend's Run Demo (no sign-in needed) is an anonymous request. The login went
    // through the frontend's proxy with one trace ID: the frontend's lines of it (its HTTP
    // client's, at debug level) have the one the backend logged.
    let frontend = log("frontend", "frontend");
    assert!(
        frontend.iter().any(|l| l["path"] == "/api/login" && l["trace_id"] == login_trace),
        "no frontend line of the login with trace ID {login_trace}"
    );
    let demo = frontend.iter().find(|l| l["message"] == "demo run").expect("the demo run line");
    assert_eq!(e2e::request_fields(demo).1, "anonymous", "{demo:?}");
}

/// The serial number of the certificate in a PEM file (`openssl x509 -serial`).
fn serial_of(file: &std::path::Path) -> Option<String> {
    let out =
        std::process::Command::new("openssl").args(["x509", "-noout", "-serial", "-in"]).arg(file).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_under_load_sds_helper_and_database_credentials() {
    // 20 s SVIDs (rotated at half-life) and 20 s database credentials (rotated at half).
    let lab = tokio::task::spawn_blocking(|| {
        AppLab::start(AppLabOptions { x509_ttl_secs: 20, db_ttl_secs: 20, db_rotate_at: 0.5, ..Default::default() })
    })
    .await
    .expect("start");
    let paths = AppPaths::new(lab.state());
    let (mut fe_serials, mut be_serials) = (std::collections::BTreeSet::new(), std::collections::BTreeSet::new());
    let (mut helper_serials, mut pg_serials) = (std::collections::BTreeSet::new(), std::collections::BTreeSet::new());
    let mut db_users = Vec::<String>::new();
    let (mut calls, mut failures) = (0u32, Vec::new());
    let started = Instant::now();
    let mut next_sample = Instant::now();
    while started.elapsed() < Duration::from_secs(50) {
        let demo = run_demo(&lab).await;
        calls += 1;
        if demo["ok"] != true {
            failures.push(demo.to_string());
        } else if let Some(u) = hop(&demo, "postgres")["evidence"]["db_user"].as_str()
            && db_users.last().map(String::as_str) != Some(u)
        {
            db_users.push(u.to_owned());
        }
        if Instant::now() >= next_sample {
            fe_serials.extend(appchain::envoy_serials(lab.ports.frontend_envoy_admin).await);
            be_serials.extend(appchain::envoy_serials(lab.ports.backend_envoy_admin).await);
            helper_serials.extend(serial_of(&paths.backend_cert_dir().join("svid.pem")));
            pg_serials.extend(serial_of(&paths.pg_cert_dir().join("svid.pem")));
            next_sample = Instant::now() + Duration::from_secs(1);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "{calls} calls; serials: envoy-frontend {}, envoy-backend {}, helper-backend {}, helper-postgres {}; db users {}",
        fe_serials.len(),
        be_serials.len(),
        helper_serials.len(),
        pg_serials.len(),
        db_users.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {calls} Run Demo calls failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    // The bundle's root is in the Envoy lists too, so rotations = distinct serials - 1.
    assert!(fe_serials.len() >= 4, "frontend Envoy SVID rotated at least 3 times over SDS: {fe_serials:?}");
    assert!(be_serials.len() >= 4, "backend Envoy SVID rotated at least 3 times over SDS: {be_serials:?}");
    assert!(helper_serials.len() >= 4, "backend spiffe-helper files rotated 3 times: {helper_serials:?}");
    assert!(pg_serials.len() >= 4, "PostgreSQL's spiffe-helper files rotated 3 times: {pg_serials:?}");
    assert!(db_users.len() >= 3, "dynamic database users rotated at least twice: {db_users:?}");
    // The first lease was revoked, so OpenBao dropped its role.
    let cluster = paths.pg_cluster(lab.ports.postgres);
    let first = &db_users[0];
    let left = cluster
        .psql("postgres", &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{first}'"))
        .await
        .expect("psql");
    assert_eq!(left.trim(), "0", "the old role {first} is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_are_reported_hop_by_hop_and_recover() {
    let lab = tokio::task::spawn_blocking(|| AppLab::start(AppLabOptions::default())).await.expect("start");
    let paths = AppPaths::new(lab.state());
    assert_eq!(run_demo(&lab).await["ok"], true);

    // SPIRE server down: cached SVIDs keep every hop working.
    let mut l = lab.lab();
    l.stop_component("spire-server-a").await;
    for _ in 0..5 {
        let demo = run_demo(&lab).await;
        assert_eq!(demo["ok"], true, "with SPIRE server a down: {demo:#}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    l.restart_stopped().await.expect("restart SPIRE server");

    // Envoy not ready: the frontend says so.
    l.stop_component(appchain::ENVOY_FRONTEND_NAME).await;
    let (s, ready) = http_json("GET", &lab.frontend("/readyz"), None, None).await;
    assert_eq!(s, 503, "{ready}");
    let demo = run_demo(&lab).await;
    assert_eq!(demo["ok"], false);
    assert_eq!(hop(&demo, "backend")["reason"], "envoy_not_ready", "{demo:#}");
    l.restart_stopped().await.expect("restart envoy");
    let (s, _) = http_json("GET", &lab.frontend("/readyz"), None, None).await;
    assert_eq!(s, 200);

    // PostgreSQL down: a clear error on the postgres hop, shown by the frontend.
    l.stop_component(appchain::POSTGRES_APP).await;
    let demo = run_demo(&lab).await;
    assert_eq!(demo["ok"], false, "{demo:#}");
    assert_eq!(hop(&demo, "backend")["ok"], true, "{demo:#}");
    assert_eq!(hop(&demo, "postgres")["reason"], "database_down", "{demo:#}");
    l.restart_stopped().await.expect("restart postgres");
    wait_ok(&lab, "after PostgreSQL came back").await;

    // OpenBao sealed: the openbao hop says so; unsealed again, everything is green.
    let bao = l.openbao_handle().expect("openbao");
    let root = bao.admin_token().await.expect("root token");
    let (s, body) =
        http("PUT", &format!("http://127.0.0.1:{}/v1/sys/seal", lab.ports.openbao), None, Some(&root)).await;
    assert_eq!(s, 204, "seal: {body}");
    let demo = run_demo(&lab).await;
    assert_eq!(demo["ok"], false, "{demo:#}");
    assert_eq!(hop(&demo, "openbao")["reason"], "openbao_sealed", "{demo:#}");
    bao.ensure_unsealed().await.expect("unseal");
    bao.revoke_root(&root).await.expect("revoke");
    wait_ok(&lab, "after OpenBao was unsealed").await;

    // spiffe-helper cannot write: its error is logged, and the next PostgreSQL connection fails
    // clearly (the backend names the missing file).
    l.stop_component(appchain::HELPER_BACKEND).await;
    let certs = paths.backend_cert_dir();
    let saved = certs.with_extension("saved");
    std::fs::rename(&certs, &saved).expect("move certs");
    std::fs::write(&certs, "not a directory").expect("block the cert dir");
    let log = lab.state().join("logs/spiffe-helper-backend.log");
    let before = std::fs::read_to_string(&log).unwrap_or_default().len();
    let rogue = appchain::spawn_helper(
        &lab.state().join("bin").join(appchain::HELPER_BACKEND),
        &lab.state().join(appchain::HELPER_BACKEND).join("helper.conf"),
        log.clone(),
        None,
    )
    .expect("start helper");
    let deadline = Instant::now() + Duration::from_secs(15);
    let logged = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let new = &text[before.min(text.len())..];
        if new.to_lowercase().contains("not a directory") || new.to_lowercase().contains("unable to") {
            break new.to_owned();
        }
        assert!(Instant::now() < deadline, "spiffe-helper logged no write error: {new}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("spiffe-helper: {}", logged.lines().last().unwrap_or_default());
    rogue.stop(Duration::from_secs(5)).await;
    let cluster = paths.pg_cluster(lab.ports.postgres);
    cluster
        .psql("postgres", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename LIKE 'v-%'")
        .await
        .expect("drop the backend's connections");
    let demo = run_demo(&lab).await;
    assert_eq!(demo["ok"], false, "{demo:#}");
    let pg = hop(&demo, "postgres");
    assert!(pg["error"].as_str().unwrap_or_default().contains("svid"), "the error names the SVID file: {demo:#}");
    std::fs::remove_file(&certs).expect("unblock");
    std::fs::rename(&saved, &certs).expect("restore certs");
    l.restart_stopped().await.expect("restart helper");
    wait_ok(&lab, "after the helper came back").await;

    // An unregistered workload gets no SVID, and says so.
    let exe = l
        .install_binary("spiffe-helper-rogue", &zt_runtime::binaries::Tool::SpiffeHelper.require().expect("helper"))
        .expect("link");
    let dir = lab.state().join("rogue-certs");
    std::fs::create_dir_all(&dir).expect("dir");
    let conf = appchain::write_helper_config(
        &paths,
        "spiffe-helper-rogue",
        &l.workload_socket("a").expect("socket"),
        &dir,
        None,
        zt_runtime::ports::free_port().expect("port"),
    )
    .expect("config");
    let rec = appchain::spawn_helper(&exe, &conf, lab.state().join("logs/rogue.log"), None).expect("spawn");
    let err = appchain::wait_svid_files("spiffe-helper-rogue", &rec, &dir, Duration::from_secs(5))
        .await
        .expect_err("no SVID");
    rec.stop(Duration::from_secs(5)).await;
    assert!(err.to_string().contains("is its entry registered"), "{err}");
}

async fn wait_ok(lab: &AppLab, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let demo = run_demo(lab).await;
        if demo["ok"] == true {
            return;
        }
        assert!(Instant::now() < deadline, "Run Demo not green {what}: {demo:#}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
