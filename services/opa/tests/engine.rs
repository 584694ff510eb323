//! The policies through the Rust engine (regorus), in process: the nine scenarios, edge
//! inputs, and reloading (a change is picked up; a broken set keeps the last good one).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use opa::scenarios::{DECISION_PATH, NINE};
use opa::{DataPath, Policy, PolicyError, PolicyStore, ReloadOutcome};
use serde_json::{Value, json};

fn policy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/rego")
}

fn decide(policy: &Policy, input: Value) -> Value {
    policy.eval(&DataPath::parse(DECISION_PATH), Some(input)).expect("eval").expect("a decision")
}

/// A copy of the repository's policies in a temp dir.
fn copy_policies() -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for e in std::fs::read_dir(from).expect("read dir") {
            let e = e.expect("entry");
            let target = to.join(e.file_name());
            if e.file_type().expect("type").is_dir() {
                copy(&e.path(), &target);
            } else {
                std::fs::copy(e.path(), target).expect("copy");
            }
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    copy(&policy_dir(), dir.path());
    dir
}

/// Writes `text` to `path` so that its fingerprint surely changes (mtime granularity).
fn rewrite(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
    let later = std::time::SystemTime::now() + Duration::from_secs(1);
    std::fs::File::options().write(true).open(path).expect("open").set_modified(later).expect("mtime");
}

#[test]
fn nine_scenarios() {
    let policy = Policy::load(&policy_dir()).expect("load");
    for s in NINE {
        assert_eq!(decide(&policy, s.input("ztlab.test")), s.expected(), "{}", s.title());
    }
}

#[test]
fn edge_inputs() {
    let policy = Policy::load(&policy_dir()).expect("load");
    let cases = [
        (json!({}), json!({"allow": false, "reason": "no caller SPIFFE ID in the request"})),
        (
            json!({"caller_spiffe_id": "spiffe://ztlab.test/ns/demo/sa/backend", "user": "alice", "document": "DOC-001"}),
            json!({"allow": false, "reason": "caller spiffe://ztlab.test/ns/demo/sa/backend may not read documents"}),
        ),
        (
            json!({"caller_spiffe_id": "spiffe://other.test/agent/gpt4", "user": "alice", "document": "DOC-001"}),
            json!({"allow": false, "reason": "caller spiffe://other.test/agent/gpt4 may not read documents"}),
        ),
        (
            json!({"caller_spiffe_id": "spiffe://ztlab.test/agent/gpt4", "user": "alice", "agent": "claude", "document": "DOC-001"}),
            json!({"allow": false, "reason": "agent claude in the request does not match the caller spiffe://ztlab.test/agent/gpt4"}),
        ),
        (
            json!({"caller_spiffe_id": "spiffe://ztlab.test/agent/gpt4", "user": "alice", "document": "DOC-001"}),
            json!({"allow": true, "reason": "alice and gpt4 have engineering"}),
        ),
        (
            json!({"caller_spiffe_id": "spiffe://ztlab.test/ns/demo/sa/frontend", "user": "mallory", "agent": null, "document": "DOC-001"}),
            json!({"allow": false, "reason": "unknown user mallory"}),
        ),
        (
            json!({"caller_spiffe_id": "spiffe://ztlab.test/ns/demo/sa/frontend", "user": "alice", "agent": null, "document": "DOC-404"}),
            json!({"allow": false, "reason": "unknown document DOC-404"}),
        ),
        (
            json!({"caller_spiffe_id": "spiffe://ztlab.test/agent/summarizer", "user": "carol", "agent": "summarizer", "document": "DOC-003"}),
            json!({"allow": false, "reason": "carol and summarizer lack admin"}),
        ),
    ];
    for (input, want) in cases {
        assert_eq!(decide(&policy, input.clone()), want, "input {input}");
    }
    // No input at all: `input` is undefined.
    let none = policy.eval(&DataPath::parse(DECISION_PATH), None).expect("eval");
    assert_eq!(none, Some(json!({"allow": false, "reason": "no caller SPIFFE ID in the request"})));
}

#[test]
fn data_api_paths() {
    let policy = Policy::load(&policy_dir()).expect("load");
    // A missing rule or package is undefined (the API then answers `{}`).
    assert_eq!(policy.eval(&DataPath::parse("ztlab/documents/nope"), None).expect("eval"), None);
    assert_eq!(policy.eval(&DataPath::parse("nope/nothing"), None).expect("eval"), None);
    // Data documents, a package, and the root.
    let alice = policy.eval(&DataPath::parse("ztlab/directory/users/alice"), None).expect("eval");
    assert_eq!(alice, Some(json!({"departments": ["engineering", "finance"]})));
    let doc = policy.eval(&DataPath::parse("ztlab/directory/documents/DOC-003"), None).expect("eval");
    assert_eq!(doc, Some(json!({"department": "admin"})));
    let package = policy.eval(&DataPath::parse("ztlab/documents"), Some(NINE[4].input("ztlab.test"))).expect("eval");
    assert_eq!(package.expect("package")["decision"], NINE[4].expected());
    let root = policy.eval(&DataPath::parse(""), None).expect("eval").expect("root");
    assert_eq!(root["ztlab"]["directory"]["trust_domain"], "ztlab.test");
}

#[test]
fn test_files_are_not_loaded() {
    let dir = copy_policies();
    std::fs::write(dir.path().join("ztlab/broken_test.rego"), "package broken_test\n\nthis is not rego").expect("w");
    let policy = Policy::load(dir.path()).expect("tests are skipped");
    assert!(policy.files().iter().all(|f| !f.ends_with("_test.rego")), "{:?}", policy.files());
    assert_eq!(policy.files(), ["data.json", "ztlab/documents.rego"]);
}

#[test]
fn load_errors_name_the_file() {
    let empty = tempfile::tempdir().expect("tempdir");
    assert!(matches!(Policy::load(empty.path()), Err(PolicyError::NoPolicies(_))));
    let missing = Policy::load(&empty.path().join("missing")).expect_err("missing dir");
    assert!(missing.to_string().contains("missing"), "{missing}");

    let dir = copy_policies();
    rewrite(&dir.path().join("data.json"), "{ not json");
    let err = Policy::load(dir.path()).expect_err("bad data");
    assert!(matches!(err, PolicyError::Data { .. }), "{err:?}");
    assert!(err.to_string().contains("data.json"), "{err}");
}

#[test]
fn reload_picks_up_a_change() {
    let dir = copy_policies();
    let store = PolicyStore::open(dir.path()).expect("open");
    let bob = NINE[1];
    assert_eq!(decide(&store.current(), bob.input("ztlab.test")), bob.expected());
    assert!(matches!(store.check(), ReloadOutcome::Unchanged));

    // Give bob engineering.
    let data_file = dir.path().join("data.json");
    let text = std::fs::read_to_string(&data_file).expect("read");
    let mut data: Value = serde_json::from_str(&text).expect("json");
    data["ztlab"]["directory"]["users"]["bob"]["departments"] = json!(["finance", "admin", "engineering"]);
    rewrite(&data_file, &data.to_string());
    assert!(matches!(store.check(), ReloadOutcome::Reloaded { .. }));
    assert_eq!(
        decide(&store.current(), bob.input("ztlab.test")),
        json!({"allow": true, "reason": "bob has engineering"})
    );

    // A new module is picked up too.
    rewrite(&dir.path().join("extra.rego"), "package extra\n\nanswer := 42\n");
    assert!(matches!(store.check(), ReloadOutcome::Reloaded { .. }));
    assert_eq!(store.current().eval(&DataPath::parse("extra/answer"), None).expect("eval"), Some(json!(42)));
    assert!(matches!(store.check(), ReloadOutcome::Unchanged));
}

#[test]
fn broken_policy_keeps_the_last_good_one() {
    let dir = copy_policies();
    let store = PolicyStore::open(dir.path()).expect("open");
    let module = dir.path().join("ztlab/documents.rego");
    let good = std::fs::read_to_string(&module).expect("read");
    // Serving through the store records the requests it replays against a new set.
    let check_nine = |store: &PolicyStore| {
        for s in NINE {
            let got = store.eval(&DataPath::parse(DECISION_PATH), Some(s.input("ztlab.test"))).expect("eval");
            assert_eq!(got, Some(s.expected()), "{}", s.title());
        }
    };
    check_nine(&store);

    // 1. A syntax error.
    rewrite(&module, &good.replace("default decision :=", "default decision = = "));
    match store.check() {
        ReloadOutcome::Failed(PolicyError::Rego { path, .. }) => assert!(path.ends_with("ztlab/documents.rego")),
        other => panic!("expected a Rego error, got {other:?}"),
    }
    check_nine(&store);
    // Reported once: the same broken files are not retried.
    assert!(matches!(store.check(), ReloadOutcome::Unchanged));

    // 2. Parses, but calls a function that does not exist: found when the rules are evaluated
    //    without input at load time ...
    rewrite(&module, &good.replace("deny(reason) :=", "deny(reason) := no_such_function(reason)\n\nunused(reason) :="));
    let err = match store.check() {
        ReloadOutcome::Failed(e) => e.to_string(),
        other => panic!("an unknown function must be refused, got {other:?}"),
    };
    assert!(err.contains("no_such_function"), "{err}");
    check_nine(&store);
    // ... or, when only some inputs reach it, when the recent requests are replayed.
    rewrite(
        &module,
        &good.replace("grant(reason) :=", "grant(reason) := no_such_function(reason)\n\nunused(reason) :="),
    );
    let err = match store.check() {
        ReloadOutcome::Failed(e) => e.to_string(),
        other => panic!("an unknown function on the grant path must be refused, got {other:?}"),
    };
    assert!(err.contains("no_such_function"), "{err}");
    check_nine(&store);

    // 3. Bad data.
    rewrite(&module, &good);
    rewrite(&dir.path().join("data.json"), "[]");
    assert!(matches!(store.check(), ReloadOutcome::Failed(PolicyError::Data { .. })));
    check_nine(&store);

    // 4. Fixed: reloads.
    let original = std::fs::read_to_string(policy_dir().join("data.json")).expect("read");
    rewrite(&dir.path().join("data.json"), &original);
    assert!(matches!(store.check(), ReloadOutcome::Reloaded { .. }));
    check_nine(&store);
}

#[tokio::test(flavor = "multi_thread")]
async fn watcher_reloads_by_itself() {
    let dir = copy_policies();
    let store = Arc::new(PolicyStore::open(dir.path()).expect("open"));
    let watcher = store.watch(Duration::from_millis(100));
    let module = dir.path().join("ztlab/documents.rego");
    let good = std::fs::read_to_string(&module).expect("read");
    rewrite(&module, &good.replace("\"%s has %s\"", "\"%s may read (%s)\""));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = decide(&store.current(), NINE[0].input("ztlab.test"));
        if got["reason"] == "alice may read (engineering)" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no reload within 10 s: {got}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    watcher.abort();
}
