//! Document decisions end to end: a real SPIRE site, the `opa` service with the repository's
//! Rego policies, and the `document` binary asking over mTLS with its own SVID
//! (`document decide`). The nine scenarios of issue 5, the decision log, refusal of callers
//! other than the document service, and a policy reload in the running service.

use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::{bin, service, site, spec, state_dir};
use opa::scenarios::{NINE, Scenario};
use serde_json::Value;
use tempfile::TempDir;
use zt_runtime::lab::Lab;

const DOC: &str = "/ns/demo/sa/document";

fn policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/rego").canonicalize().expect("policies/rego")
}

/// A lab with site `a` and opa serving the policies in `policy_dir` (reloaded every 200 ms).
/// Returns the lab and opa's port.
async fn lab(dir: &TempDir, policy_dir: &Path) -> (Lab, u16) {
    zt_tls::install_crypto_provider();
    let mut spec = spec(dir, vec![site("a", "ztlab.test", true)]);
    let (mut opa, port) = service("opa", "opa", "a", "/ns/demo/sa/opa", 0);
    opa.env.insert("ZT_POLICY_DIR".into(), policy_dir.display().to_string());
    opa.env.insert("ZT_RELOAD_INTERVAL_MS".into(), "200".into());
    spec.workloads.push(opa);
    let lab = Lab::up(spec, true).await.unwrap_or_else(|e| panic!("lab did not start: {e}"));
    (lab, port)
}

/// The document binary installed as `name` and registered as `spiffe_path` at site `a`.
async fn caller(lab: &Lab, name: &str, spiffe_path: &str) -> PathBuf {
    let exe = lab.install_binary(name, &bin("document")).expect("install");
    lab.register("a", name, spiffe_path, &exe, 0).await.expect("register");
    exe
}

/// `document decide` from `exe`: (stdout, stderr, exit code).
async fn decide(
    lab: &Lab,
    exe: &Path,
    opa: u16,
    user: Option<&str>,
    agent: Option<&str>,
    doc: &str,
) -> (String, String, i32) {
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(["decide", "--doc", doc]);
    if let Some(u) = user {
        cmd.args(["--user", u]);
    }
    if let Some(a) = agent {
        cmd.args(["--agent", a]);
    }
    let out = cmd
        .env("SPIFFE_ENDPOINT_SOCKET", format!("unix://{}", lab.workload_socket("a").expect("socket").display()))
        .env("ZT_TRUST_DOMAIN", "ztlab.test")
        .env("ZT_OPA_URL", format!("https://127.0.0.1:{opa}"))
        .env("ZT_SVID_WAIT_SECS", "20")
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run document decide");
    (
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

async fn decide_scenario(lab: &Lab, exe: &Path, opa: u16, s: &Scenario) -> Value {
    let (out, err, code) = decide(lab, exe, opa, s.user, s.agent, s.document).await;
    assert_eq!(code, 0, "{}: document decide failed: {err}", s.title());
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{}: not JSON ({e}): {out}", s.title()))
}

/// The decision lines in opa's log.
fn decision_lines(lab: &Lab) -> Vec<Value> {
    let log = std::fs::read_to_string(lab.log_path("opa").expect("log")).expect("read opa log");
    log.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v["msg"] == "decision").collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn nine_scenarios_over_mtls() {
    let dir = state_dir();
    let (lab, opa) = lab(&dir, &policies()).await;
    let document = caller(&lab, "document", DOC).await;
    for s in NINE {
        assert_eq!(decide_scenario(&lab, &document, opa, &s).await, s.expected(), "{}", s.title());
    }

    // One decision line per call, with the caller (from its certificate), input, result and
    // reason.
    let lines = decision_lines(&lab);
    assert_eq!(lines.len(), NINE.len(), "{lines:#?}");
    for (line, s) in lines.iter().zip(NINE) {
        assert_eq!(line["caller_spiffe_id"], "spiffe://ztlab.test/ns/demo/sa/document", "{line}");
        assert_eq!(line["path"], "ztlab/documents/decision", "{line}");
        assert_eq!(line["input"], s.input("ztlab.test"), "{line}");
        assert_eq!(line["result"], s.expected(), "{line}");
        assert_eq!(line["reason"], s.reason, "{line}");
        assert_eq!(line["allow"], s.allow, "{line}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_document_may_ask_and_policies_reload() {
    let dir = state_dir();
    // opa serves a copy of the policies, edited below.
    let copy = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(copy.path().join("ztlab")).expect("mkdir");
    for f in ["data.json", "ztlab/documents.rego"] {
        std::fs::copy(policies().join(f), copy.path().join(f)).expect("copy");
    }
    let (lab, opa) = lab(&dir, copy.path()).await;

    // Callers with valid SVIDs of the trust domain, but not the document service: 403 with the
    // reason, and no decision is made.
    for (name, path) in [("intruder", "/ns/demo/sa/intruder"), ("gpt4", "/agent/gpt4")] {
        let exe = caller(&lab, name, path).await;
        let (out, err, code) = decide(&lab, &exe, opa, Some("alice"), Some("gpt4"), "DOC-001").await;
        assert_eq!(code, 1, "{name} must be refused: {out} {err}");
        assert!(err.contains("403"), "{name}: {err}");
        assert!(err.contains(&format!("spiffe://ztlab.test{path} is not authorized")), "{name}: {err}");
    }
    assert!(decision_lines(&lab).is_empty(), "refused callers must not get decisions");

    // The document service is answered; then a data change reaches the running service.
    let document = caller(&lab, "document", DOC).await;
    let bob = NINE[1];
    assert_eq!(decide_scenario(&lab, &document, opa, &bob).await, bob.expected());
    let data_file = copy.path().join("data.json");
    let mut data: Value = serde_json::from_str(&std::fs::read_to_string(&data_file).expect("read")).expect("json");
    data["ztlab"]["directory"]["users"]["bob"]["departments"] = serde_json::json!(["finance", "admin", "engineering"]);
    std::fs::write(&data_file, data.to_string()).expect("write");
    let want = serde_json::json!({"allow": true, "reason": "bob has engineering"});
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let got = decide_scenario(&lab, &document, opa, &bob).await;
        if got == want {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "opa did not reload within 15 s: {got}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A broken policy is refused; the last good one keeps answering.
    let module = copy.path().join("ztlab/documents.rego");
    let good = std::fs::read_to_string(&module).expect("read");
    std::fs::write(&module, good.replace("default decision :=", "default decision = = ")).expect("write");
    let log = lab.log_path("opa").expect("log");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !std::fs::read_to_string(&log).expect("log").contains("policy reload failed") {
        assert!(tokio::time::Instant::now() < deadline, "opa did not report the broken policy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(decide_scenario(&lab, &document, opa, &bob).await, want);
}
