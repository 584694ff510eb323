//! Tests of the policies page: the three sections from the repository, escaping, the stream.

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

use std::path::Path;
use std::time::Duration;

use axum::http::StatusCode;
use zt_runtime::app::{AppPaths, RbacMode};

use super::cilium::{flows, reachability_table};
use super::rbac::{rbac_section, sum, who_words};
use super::rego::{departments_table, directory};
use super::*;
use crate::Config;
use crate::error::Failure;

async fn get(state_dir: &Path, path: &str) -> (StatusCode, String, String) {
    let mut state = Config { state_dir: state_dir.to_path_buf(), ..Config::default() }.state().expect("state");
    let cookie = crate::auth::testing::sign_in(&mut state, "jake");
    let req = Request::builder().uri(path).header("cookie", cookie).body(Body::empty()).expect("request");
    let resp = crate::router(state).oneshot(req).await.expect("answer");
    let status = resp.status();
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, ct, String::from_utf8(bytes.to_vec()).expect("utf8"))
}

fn text_of(page: &str, id: &str) -> String {
    let start = page.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id}"));
    let rest = &page[start..];
    let open = rest.find('>').expect(">") + 1;
    let close = rest[open..].find('<').expect("<");
    rest[open..open + close].to_owned()
}

#[tokio::test]
async fn the_page_shows_the_three_layers_from_the_repository() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = AppPaths::new(dir.path());
    zt_runtime::app::write_rbac(&paths, "ztlab.test", RbacMode::AllowFrontend).expect("rbac");
    let (status, ct, page) = get(dir.path(), "/policies").await;
    assert_eq!(status, StatusCode::OK);
    assert!(ct.starts_with("text/html"), "{ct}");
    assert!(page.contains("aria-current=\"page\">Policies"), "nav marks policies");
    assert!(page.contains("id=\"whoami\">jake<"), "signed in");
    // 1. Envoy RBAC: the mode, the allowed ID in words, the installed file.
    assert_eq!(text_of(&page, "rbac-mode"), "allow-frontend");
    assert!(
        text_of(&page, "rbac-who").starts_with("Only spiffe://ztlab.test/ns/demo/sa/frontend may call the backend")
    );
    assert!(
        text_of(&page, "rbac-policy")
            .contains("principal_name: { exact: &quot;spiffe://ztlab.test/ns/demo/sa/frontend&quot; }")
    );
    assert!(page.contains("ztlab policy rbac deny-frontend") && page.contains("href=\"/scenarios/envoy-rbac\""));
    // No lab.json here: the counters say why, in an error box, and the page still renders.
    assert!(page.contains("cannot read the lab state"), "counters error box");
    assert!(crate::assets::linked(&page).contains("zt.follow(\"/events/policies\""));
    // 2. Rego: the policy source and the department table.
    assert!(page.contains("id=\"rego\""));
    assert!(page.contains("package ztlab.documents"), "documents.rego is shown");
    assert!(!page.contains("documents_test.rego"), "tests are not policy");
    let table = &page[page.find("id=\"departments\"").expect("departments")..];
    let table = &table[..table.find("</table>").expect("end")];
    assert!(table.contains("<th scope=\"row\">alice</th><td>user</td>"), "{table}");
    assert!(table.contains("spiffe://ztlab.test/agent/claude"), "{table}");
    assert!(table.contains("✓ yes") && table.contains("✗ no"));
    assert!(page.contains("DOC-003"));
    // 3. Cilium: the note, the YAMLs and the matrix.
    assert!(page.contains("id=\"cilium\""));
    assert!(page.contains(
        "Enforced only on kind (Cilium with SPIRE mutual auth); the local runtime does not enforce these — it shows them."
    ));
    assert!(page.contains("10-frontend.yaml") && page.contains("kind: CiliumNetworkPolicy"));
    let m = &page[page.find("id=\"reachability\"").expect("matrix")..];
    let cell = &m[m.find("data-from=\"frontend\" data-to=\"backend\"").expect("frontend→backend")..];
    let cell = &cell[..cell.find("</td>").expect("td")];
    assert!(cell.contains("✓ TCP 10443 · mutual auth") && cell.contains("✗ TCP 8090, 9090"), "{cell}");
    assert!(m.contains("data-from=\"world\" data-to=\"postgres\""));
}

#[tokio::test]
async fn deny_mode_says_nobody() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = AppPaths::new(dir.path());
    zt_runtime::app::write_rbac(&paths, "ztlab.test", RbacMode::DenyFrontend).expect("rbac");
    let (_, _, page) = get(dir.path(), "/policies").await;
    assert_eq!(text_of(&page, "rbac-mode"), "deny-frontend");
    assert!(text_of(&page, "rbac-who").starts_with("Nobody may call the backend"));
    let v = rbac_view(dir.path()).await;
    assert_eq!(v.mode.as_deref(), Some("deny-frontend"));
    assert!(v.principals.is_empty());
    // The SSE JSON has what the script reads.
    let json = serde_json::to_value(&v).expect("json");
    for key in ["mode", "who", "policy", "file", "allowed", "denied", "counters", "error", "counters_error"] {
        assert!(json.get(key).is_some(), "{key}");
    }
}

#[tokio::test]
async fn the_event_stream_is_behind_the_login_and_streams() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = Config { state_dir: dir.path().to_path_buf(), ..Config::default() }.state().expect("state");
    let req = Request::builder().uri("/events/policies").body(Body::empty()).expect("request");
    let resp = crate::router(state).oneshot(req).await.expect("answer");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let mut state = Config { state_dir: dir.path().to_path_buf(), ..Config::default() }.state().expect("state");
    let cookie = crate::auth::testing::sign_in(&mut state, "jake");
    let req = Request::builder().uri("/events/policies").header("cookie", cookie).body(Body::empty()).expect("req");
    let resp = crate::router(state).oneshot(req).await.expect("answer");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"].to_str().unwrap_or_default().starts_with("text/event-stream"));
    let mut body = resp.into_body();
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame()).await.expect("in time");
    let data = frame.expect("frame").expect("ok").into_data().expect("data");
    let text = String::from_utf8_lossy(&data);
    assert!(text.starts_with("data: {") && text.contains("\"mode\":null"), "{text}");
    assert!(text.contains("no RBAC policy is installed"), "{text}");
}

#[tokio::test]
async fn missing_files_give_error_boxes() {
    let state = tempfile::tempdir().expect("tempdir");
    let root = tempfile::tempdir().expect("root");
    let page = page(None, state.path(), root.path()).await;
    assert_eq!(text_of(&page, "rbac-mode"), "none installed");
    let boxes = page.matches("class=\"error-box\"").count();
    // RBAC file, counters (no lab), data.json, rego, reachability.toml, the YAML dir.
    assert_eq!(boxes, 6, "{page}");
    assert!(page.contains("no RBAC policy is installed for the backend's Envoy"));
    assert!(page.contains("set ZT_ROOT to one"));
    assert!(page.contains("id=\"rego\"") && page.contains("id=\"cilium\""), "sections still render");
    // Malformed files: say what does not parse.
    std::fs::create_dir_all(root.path().join("policies/rego")).expect("mkdir");
    std::fs::write(root.path().join("policies/rego/data.json"), "{").expect("write");
    std::fs::create_dir_all(root.path().join("infrastructure/kind")).expect("mkdir");
    std::fs::write(root.path().join("infrastructure/kind/reachability.toml"), "[[flow]]\nfrom = \"a\"\nport = 1\n")
        .expect("write");
    let page = super::page(None, state.path(), root.path()).await;
    assert!(page.contains("does not give the directory: it is not JSON"), "{page}");
    assert!(page.contains("flow[0].to is missing"), "{page}");
}

#[test]
fn values_are_escaped() {
    let d = directory(
        r#"{"ztlab":{"directory":{"trust_domain":"td","users":{"<b>eve</b>":{"departments":["x&y"]}},
           "agents":{},"documents":{"<i>":{"department":"x&y"}}}}}"#,
    )
    .expect("directory");
    let t = departments_table(&d);
    let t = t.into_string();
    assert!(t.contains("&lt;b&gt;eve&lt;/b&gt;") && t.contains("x&amp;y") && t.contains("&lt;i&gt;"), "{t}");
    assert!(!t.contains("<b>eve"));
    let m = reachability_table(&flows("[[flow]]\nfrom = \"<a>\"\nto = \"b\"\nport = 1\nallowed = true\n").expect("f"))
        .into_string();
    assert!(m.contains("&lt;a&gt;") && !m.contains("<a>"), "{m}");
    let v = RbacView {
        mode: Some("allow-frontend".into()),
        file: "/x".into(),
        policy: Some("exact: \"<script>\"".into()),
        principals: vec!["<script>".into()],
        who: who_words(Some(RbacMode::AllowFrontend), &["<script>".into()]),
        error: None,
        counters: vec![Counter { name: "http.<x>.rbac.allowed".into(), value: 3 }],
        allowed: Some(3),
        denied: None,
        counters_from: None,
        counters_error: Some(Failure::new("<oops>", "<do>")),
    };
    let html = rbac_section(&v).into_string();
    assert!(!html.contains("<script>") && !html.contains("<oops>") && !html.contains("<x>"), "{html}");
    assert!(html.contains("&lt;script&gt;") && html.contains("&lt;oops&gt;"));
}

#[test]
fn envoy_stats_and_principals_parse() {
    let stats = "http.inbound.rbac.allowed: 4\nhttp.inbound.rbac.denied: 1\n\
                 http.inbound.rbac.shadow_allowed: 0\ncluster.x.upstream_rq: 9\n";
    let c = rbac_counters(stats);
    assert_eq!(c.len(), 3);
    assert_eq!((sum(&c, ".rbac.allowed"), sum(&c, ".rbac.denied")), (Some(4), Some(1)));
    assert_eq!(sum(&[], ".rbac.denied"), None);
    let p = principals(
        "# principal_name: { exact: \"spiffe://commented/out\" }\n\
         - authenticated: { principal_name: { exact: \"spiffe://ztlab.test/ns/demo/sa/frontend\" } }\n",
    );
    assert_eq!(p, ["spiffe://ztlab.test/ns/demo/sa/frontend"]);
}
