//! The `ztlab` CLI as a process against a real entry-manager (PostgreSQL, two SPIRE sites, the
//! OIDC provider): bad input is refused with an error that names what is wrong, in words, and
//! nothing is written; `--limit` means the same for every list and pages as needed.

use std::process::Command;

use e2e::{entry_lab, entry_lab_with, state_dir};
use zt_entry_api::pb;

/// Runs `ztlab --state-dir <lab> args`: (exit code, stdout, stderr).
fn ztlab(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(e2e::bin("ztlab"))
        .arg("--state-dir")
        .arg(dir)
        .args(args)
        .env_remove("ZT_TOKEN")
        .env_remove("ZT_SERVER")
        .env_remove("ZT_CA_BUNDLE")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run ztlab");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `ztlab … -o json` that must succeed: the rows of its JSON array.
fn rows(dir: &std::path::Path, args: &[&str]) -> usize {
    let (code, out, err) = ztlab(dir, &[args, &["-o", "json"]].concat());
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str::<serde_json::Value>(&out).expect("json").as_array().expect("array").len()
}

/// `ztlab args` must fail with exit code 2 and an error that starts with `starts`.
fn refused(dir: &std::path::Path, args: &[&str], starts: &str) -> String {
    let (code, _, err) = ztlab(dir, args);
    assert_eq!(code, 2, "{args:?} must fail: {err}");
    assert!(err.starts_with(&format!("error: {starts}")), "{args:?}: expected {starts:?}, got {err}");
    err
}

/// Borrowed arguments.
fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn spec(path: &str, sites: &[&str]) -> pb::EntrySpec {
    pb::EntrySpec {
        spiffe_id: format!("spiffe://ztlab.test{path}"),
        parent_id: "spiffe://ztlab.test/ztlab/nodes/local".into(),
        selectors: vec![pb::Selector { r#type: "unix".into(), value: format!("path:/opt{path}") }],
        site_ids: sites.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_in_words_and_writes_nothing() {
    zt_tls::install_crypto_provider();
    let dir = state_dir();
    let lab = entry_lab_with(&dir, 30, true).await;
    let dir = dir.path();

    // List filters that can match nothing are errors naming the filter, not empty lists.
    let filtered = "spiffe://ztlab.test/ns/filter/sa/x";
    lab.admin
        .entries()
        .create_entry(pb::CreateEntryRequest { entry: Some(spec("/ns/filter/sa/x", &["a"])) })
        .await
        .expect("create");
    refused(dir, &["entries", "list", "--spiffe-id", "not an id"], "InvalidArgument: filter.spiffe_id: ");
    refused(dir, &["entries", "list", "--parent-id", "spiffe://ztlab.test/a/"], "InvalidArgument: filter.parent_id: ");
    refused(dir, &["entries", "list", "--prefix", "/ns/filter"], "InvalidArgument: filter.spiffe_id_prefix: ");
    assert_eq!(rows(dir, &["entries", "list", "--spiffe-id", filtered]), 1);
    assert_eq!(rows(dir, &["entries", "list", "--prefix", "spiffe://ztlab.test/ns/filter/"]), 1);

    // IDs are called what they are.
    let err = refused(dir, &["keys", "revoke", "nope"], "InvalidArgument: id: ");
    assert!(err.contains("is not an API key ID") && !err.contains("entry"), "{err}");
    let err = refused(dir, &["entries", "get", "nope"], "InvalidArgument: id: ");
    assert!(err.contains("is not an entry ID"), "{err}");

    // A token that is neither an API key nor a JWT is said so in words.
    let err = refused(dir, &["--token", "garbage", "whoami"], "Unauthenticated: ");
    assert!(err.contains("not a JWT") && !err.contains("InvalidToken"), "{err}");

    let node = "spiffe://ztlab.test/ztlab/nodes/local";
    let create = |id: &'static str, parent: &'static str, extra: &[&'static str]| -> Vec<&'static str> {
        let mut v = vec!["entries", "create", "--spiffe-id", id, "--parent-id", parent, "--site", "a"];
        v.extend_from_slice(&["--selector", "unix:uid:1000"]);
        v.extend_from_slice(extra);
        v
    };

    // Entries: an entry that is its own parent, a repeated selector, a negative TTL given
    // without `=`: refused naming the field; in create, update and apply.
    let me = "spiffe://ztlab.test/ns/cli/sa/me";
    refused(dir, &create(me, me, &[]), "entry.parent_id: ");
    refused(dir, &create(me, node, &["--selector", "unix:uid:1000"]), "entry.selectors[1]: duplicate of selectors[0]");
    let err = refused(dir, &create(me, node, &["--x509-svid-ttl", "-5"]), "entry.x509_svid_ttl: -5 s is out of range");
    assert!(!err.contains("unexpected argument"), "{err}");
    let mine = ["entries", "list", "--prefix", "spiffe://ztlab.test/ns/cli/"];
    assert_eq!(rows(dir, &mine), 0, "nothing was written");

    let (code, out, err) = ztlab(dir, &[&create(me, node, &[])[..], &["-o", "json"]].concat());
    assert_eq!(code, 0, "a good entry is created: {err}");
    let created: serde_json::Value = serde_json::from_str(&out).expect("json");
    let id = created["id"].as_str().expect("id").to_owned();
    let update = |revision: &'static str, parent: &'static str, extra: &[&'static str]| -> Vec<String> {
        let mut v = vec!["entries", "update", &id, "--revision", revision, "--spiffe-id", me, "--parent-id", parent];
        v.extend_from_slice(&["--site", "a", "--selector", "unix:uid:1000"]);
        v.extend_from_slice(extra);
        v.into_iter().map(str::to_owned).collect()
    };
    refused(dir, &args(&update("1", me, &[])), "entry.parent_id: ");
    let dup = update("1", node, &["--selector", "unix:uid:1000"]);
    refused(dir, &args(&dup), "entry.selectors[1]: duplicate of selectors[0]");
    refused(dir, &args(&update("-1", node, &[])), "InvalidArgument: revision: ");
    let catalogue = dir.join("dup.toml");
    std::fs::write(
        &catalogue,
        format!(
            "[[entry]]\nspiffe_id = \"spiffe://ztlab.test/ns/cli/sa/batch\"\nparent_id = \"{node}\"\n\
             selectors = [\"unix:uid:7\", \"unix:uid:7\"]\nsites = [\"a\"]\n"
        ),
    )
    .expect("catalogue");
    refused(
        dir,
        &["entries", "apply", "-f", catalogue.to_str().expect("path")],
        "entry[0].selectors[1]: duplicate of selectors[0]",
    );
    let got = lab.admin.entries().get_entry(pb::GetEntryRequest { id: id.clone() }).await.expect("get").into_inner();
    assert_eq!(got.revision, 1, "no update was written");
    assert_eq!(rows(dir, &mine), 1, "nothing else was written");
}

/// `--limit N` means the same for every list: at most N rows, over as many pages as needed
/// (the server's pages hold up to 1000); 0 is all; impossible values name the flag.
#[tokio::test(flavor = "multi_thread")]
async fn limits_mean_the_same_for_every_list_and_page() {
    zt_tls::install_crypto_provider();
    let dir = state_dir();
    let lab = entry_lab(&dir, 30).await;
    let dir = dir.path();
    let before = rows(dir, &["entries", "list"]);
    let batch: Vec<pb::EntrySpec> = (0..1100).map(|i| spec(&format!("/ns/bulk/sa/w{i}"), &["a"])).collect();
    lab.admin
        .entries()
        .batch_create_entries(pb::BatchCreateEntriesRequest { entries: batch })
        .await
        .expect("batch create");
    let all = rows(dir, &["entries", "list"]);
    assert_eq!(all, before + 1100, "the default lists all");
    assert_eq!(rows(dir, &["entries", "list", "--limit", "0"]), all);
    assert_eq!(rows(dir, &["entries", "list", "--limit", "1050"]), 1050);
    assert_eq!(rows(dir, &["entries", "list", "--limit", "3"]), 3);
    let events = rows(dir, &["audit", "list", "--limit", "5000"]);
    assert!(events >= 1100, "every create is audited: {events}");
    assert_eq!(rows(dir, &["audit", "list", "--limit", "0"]), events);
    assert_eq!(rows(dir, &["audit", "list", "--limit", "1001"]), 1001);
    assert_eq!(rows(dir, &["audit", "list"]), 50, "the default is 50");
    for list in ["entries", "audit"] {
        let (code, _, err) = ztlab(dir, &[list, "list", "--limit", "-3"]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("--limit"), "{err}");
    }
}
