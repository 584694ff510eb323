//! `ztlab` as a process, with input it must refuse before it needs a lab: each refusal names
//! what is wrong, once, and nothing is contacted.

use std::process::{Command, Output};

/// Runs `ztlab` with a state dir that holds no lab.
fn ztlab(args: &[&str]) -> (Output, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_ztlab"))
        .arg("--state-dir")
        .arg(dir.path())
        .args(args)
        .env_remove("ZT_TOKEN")
        .env_remove("ZT_SERVER")
        .env_remove("ZT_CA_BUNDLE")
        .env_remove("ZT_STATE_DIR")
        .output()
        .expect("run ztlab");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stderr)
}

const ID: &str = "spiffe://ztlab.test/ns/dev/sa/api";
const NODE: &str = "spiffe://ztlab.test/ztlab/nodes/local";

/// `entries create` of a valid entry under `parent`, plus `extra`.
fn entry<'a>(parent: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["entries", "create", "--spiffe-id", ID, "--parent-id", parent, "--site", "a"];
    v.extend_from_slice(&["--selector", "unix:uid:1000"]);
    v.extend_from_slice(extra);
    v
}

#[test]
fn a_missing_lab_is_said_once() {
    let (out, err) = ztlab(&["status"]);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("has `ztlab up` run?"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    let (out, err) = ztlab(&["logs", "entry-manager"]);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

#[test]
fn a_bad_time_names_its_flag_and_says_why_once() {
    let (out, err) = ztlab(&["audit", "list", "--since", "20x6-01-01T00:00:00Z"]);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--since") && err.contains("RFC 3339"), "{err}");
    assert_eq!(err.matches("could not be parsed").count(), 1, "{err}");
}

#[test]
fn impossible_limits_name_the_flag() {
    for list in ["entries", "audit"] {
        let (out, err) = ztlab(&[list, "list", "--limit", "-1"]);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("'--limit <N>'") && err.contains("use 0 (all) or a positive number"), "{err}");
    }
}

/// Negative numbers reach validation (no `=` needed); an entry that is its own parent or
/// repeats a selector is refused naming the field, before any server is needed.
#[test]
fn bad_entries_are_refused_naming_the_field() {
    let (out, err) = ztlab(&entry(NODE, &["--x509-svid-ttl", "-5"]));
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.starts_with("error: entry.x509_svid_ttl: -5 s is out of range"), "{err}");
    let (out, err) = ztlab(&entry(NODE, &["--selector", "unix:uid:1000"]));
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end(), "error: entry.selectors[1]: duplicate of selectors[0]");
    let (out, err) = ztlab(&entry(ID, &[]));
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.starts_with("error: entry.parent_id: ") && err.contains("own parent"), "{err}");
}
