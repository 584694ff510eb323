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
