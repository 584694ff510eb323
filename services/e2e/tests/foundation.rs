//! Foundation: real SPIRE sites, SVIDs through the Workload API, and mTLS between `document`
//! and `opa` with rotation and failures. Every test runs its own lab (real `spire-server`,
//! `spire-agent` and ztlab binaries) in a temp dir; they run in parallel.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use e2e::{Probe, bin, lab_with_opa, pem, service, site, spec, state_dir};
use zt_identity::Rule;
use zt_runtime::Error;
use zt_runtime::lab::Lab;

const DOC: &str = "/ns/demo/sa/document";

fn init() {
    zt_tls::install_crypto_provider();
}

/// Registers this test binary at `site` as `path` and returns its Workload API endpoint.
async fn register_self(lab: &Lab, site: &str, name: &str, path: &str) -> String {
    let exe = std::env::current_exe().expect("exe");
    lab.register(site, name, path, &exe, 0).await.expect("register test binary");
    format!("unix://{}", lab.workload_socket(site).expect("socket").display())
}

/// A lab of one site, `a` of ztlab.test, with this test binary registered as `/ns/test/sa/e2e`
/// under `name`: its state dir, the lab and the Workload API endpoint.
async fn lab_with_self(name: &str) -> (tempfile::TempDir, Lab, String) {
    init();
    let dir = state_dir();
    let lab = Lab::up(spec(&dir, vec![site("a", "ztlab.test", true)]), true).await.expect("lab");
    let endpoint = register_self(&lab, "a", name, "/ns/test/sa/e2e").await;
    (dir, lab, endpoint)
}

#[tokio::test(flavor = "multi_thread")]
async fn workload_api_issues_x509_and_jwt_svids() {
    let (_dir, _lab, endpoint) = lab_with_self("e2e-svid").await;

    let svid = zt_tls::source::check_identity(&endpoint, Duration::from_secs(20)).await.expect("X.509-SVID");
    let info = zt_tls::CertInfo::from_der(svid.cert_chain()[0].as_bytes()).expect("parse");
    assert_eq!(info.spiffe_id, "spiffe://ztlab.test/ns/test/sa/e2e");
    // The site default TTL is 300 s.
    assert!((250..=301).contains(&info.seconds_left()), "SVID lifetime {}", info.seconds_left());

    let jwt = zt_tls::source::fetch_jwt_svid(&endpoint, "ztlab-e2e").await.expect("JWT-SVID");
    assert_eq!(jwt.spiffe_id().to_string(), "spiffe://ztlab.test/ns/test/sa/e2e");
    assert_eq!(jwt.audience(), ["ztlab-e2e".to_string()]);
    // The token verifies offline against the JWT bundle from the same Workload API, and only
    // for its audience.
    let client = spiffe::WorkloadApiClient::connect_to(&endpoint).await.expect("client");
    let bundles = client.fetch_jwt_bundles().await.expect("JWT bundles");
    spiffe::JwtSvid::parse_and_validate(jwt.token(), &bundles, &["ztlab-e2e"]).expect("valid JWT-SVID");
    assert!(spiffe::JwtSvid::parse_and_validate(jwt.token(), &bundles, &["someone-else"]).is_err());
}

/// Writes an X.509-SVID as PEM files for curl.
fn write_pem(dir: &Path, name: &str, svid: &spiffe::X509Svid) -> (String, String) {
    let certs: String = svid.cert_chain().iter().map(|c| pem("CERTIFICATE", c.as_bytes())).collect();
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, certs).expect("write cert");
    std::fs::write(&key, pem("PRIVATE KEY", svid.private_key().as_bytes())).expect("write key");
    (cert.display().to_string(), key.display().to_string())
}

/// `curl` to opa with an optional client certificate, not checking the server (so that only
/// opa's side of the handshake is under test). Returns curl's exit code and the body.
async fn curl(port: u16, client: Option<(&str, &str)>) -> (i32, String) {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-sk", "--max-time", "10", &format!("https://127.0.0.1:{port}/v1/peer")]);
    if let Some((cert, key)) = client {
        cmd.args(["--cert", cert, "--key", key]);
    }
    let out = cmd.output().await.expect("curl");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn mtls_matrix() {
    init();
    let dir = state_dir();
    // a: the lab's trust domain on the shared root. b: another trust domain with its own root.
    // c: the same trust domain name as a, but its own root (the sites do not share a root).
    let sites = vec![site("a", "ztlab.test", true), site("b", "other.test", false), site("c", "ztlab.test", false)];
    let (lab, opa) = lab_with_opa(&dir, sites, 0).await;

    // 1. The allowed ID succeeds.
    let (ok, err, code) = Probe::new("document", "a", Some(DOC)).run(&lab, opa).await;
    assert_eq!((code, ok.failed, ok.ok), (0, 0, 1), "document → opa must succeed: {ok:?} {err}");
    assert_eq!(ok.spiffe_id_seen_by_opa.as_deref(), Some("spiffe://ztlab.test/ns/demo/sa/document"));

    // 2. Another ID of the same trust domain is refused, and told why.
    let (denied, _, code) = Probe::new("intruder", "a", Some("/ns/demo/sa/intruder")).run(&lab, opa).await;
    assert_eq!((code, denied.ok, denied.failed), (1, 0, 1), "{denied:?}");
    let msg = &denied.errors[0];
    assert!(msg.contains("403"), "{msg}");
    assert!(msg.contains("spiffe://ztlab.test/ns/demo/sa/intruder is not authorized"), "{msg}");
    assert!(msg.contains("only spiffe://ztlab.test/ns/demo/sa/document is allowed"), "{msg}");

    // 3. Valid SVIDs from sites that do not share a's root are refused at the handshake, even
    //    when the SPIFFE ID is the allowed one. curl presents them; it does not check opa.
    let files = tempfile::tempdir().expect("tmp");
    for s in ["a", "b", "c"] {
        register_self(&lab, s, "e2e-matrix", DOC).await;
    }
    let mut pems = Vec::new();
    for s in ["a", "b", "c"] {
        let endpoint = format!("unix://{}", lab.workload_socket(s).expect("socket").display());
        let svid = zt_tls::source::check_identity(&endpoint, Duration::from_secs(20)).await.expect("svid");
        pems.push(write_pem(files.path(), s, &svid));
    }
    // Control: the same method with site a's SVID works, so refusals below are about trust.
    let (code, body) = curl(opa, Some((&pems[0].0, &pems[0].1))).await;
    assert_eq!(code, 0, "site a SVID via curl: {body}");
    assert!(body.contains("spiffe://ztlab.test/ns/demo/sa/document"), "{body}");
    for (i, s) in ["b (other.test)", "c (ztlab.test, own root)"].iter().enumerate() {
        let (cert, key) = &pems[i + 1];
        let (code, body) = curl(opa, Some((cert, key))).await;
        assert_ne!(code, 0, "site {s} SVID must be refused, got {body}");
        assert!(body.is_empty(), "no HTTP answer expected for site {s}: {body}");
    }

    // 4. No client certificate: refused at the handshake, and opa's log says so.
    let (code, body) = curl(opa, None).await;
    assert_ne!(code, 0, "no client certificate must be refused: {body}");
    let log = std::fs::read_to_string(lab.log_path("opa").expect("log")).expect("read log");
    assert!(log.contains("the client presented no certificate"), "opa log lacks the reason:\n{log}");
    assert!(log.contains("not trusted here"), "opa log lacks the untrusted-chain reason");
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_under_load_has_no_failures() {
    init();
    let dir = state_dir();
    // opa and the caller both get 20 s X.509-SVIDs; the agent rotates at half life.
    let (lab, opa) = lab_with_opa(&dir, vec![site("a", "ztlab.test", true)], 20).await;
    let probe = Probe { x509_ttl: 20, duration: Duration::from_secs(45), ..Probe::new("document", "a", Some(DOC)) };
    let (report, err, code) = probe.run(&lab, opa).await;
    assert_eq!(code, 0, "{report:?} {err}");
    assert_eq!(report.failed, 0, "failures during rotation: {:?}", report.errors);
    assert!(report.requests > 200, "too few requests: {}", report.requests);
    // At least two rotations: three distinct serials seen by opa.
    assert!(report.serials_seen_by_opa.len() >= 3, "serials seen by opa: {:?}", report.serials_seen_by_opa);
}

#[tokio::test(flavor = "multi_thread")]
async fn spire_server_down_services_keep_serving_on_cached_svids() {
    init();
    let dir = state_dir();
    let (mut lab, opa) = lab_with_opa(&dir, vec![site("a", "ztlab.test", true)], 0).await;
    // Register the caller and let it get its SVID while the server is up.
    let warm = Probe::new("document", "a", Some(DOC)).run(&lab, opa).await;
    assert_eq!(warm.0.failed, 0, "{warm:?}");

    // Stop the server; a new caller process starts and calls for 60 s on the agent's cache.
    lab.stop_component("spire-server-a").await;
    assert!(!lab.process("spire-server-a").expect("known").expect("started").is_alive());
    let probe = Probe { duration: Duration::from_secs(60), ..Probe::new("document", "a", None) };
    let (report, err, code) = probe.run(&lab, opa).await;
    assert_eq!(code, 0, "calls failed with the SPIRE server down: {report:?} {err}");
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert!(report.requests > 300, "too few requests: {}", report.requests);
    let health = zt_runtime::health::http_get(lab.spec().workloads[0].ops_port, "/healthz").await;
    assert_eq!(health.map(|h| h.0), Some(200), "opa must stay healthy on its cached SVID");
}

#[tokio::test(flavor = "multi_thread")]
async fn unregistered_workload_gets_no_svid_and_is_told_so() {
    init();
    let dir = state_dir();
    let (lab, opa) = lab_with_opa(&dir, vec![site("a", "ztlab.test", true)], 0).await;
    let probe = Probe { svid_wait_secs: 3, ..Probe::new("stranger", "a", None) };
    let (report, err, code) = probe.run(&lab, opa).await;
    assert_eq!(code, 2, "{report:?} {err}");
    assert_eq!(report.requests, 0);
    assert!(err.contains("issued no X.509-SVID to this workload"), "{err}");
    assert!(err.contains("no registration entry matches its selectors"), "{err}");
    assert!(err.contains("/bin/stranger"), "the error names the executable: {err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_config_is_refused_and_leaves_nothing_running() {
    init();
    // Invalid values name the field; nothing is created.
    let dir = state_dir();
    let mut bad = spec(&dir, vec![site("A_1", "ztlab.test", true)]);
    let err = Lab::up(bad.clone(), true).await.expect_err("bad site name");
    assert!(err.to_string().contains("sites[0].name"), "{err}");
    bad.sites = vec![site("a", "spiffe://ztlab.test", true)];
    let err = Lab::up(bad, true).await.expect_err("bad trust domain");
    assert!(err.to_string().contains("sites[0].trust_domain"), "{err}");
    assert!(!dir.path().join("lab.json").exists(), "nothing may be written for an invalid spec");

    // A pinned SPIRE server port that is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let mut s = spec(&dir, vec![site("a", "ztlab.test", true)]);
    s.sites[0].server_port = Some(port);
    let err = Lab::up(s, true).await.expect_err("port taken");
    assert!(
        matches!(err, Error::PortTaken { ref field, port: p } if field == "sites[0].server_port" && p == port),
        "{err}"
    );

    // A workload port that is taken: refused before anything starts.
    let mut s = spec(&dir, vec![site("a", "ztlab.test", true)]);
    let (mut opa, _) = e2e::service("opa", "opa", "a", "/ns/demo/sa/opa", 0);
    opa.ports.insert("listen".into(), port);
    s.workloads.push(opa);
    let err = Lab::up(s, true).await.expect_err("port taken");
    assert!(err.to_string().contains("workloads[0].ports.listen (opa)"), "{err}");
    assert!(!dir.path().join("lab.json").exists(), "nothing may start when a port is taken");

    // A bad Workload API socket path: opa exits with a clear error, and the lab stops
    // everything this attempt started.
    let mut s = spec(&dir, vec![site("a", "ztlab.test", true)]);
    let (mut opa, _) = e2e::service("opa", "opa", "a", "/ns/demo/sa/opa", 0);
    opa.env.insert("ZT_SPIFFE_ENDPOINT_SOCKET".into(), "/nonexistent/spire/agent.sock".into());
    s.workloads.push(opa);
    let err = Lab::up(s, true).await.expect_err("bad socket");
    let text = err.to_string();
    assert!(text.contains("opa did not become ready"), "{text}");
    assert!(text.contains("/nonexistent/spire/agent.sock does not exist"), "{text}");
    let lab = Lab::open(dir.path()).expect("lab.json records the attempt");
    for name in lab.component_names() {
        if let Some(rec) = lab.process(&name).expect("known") {
            assert!(!rec.is_alive(), "{name} (pid {}) was left running", rec.pid);
        }
    }

    // An unknown component is named, with the ones that exist.
    let err = lab.log_path("postgres").expect_err("unknown");
    assert!(err.to_string().contains("unknown component \"postgres\""), "{err}");
    assert!(err.to_string().contains("spire-server-a, spire-agent-a, opa"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_services_see_the_peer_spiffe_id() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

    let (_dir, _lab, endpoint) = lab_with_self("e2e-grpc").await;
    let source = zt_tls::source::connect(&endpoint, Duration::from_secs(20)).await.expect("source");
    let td = zt_identity::parse_trust_domain("td", "ztlab.test").expect("td");
    let me = "spiffe://ztlab.test/ns/test/sa/e2e";

    // Serve the standard health service, guarded by `authorized_peer`.
    async fn serve(source: &zt_tls::X509Source, td: &zt_identity::TrustDomain, allowed: &str) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server =
            zt_tls::MtlsServer::grpc(source, td, Arc::new(Rule::exact(allowed).expect("rule"))).expect("server");
        let (_reporter, health) = tonic_health::server::health_reporter();
        let guard = tonic::service::InterceptorLayer::new(|req: tonic::Request<()>| {
            zt_tls::server::authorized_peer(&req)?;
            Ok(req)
        });
        let incoming = server.incoming(listener);
        tokio::spawn(
            tonic::transport::Server::builder().layer(guard).add_service(health).serve_with_incoming(incoming),
        );
        port
    }
    let allowed = serve(&source, &td, me).await;
    let refusing = serve(&source, &td, "spiffe://ztlab.test/ns/demo/sa/document").await;
    let any_server = Arc::new(Rule::member_of("ztlab.test").expect("rule"));

    let channel = zt_tls::client::grpc_channel(&source, &td, any_server.clone(), &format!("127.0.0.1:{allowed}"))
        .expect("channel");
    let resp =
        HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await.expect("health check");
    assert_eq!(resp.into_inner().status(), ServingStatus::Serving);

    let channel =
        zt_tls::client::grpc_channel(&source, &td, any_server, &format!("127.0.0.1:{refusing}")).expect("channel");
    let status =
        HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(status.message().contains(&format!("SPIFFE ID {me} is not authorized")), "{}", status.message());

    // The client checks the server's SPIFFE ID too: a server that is not the expected one is refused.
    let only_doc = Arc::new(Rule::exact("spiffe://ztlab.test/ns/demo/sa/document").expect("rule"));
    let channel =
        zt_tls::client::grpc_channel(&source, &td, only_doc, &format!("127.0.0.1:{allowed}")).expect("channel");
    assert!(HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn ztlab_cli_up_status_logs_down() {
    let dir = state_dir();
    let port = || zt_runtime::ports::free_port().expect("port").to_string();
    let config = dir.path().join("lab.toml");
    std::fs::write(
        &config,
        format!(
            "[[sites]]\nname = \"a\"\n[[sites]]\nname = \"b\"\n\
             [services.opa]\nlisten = {}\nops = {}\n[services.document]\nlisten = {}\nops = {}\n\
             [entry_management]\nsite = \"a\"\nlisten = {}\noperator = {}\nops = {}\n\
             [entry_management.agent_ops]\na = {}\nb = {}\n[openbao]\nport = {}\n",
            port(),
            port(),
            port(),
            port(),
            port(),
            port(),
            port(),
            port(),
            port(),
            port()
        ),
    )
    .expect("config");
    let ztlab = |args: &[&str]| {
        let mut cmd = std::process::Command::new(bin("ztlab"));
        cmd.args(args).arg("--state-dir").arg(dir.path()).env("RUST_BACKTRACE", "0").env_remove("RUST_LOG");
        cmd.output().expect("run ztlab")
    };
    let cfg = config.display().to_string();
    let out = ztlab(&["up", "--config", &cfg]);
    assert!(out.status.success(), "ztlab up failed: {}", String::from_utf8_lossy(&out.stderr));
    // Its progress and logs go to a pipe here: plain text, no terminal colours.
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("starting") && !text.contains('\x1b'), "no colours into a pipe:\n{text}");
    // From here on, make sure the lab is stopped even if an assertion fails.
    let _down = Lab::open(dir.path()).map(DownOnDrop);

    let out = ztlab(&["status", "--output", "json"]);
    assert!(out.status.success(), "status: {}", String::from_utf8_lossy(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let rows = status.as_array().expect("array");
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().expect("name")).collect();
    assert_eq!(
        names,
        [
            "postgres-mgmt",
            "spire-server-a",
            "spire-agent-a",
            "spire-server-b",
            "spire-agent-b",
            "openbao",
            "entry-manager",
            "site-agent-a",
            "site-agent-b",
            "opa",
            "document"
        ]
    );
    assert!(rows.iter().all(|r| r["health"] == "healthy"), "{status:#}");
    let doc = &rows[10];
    assert_eq!(doc["spiffe_id"], "spiffe://ztlab.test/ns/demo/sa/document");
    assert!(doc["svid_seconds_left"].as_i64().is_some_and(|s| s > 0), "{doc}");
    let pids: Vec<u64> = rows.iter().filter_map(|r| r["pid"].as_u64()).collect();

    // Idempotent: a second `up` starts nothing new.
    let out = ztlab(&["up", "--config", &cfg]);
    assert!(out.status.success());
    let again: serde_json::Value = serde_json::from_slice(&ztlab(&["status", "-o", "json"]).stdout).expect("json");
    let pids2: Vec<u64> = again.as_array().expect("array").iter().filter_map(|r| r["pid"].as_u64()).collect();
    assert_eq!(pids, pids2, "a second `ztlab up` must not restart anything");

    // opa and document were registered through the entry-management API, not the SPIRE CLI.
    let out = ztlab(&["entries", "list", "--output", "json"]);
    assert!(out.status.success(), "entries list: {}", String::from_utf8_lossy(&out.stderr));
    let entries: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let ids: Vec<&str> =
        entries.as_array().expect("array").iter().map(|e| e["spiffe_id"].as_str().expect("id")).collect();
    // The whole built-in catalogue, whether or not this lab runs each workload.
    assert_eq!(&ids[..2], ["spiffe://ztlab.test/ns/demo/sa/opa", "spiffe://ztlab.test/ns/demo/sa/document"]);
    assert_eq!(ids.len(), 11, "{ids:?}");
    assert!(
        entries.as_array().expect("array").iter().all(|e| e["site_status"]
            .as_array()
            .expect("status")
            .iter()
            .all(|s| s["state"] == "SYNCED"))
    );
    let out = ztlab(&[
        "entries",
        "create",
        "--spiffe-id",
        "spiffe://ztlab.test/a/../b",
        "--parent-id",
        "spiffe://ztlab.test/p",
        "--selector",
        "unix:uid:1",
        "--site",
        "a",
    ]);
    assert_eq!(out.status.code(), Some(2));
    // Refused by the API's own rules before anything is sent.
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("error: entry.spiffe_id: "),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A person logs in through OpenBao (OIDC) and acts with the role of their group.
    let out = ztlab(&["login", "viewer"]);
    assert!(out.status.success(), "login: {}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let out = ztlab(&["whoami", "--token", &token]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "oidc:viewer (Viewer)",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ztlab(&[
        "entries",
        "create",
        "--token",
        &token,
        "--spiffe-id",
        "spiffe://ztlab.test/ns/x",
        "--parent-id",
        "spiffe://ztlab.test/ztlab/nodes/local",
        "--selector",
        "unix:uid:1",
        "--site",
        "a",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("PermissionDenied: oidc:viewer (role Viewer) may not call CreateEntry"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = ztlab(&["status"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("COMPONENT"), "{table}");
    assert!(table.contains("spiffe://ztlab.test/ns/demo/sa/opa"), "{table}");

    let out = ztlab(&["logs", "opa", "-n", "5"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"target\""), "opa logs are JSON lines");
    let out = ztlab(&["logs", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown component \"nope\""));

    let out = ztlab(&["down"]);
    assert!(out.status.success());
    assert!(!out.stderr.contains(&0x1b) && !out.stdout.contains(&0x1b), "no colours into a pipe");
    for pid in pids {
        assert!(zt_runtime::process::start_time(pid as u32).is_none(), "pid {pid} still running after down");
    }
    let out = ztlab(&["status"]);
    assert_eq!(out.status.code(), Some(1), "status must fail when the lab is down");
}

struct DownOnDrop(Lab);
impl Drop for DownOnDrop {
    fn drop(&mut self) {
        let _ = self.0.down_blocking();
    }
}

/// The document service (issue 5): a caller holding a valid SVID from another trust domain is
/// refused at the handshake, even with an allowed SPIFFE ID path; the same caller with an SVID of
/// the lab's trust domain reaches the service (and gets its answer about the missing user token).
#[tokio::test(flavor = "multi_thread")]
async fn document_refuses_callers_from_another_trust_domain() {
    init();
    let dir = state_dir();
    let mut spec = spec(&dir, vec![site("a", "ztlab.test", true), site("b", "other.test", false)]);
    let (opa, opa_port) = service("opa", "opa", "a", "/ns/demo/sa/opa", 0);
    let (mut document, doc_port) = service("document", "document", "a", DOC, 0);
    document.env.insert("ZT_OPA_URL".into(), format!("https://127.0.0.1:{opa_port}"));
    spec.workloads = vec![opa, document];
    let lab = Lab::up(spec, true).await.unwrap_or_else(|e| panic!("lab did not start: {e}"));
    let frontend = "/ns/demo/sa/frontend";
    let files = tempfile::tempdir().expect("tmp");
    let mut pems = Vec::new();
    for s in ["a", "b"] {
        register_self(&lab, s, "e2e-doc", frontend).await;
        let endpoint = format!("unix://{}", lab.workload_socket(s).expect("socket").display());
        let svid = zt_tls::source::check_identity(&endpoint, Duration::from_secs(20)).await.expect("svid");
        pems.push(write_pem(files.path(), s, &svid));
    }
    let url = format!("https://127.0.0.1:{doc_port}/v1/documents/DOC-001");
    let get = |pem: &(String, String)| {
        let (cert, key, url) = (pem.0.clone(), pem.1.clone(), url.clone());
        async move {
            let out = tokio::process::Command::new("curl")
                .args(["-sk", "--max-time", "10", "--cert", &cert, "--key", &key, &url])
                .output()
                .await
                .expect("curl");
            (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
        }
    };
    let (code, body) = get(&pems[0]).await;
    assert_eq!(code, 0, "spiffe://ztlab.test{frontend} reaches the document service: {body}");
    assert!(body.contains("user"), "and is told about the user token it lacks: {body}");
    let (code, body) = get(&pems[1]).await;
    assert_ne!(code, 0, "spiffe://other.test{frontend} must be refused at the handshake: {body}");
    assert!(body.is_empty(), "no HTTP answer for another trust domain: {body}");
}
