//! The agent runtime on a real SPIRE site: one `agents` process (one `unix:path` selector)
//! matched by three registration entries receives three X.509-SVIDs, holds one source per
//! agent, reports each agent's SPIFFE ID and expiry on `/healthz`, and presents the chosen
//! agent's SVID when it calls the document service; when one agent's entry is deleted,
//! `/healthz` turns 503 naming it. A copy registered for only two of the three agents refuses to
//! start and names the missing SPIFFE ID.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use agents::{AGENTS, agent_path};
use e2e::{bin, service, site, spec, state_dir};
use serde_json::Value;
use zt_runtime::lab::{Lab, WorkloadSpec};
use zt_runtime::ports::free_port;

const TD: &str = "ztlab.test";
const DOC: &str = "/ns/demo/sa/document";

/// Registers `exe` (by `unix:path`) at site `a` once per agent in `names`, each under its own
/// entry ID (`bootstrap.<copy>-<agent>`).
async fn register_agents(lab: &Lab, copy: &str, exe: &Path, names: &[&str]) {
    for name in names {
        lab.register("a", &format!("{copy}-{name}"), &agent_path(name), exe, 0).await.expect("create entry");
    }
}

fn socket(lab: &Lab) -> String {
    format!("unix://{}", lab.workload_socket("a").expect("socket").display())
}

#[tokio::test(flavor = "multi_thread")]
async fn one_process_holds_and_presents_each_agents_svid() {
    zt_tls::install_crypto_provider();
    let dir = state_dir();
    let base = spec(&dir, vec![site("a", TD, true)]);

    // The site first, so that the agents' entries exist before the runtime starts.
    let sites = Lab::up(base.clone(), true).await.expect("lab");
    let exe = sites.install_binary("agents", &bin("agents")).expect("install");
    register_agents(&sites, "agents", &exe, &AGENTS).await;

    // zt-tls against the real agent: this test binary, matched by two entries, is issued two
    // SVIDs; `connect_as` presents the one asked for, and names an ID it was not issued.
    let me = std::env::current_exe().expect("exe");
    for (name, path) in [("e2e-left", "/ns/test/sa/left"), ("e2e-right", "/ns/test/sa/right")] {
        sites.register("a", name, path, &me, 0).await.expect("register test binary");
    }
    let want = |p: &str| zt_identity::SpiffeId::new(format!("spiffe://{TD}{p}")).expect("id");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let issued = loop {
        let mut ids = zt_tls::source::issued_ids(&socket(&sites)).await.expect("issued_ids");
        ids.sort();
        if ids.len() == 2 || tokio::time::Instant::now() >= deadline {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(issued, [want("/ns/test/sa/left"), want("/ns/test/sa/right")]);
    for p in ["/ns/test/sa/left", "/ns/test/sa/right"] {
        let source = zt_tls::source::connect_as(&socket(&sites), &want(p), Duration::from_secs(20)).await.expect(p);
        let info = zt_tls::source::current_svid(&source).expect("svid");
        assert_eq!(info.spiffe_id, format!("spiffe://{TD}{p}"));
    }
    let err = zt_tls::source::connect_as(&socket(&sites), &want("/ns/test/sa/nobody"), Duration::from_millis(500))
        .await
        .expect_err("not issued")
        .to_string();
    assert!(err.contains(&format!("did not issue spiffe://{TD}/ns/test/sa/nobody")), "{err}");
    assert!(err.contains(&format!("spiffe://{TD}/ns/test/sa/left")), "{err}");

    // Then document and the agent runtime as workloads of the running site; the new handle owns
    // everything from here on.
    let (mut document, doc_port) = service("document", "document", "a", DOC, 0);
    // Admit only the frontend here, so that the document service's 403 names the agent's SPIFFE
    // ID it saw (the delegation decisions themselves are in the scenarios test).
    document.env.insert("ZT_ALLOWED_CLIENTS".into(), format!("[\"spiffe://{TD}/ns/demo/sa/frontend\"]"));
    let ops = free_port().expect("port");
    let runtime = WorkloadSpec {
        env: BTreeMap::from([
            ("ZT_DOCUMENT_URL".to_owned(), format!("https://127.0.0.1:{doc_port}")),
            ("ZT_SVID_WAIT_SECS".to_owned(), "30".to_owned()),
        ]),
        ops_port: ops,
        bootstrap_entry: false,
        ..WorkloadSpec::new("agents", "a", &agent_path("gpt4"), bin("agents"))
    };
    let mut full = base;
    full.workloads = vec![document, runtime];
    sites.detach();
    let lab = match Lab::up(full, true).await {
        Ok(lab) => lab,
        Err(e) => {
            if let Ok(mut l) = Lab::open(dir.path()) {
                let _ = l.down().await;
            }
            panic!("document and agents did not start: {e}");
        }
    };

    // /healthz: every agent's SPIFFE ID with a future expiry.
    let (code, body) = zt_runtime::health::http_get(ops, "/healthz").await.expect("healthz answers");
    assert_eq!(code, 200, "{body}");
    let health: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["component"], "agents", "{health}");
    let list = health["identities"].as_array().expect("identities");
    let got: Vec<(&str, &str)> =
        list.iter().map(|i| (i["name"].as_str().expect("name"), i["spiffe_id"].as_str().expect("id"))).collect();
    let want: Vec<(&str, String)> = AGENTS.iter().map(|a| (*a, format!("spiffe://{TD}/agent/{a}"))).collect();
    assert_eq!(got, want.iter().map(|(a, id)| (*a, id.as_str())).collect::<Vec<_>>(), "{health}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    for i in list {
        assert_eq!(i["status"], "ok", "{i}");
        let left = i["svid_seconds_left"].as_i64().expect("seconds left");
        assert!((1..=301).contains(&left), "site default TTL is 300 s: {i}");
        let at = i["svid_expires_at"].as_str().expect("expires_at");
        let at = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("expires_at {at:?} is not RFC 3339: {e}"));
        assert!(at.unix_timestamp() > now, "{i}");
    }
    // Distinct SVIDs, not one certificate reported three times.
    let serials: std::collections::BTreeSet<&str> = list.iter().filter_map(|i| i["svid_serial"].as_str()).collect();
    assert_eq!(serials.len(), 3, "{health}");

    // `agents act`: each agent presents its own SVID to the document service, which here admits
    // only the frontend, so it answers 403 naming the agent's SPIFFE ID.
    for agent in AGENTS {
        let out = tokio::process::Command::new(&exe)
            .args(["act", "--agent", agent, "--user-token", "not-checked-yet", "--doc", "DOC-001"])
            .env("SPIFFE_ENDPOINT_SOCKET", socket(&lab))
            .env("ZT_TRUST_DOMAIN", TD)
            .env("ZT_DOCUMENT_URL", format!("https://127.0.0.1:{doc_port}"))
            .env("ZT_SVID_WAIT_SECS", "20")
            .env("RUST_LOG", "warn")
            .output()
            .await
            .expect("run agents act");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{agent}: a non-2xx answer exits 1: {stdout} {stderr}");
        let outcome: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{agent}: {e}: {stdout}"));
        let me = format!("spiffe://{TD}/agent/{agent}");
        assert_eq!(outcome["status"], 403, "{outcome}");
        assert_eq!(outcome["spiffe_id"], me.as_str(), "{outcome}");
        assert_eq!(outcome["url"], format!("https://127.0.0.1:{doc_port}/v1/documents/DOC-001"), "{outcome}");
        assert_eq!(outcome["body"]["peer"], me.as_str(), "the document service saw {outcome}");
        let msg = outcome["body"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(&format!("SPIFFE ID {me} is not authorized")), "{outcome}");
    }

    // Delete summarizer's entry while the runtime runs: its source has no identity any more
    // (never another agent's SVID), and /healthz turns 503 naming it.
    let paths = lab.site_paths("a").expect("site");
    zt_runtime::spire::server_cli(&paths, &["entry", "delete", "-entryID", "bootstrap.agents-summarizer"])
        .await
        .expect("entry delete");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (code, body) = loop {
        let got = zt_runtime::health::http_get(ops, "/healthz").await.expect("healthz answers");
        if got.0 == 503 || tokio::time::Instant::now() >= deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(code, 503, "{body}");
    let health: Value = serde_json::from_str(&body).expect("json");
    let reason = health["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(&format!("summarizer (spiffe://{TD}/agent/summarizer)")), "{health}");
    let states: Vec<&str> =
        health["identities"].as_array().expect("list").iter().map(|i| i["status"].as_str().unwrap_or("")).collect();
    assert_eq!(states, ["ok", "ok", "unhealthy"], "{health}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_agent_entry_stops_the_runtime_and_is_named() {
    zt_tls::install_crypto_provider();
    let dir = state_dir();
    let lab = Lab::up(spec(&dir, vec![site("a", TD, true)]), true).await.expect("lab");
    let exe = lab.install_binary("agents-two", &bin("agents")).expect("install");
    register_agents(&lab, "agents-two", &exe, &["gpt4", "claude"]).await;

    let run = tokio::process::Command::new(&exe)
        .env("SPIFFE_ENDPOINT_SOCKET", socket(&lab))
        .env("ZT_TRUST_DOMAIN", TD)
        .env("ZT_OPS_ADDR", "127.0.0.1:0")
        .env("ZT_SVID_WAIT_SECS", "8")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run).await.expect("agents exits by itself").expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("did not issue spiffe://{TD}/agent/summarizer")), "{stderr}");
    // It lists what it was issued (both entries are synced by then: the agent syncs every 1 s).
    for issued in ["gpt4", "claude"] {
        assert!(stderr.contains(&format!("spiffe://{TD}/agent/{issued}")), "{stderr}");
    }
    assert!(stderr.contains("/bin/agents-two"), "the error names the executable: {stderr}");
}
