//! The presenter's walkthrough on a real lab: `scripts/demo.sh --auto` runs every scenario of the
//! catalogue (`demo/scenarios.toml`) through `ztlab demo run` and shows the evidence; the runner's
//! JSON gives the nine delegation cases with their decisions; and a catalogue with deliberately
//! wrong expectations fails (exit 1) while leaving the normal RBAC policy installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::applab::{AppLab, AppLabOptions};
use serde_json::Value;
use zt_scenarios::{BUILTIN, Catalogue, Decision};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs the built `ztlab` with `args` against `state`: (exit code, stdout, stderr).
fn ztlab(state: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(e2e::bin("ztlab")).arg("--state-dir").arg(state).args(args).output().expect("run ztlab");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_of(what: &str, stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{what}: not JSON ({e}):\n{stdout}"))
}

/// The built-in catalogue with two wrong expectations (the RBAC denial expected to pass; Bob
/// expected to read DOC-001) and a scenario that denies and never allows again.
fn wrong_catalogue() -> String {
    // Only the first three scenarios: the drills are slow, and checked by the walkthrough.
    let end = BUILTIN.find("[[scenario]]\nid = \"rotation\"").expect("the rotation scenario");
    let wrong = BUILTIN[..end].replacen("expect = \"rbac\"", "expect = \"ok\"", 1);
    let bob = "n = 2\nuser = \"bob\"\ndoc = \"DOC-001\"\nexpect = \"denied\"";
    assert!(wrong.contains(bob), "the catalogue's case 2 changed; update this test");
    let wrong = wrong.replacen(bob, "n = 2\nuser = \"bob\"\ndoc = \"DOC-001\"\nexpect = \"granted\"", 1);
    assert_ne!(wrong, BUILTIN[..end]);
    format!(
        "{wrong}\n[[scenario]]\nid = \"deny-only\"\ntitle = \"Deny, and wrongly expect ok\"\nnarration = \"n\"\n\
         expected = \"e\"\n[[scenario.step]]\naction = \"rbac\"\nmode = \"deny-frontend\"\n\
         [[scenario.step]]\naction = \"run-demo\"\nexpect = \"ok\"\n"
    )
}

/// What a shim of a test-only command prints.
const TEST_ONLY: &str = "only ./scripts/test.sh installs";

/// The machine as `./scripts/setup.sh` leaves it: a view of the infrastructure cache without
/// the entries only the test command installs, and a PATH whose test-only commands fail loudly.
/// The list comes from `scripts/install-infra.sh --list-test-only`.
struct SetupOnly {
    _dir: tempfile::TempDir,
    cache: PathBuf,
    path: std::ffi::OsString,
}

impl SetupOnly {
    fn new() -> Self {
        let out = Command::new(repo().join("scripts/install-infra.sh")).arg("--list-test-only").output().expect("run");
        assert!(out.status.success(), "install-infra.sh --list-test-only: {}", String::from_utf8_lossy(&out.stderr));
        let list = String::from_utf8_lossy(&out.stdout).into_owned();
        let hidden: Vec<PathBuf> = list.lines().filter_map(|l| l.strip_prefix("cache ")).map(PathBuf::from).collect();
        let commands: Vec<&str> = list.lines().filter_map(|l| l.strip_prefix("command ")).collect();
        assert!(!hidden.is_empty() && !commands.is_empty(), "nothing listed as test-only:\n{list}");
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = dir.path().join("cache");
        std::fs::create_dir(&cache).expect("mkdir");
        let real = zt_runtime::binaries::cache_dir();
        for e in std::fs::read_dir(&real).expect("the infrastructure cache").flatten() {
            if !hidden.iter().any(|h| h.file_name() == Some(e.file_name().as_os_str())) {
                std::os::unix::fs::symlink(e.path(), cache.join(e.file_name())).expect("symlink");
            }
        }
        let shims = dir.path().join("bin");
        std::fs::create_dir(&shims).expect("mkdir");
        for c in commands {
            let shim = shims.join(c);
            std::fs::write(&shim, format!("#!/bin/sh\necho \"{c}: {TEST_ONLY}\" >&2\nexit 127\n")).expect("shim");
            std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        }
        let mut path = shims.into_os_string();
        path.push(":");
        path.push(std::env::var_os("PATH").unwrap_or_default());
        SetupOnly { _dir: dir, cache, path }
    }
}

#[test]
fn demo_sh_walks_every_scenario_and_wrong_expectations_fail() {
    let catalogue = Catalogue::builtin().expect("catalogue");
    // Short-lived SVIDs and database credentials, so that rotation shows within the scenarios'
    // windows (20 s: SPIRE and the backend rotate at about 10 s).
    let lab =
        AppLab::start(AppLabOptions { x509_ttl_secs: 20, db_ttl_secs: 20, db_rotate_at: 0.5, ..Default::default() });
    let state = lab.state();

    // The walkthrough, unattended: every scenario, the drills included, with what only the test
    // command installs hidden (as after ./scripts/setup.sh on a new machine).
    let setup_only = SetupOnly::new();
    let walk = std::time::Instant::now();
    let out = Command::new(repo().join("scripts/demo.sh"))
        .args(["--auto", "--state-dir"])
        .arg(state)
        .env("ZTLAB", e2e::bin("ztlab"))
        .env("ZT_CACHE", &setup_only.cache)
        .env("PATH", &setup_only.path)
        .output()
        .expect("run demo.sh");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "demo.sh --auto failed:\n{text}");
    assert!(!text.contains(TEST_ONLY), "the walkthrough used a tool only the test command installs:\n{text}");
    eprintln!("demo.sh --auto over {} scenarios took {:?}", catalogue.scenario.len(), walk.elapsed());
    assert!(walk.elapsed() < std::time::Duration::from_secs(300), "the walk is too slow for a demo:\n{text}");
    for s in &catalogue.scenario {
        let line = format!("PASS  {:<12} {}", s.id, s.title);
        assert!(text.contains(&line), "{} not reported as passed ({line:?}):\n{text}", s.id);
        assert!(text.contains(&format!("PASS {}  (", s.id)), "{}: no runner verdict:\n{text}", s.id);
    }
    // No verdict says FAIL (the narration and the drills' live states may say FAILED).
    assert!(!text.contains("FAIL  ") && !text.lines().any(|l| l.starts_with("FAIL ")), "{text}");
    assert!(!text.contains('\x1b'), "no colours when stdout is not a terminal:\n{text}");
    // The evidence, from the real tools.
    for evidence in [
        "Selector                : unix:path:",       // spire-server entry show
        "URI:spiffe://ztlab.test/ns/demo/sa/backend", // openssl on the backend's SVID
        "http.inbound.rbac.denied: ",                 // Envoy's admin stats
        "application_name=backend SSL enabled (protocol=TLSv1.3", // PostgreSQL's log
        "spiffe://ztlab.test/agent/gpt4 → DOC-003  allow=false  (gpt4 lacks admin)", // document's log
        "requests ",                                  // rotation: the live counter
        "0 failures in ",                             // rotation: the outcome
        "envoy-frontend (SDS)",                       // rotation: the serials watched
        "SELECT count(*) FROM pg_roles WHERE rolname = ", // openbao: the old role, checked
        "repositories, fixture",                      // github
        "entry.create",                               // entries: the audit trail
        "entry.delete",
        "spire-server entry show -entryID ", // entries: on both servers
        "FAILED (attempts ",                 // failure-drills: site b retries
        "(SPIRE server down)",               // failure-drills: cached SVIDs
        "restarted spire-server-a",
        "Server is healthy.",       // spire-server healthcheck
        "SPIRE server unavailable", // failure-drills: why site b failed
        "[mutual auth]",            // network-policy: the matrix
        "live enforcement exists only on kind",
        "lease lookup <lease_id>", // bao lease lookup, with the lease-reader token
        "issue_time",
        "ns/demo/sa/backend  read secret/data/github/jake", // OpenBao's audit log: who read the token
        "ns/demo/sa/backend  read database/creds/backend",  // and the database credentials
        "revoked lease database/creds/backend/",            // revoke-credentials: the drill
        "lease-revoker  update sys/leases/revoke/database/creds/backend/", // audited, narrow token
        "PostgreSQL rejected the database credentials",     // the backend's log
        "old role gone",
    ] {
        assert!(text.contains(evidence), "no {evidence:?} in the walkthrough:\n{text}");
    }
    assert!(
        text.lines().any(|l| l.trim_start().starts_with("id ") && l.contains("database/creds/backend/")),
        "bao lease lookup shows the backend's lease:\n{text}"
    );

    // The lease-reader token looks leases up and can do nothing else.
    let reader: Value = serde_json::from_str(
        &std::fs::read_to_string(state.join("openbao/lease-reader.json")).expect("lease-reader.json"),
    )
    .expect("json");
    let (token, addr) = (reader["token"].as_str().expect("token"), reader["addr"].as_str().expect("addr"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let get = |path: &str| rt.block_on(e2e::applab::http_json("GET", &format!("{addr}{path}"), None, Some(token)));
    let (status, body) = get("/v1/auth/token/lookup-self");
    assert_eq!(status, 200, "the token is valid (control): {body}");
    assert_eq!(body["data"]["policies"], serde_json::json!(["default", "lease-reader"]), "{body}");
    let (status, body) = get("/v1/database/creds/backend");
    assert_eq!(status, 403, "the lease reader cannot get database credentials: {body}");
    let (status, body) = get("/v1/secret/data/github/jake");
    assert_eq!(status, 403, "nor read KV: {body}");
    let mode = std::fs::metadata(state.join("openbao/lease-reader.json")).expect("meta").permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);

    // The delegation matrix as JSON: nine cases, each with its decision, reason and caller.
    let (code, stdout, stderr) = ztlab(state, &["demo", "run", "delegation", "-o", "json"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let run = json_of("demo run delegation", &stdout);
    assert_eq!(run["passed"], true, "{run:#}");
    let checks = run["scenarios"][0]["checks"].as_array().expect("checks");
    let cases = &catalogue.get("delegation").expect("delegation").case;
    assert_eq!(checks.len(), 9, "{run:#}");
    for (c, got) in cases.iter().zip(checks) {
        let want = match c.expect {
            Decision::Granted => "granted",
            Decision::Denied => "denied",
        };
        assert_eq!(got["n"], c.n, "{got}");
        assert_eq!(got["kind"], "case", "{got}");
        assert_eq!(got["observed"], want, "case {}: {got}", c.n);
        // Denied by the policy: 403. Without a user the document service refuses before opa: 401.
        let status = match (c.expect, &c.user) {
            (Decision::Granted, _) => 200,
            (Decision::Denied, None) => 401,
            (Decision::Denied, Some(_)) => 403,
        };
        assert_eq!(got["status"], status, "case {}: {got}", c.n);
        assert_eq!(got["passed"], true, "case {}: {got}", c.n);
        if let Some(because) = &c.because {
            assert!(got["reason"].as_str().unwrap_or_default().contains(because.as_str()), "case {}: {got}", c.n);
        }
        let caller = got["caller_spiffe_id"].as_str().unwrap_or_default();
        let want_caller = match &c.agent {
            Some(a) => format!("spiffe://ztlab.test/agent/{a}"),
            None => "spiffe://ztlab.test/ns/demo/sa/frontend".to_owned(),
        };
        assert_eq!(caller, want_caller, "case {}: {got}", c.n);
    }

    // Wrong expectations fail (exit 1), each where it is wrong, and the normal policy stays.
    let file = lab.state().join("wrong-scenarios.toml");
    std::fs::write(&file, wrong_catalogue()).expect("write catalogue");
    let file = file.display().to_string();
    let (code, stdout, stderr) = ztlab(state, &["demo", "run", "--all", "--catalogue", &file, "-o", "json"]);
    assert_eq!(code, 1, "wrong expectations must fail:\n{stdout}{stderr}");
    let run = json_of("demo run --all (wrong)", &stdout);
    assert_eq!(run["passed"], false);
    let scenario = |id: &str| -> Value {
        run["scenarios"].as_array().and_then(|a| a.iter().find(|s| s["id"] == id)).cloned().expect(id)
    };
    let failed = |id: &str| -> Vec<u64> {
        let s = scenario(id);
        s["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .filter(|c| c["passed"] == false)
            .map(|c| c["n"].as_u64().unwrap_or(0))
            .collect()
    };
    assert_eq!(scenario("run-demo")["passed"], true, "{run:#}");
    assert_eq!(failed("envoy-rbac"), [2], "only the wrong step fails: {run:#}");
    let step2 = &scenario("envoy-rbac")["checks"][1];
    assert_eq!(step2["observed"], "rbac", "{step2}");
    assert!(step2["reason"].as_str().unwrap_or_default().contains("RBAC: denied for spiffe://"), "{step2}");
    assert_eq!(failed("delegation"), [2], "only the wrong case fails: {run:#}");
    assert_eq!(scenario("delegation")["checks"][1]["observed"], "denied");
    assert_eq!(failed("deny-only"), [2], "{run:#}");
    assert!(scenario("deny-only")["rbac_restored"].is_string(), "allow-frontend put back: {run:#}");
    let (_, shown, _) = ztlab(state, &["policy", "rbac", "show"]);
    assert!(shown.starts_with("allow-frontend"), "the normal policy after a failed scenario: {shown}");

    // demo.sh reports the same failure, and exits non-zero.
    let out = Command::new(repo().join("scripts/demo.sh"))
        .args(["--auto", "--scenario", "delegation", "--catalogue", &file, "--state-dir"])
        .arg(state)
        .env("ZTLAB", e2e::bin("ztlab"))
        .output()
        .expect("run demo.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("FAIL  case 2") && text.contains("FAIL  delegation"), "{text}");
}

#[test]
fn no_lab_and_unknown_ids_are_errors() {
    let dir = e2e::state_dir();
    let (code, _, stderr) = ztlab(dir.path(), &["demo", "run", "--all"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(&format!("no lab at {}: run ./scripts/setup.sh", dir.path().display())), "{stderr}");
    let (code, _, stderr) = ztlab(dir.path(), &["demo", "show", "nope"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("run-demo, envoy-rbac, delegation"), "the known ids: {stderr}");
    let (code, stdout, _) = ztlab(dir.path(), &["demo", "list", "-o", "json"]);
    assert_eq!(code, 0);
    let listed: Catalogue = serde_json::from_str(&stdout).expect("the catalogue as JSON");
    assert_eq!(listed, Catalogue::builtin().expect("builtin"));
    let out = Command::new(repo().join("scripts/demo.sh"))
        .args(["--auto", "--state-dir"])
        .arg(dir.path())
        .env("ZTLAB", e2e::bin("ztlab"))
        .output()
        .expect("run demo.sh");
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}
