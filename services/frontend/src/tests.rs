//! In-process tests of the frontend router. A local axum server on 127.0.0.1:0 plays the
//! frontend's Envoy (its outbound listener and its admin `/ready`), answering with the shapes
//! Envoy and the backend really produce; this checks the frontend's own mapping and plumbing.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::*;

/// What the fake Envoy answers, and what it saw.
#[derive(Debug, Clone)]
struct Script {
    status: u16,
    content_type: &'static str,
    body: String,
    ready: Option<(u16, &'static str)>,
    seen: Vec<(String, Option<String>, String)>,
}

type Shared = Arc<Mutex<Script>>;

fn script(status: u16, content_type: &'static str, body: impl Into<String>) -> Shared {
    Arc::new(Mutex::new(Script {
        status,
        content_type,
        body: body.into(),
        ready: Some((200, "LIVE\n")),
        seen: Vec::new(),
    }))
}

async fn fake_listener(State(s): State<Shared>, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let mut s = s.lock().expect("lock");
    let auth = parts.headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let target = format!("{} {}", parts.method, parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    s.seen.push((target, auth, String::from_utf8_lossy(&body).into_owned()));
    let status = StatusCode::from_u16(s.status).expect("status");
    (status, [("content-type", s.content_type)], s.body.clone()).into_response()
}

async fn fake_ready(State(s): State<Shared>) -> Response {
    let ready = s.lock().expect("lock").ready;
    match ready {
        Some((code, text)) => (StatusCode::from_u16(code).expect("status"), text).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Serves `router` on 127.0.0.1:0; returns its base URL.
async fn serve(router: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

/// A fake Envoy (listener and admin on one port) and the frontend's state pointing at it.
async fn envoy(shared: &Shared) -> AppState {
    let fake = Router::new().route("/ready", get(fake_ready)).fallback(any(fake_listener)).with_state(shared.clone());
    let base = serve(fake).await;
    state_for(&base, &base)
}

fn state_for(backend: &str, admin: &str) -> AppState {
    Config {
        backend_url: backend.into(),
        envoy_admin_url: admin.into(),
        request_timeout: Duration::from_secs(2),
        ..Config::default()
    }
    .state()
    .expect("state")
}

/// A base URL where nothing listens.
async fn closed() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}")
}

async fn call(state: AppState, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = router(state).oneshot(req.body(Body::from(body.to_owned())).expect("request")).await.expect("answer");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let value =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}

async fn run_demo_with(shared: &Shared) -> Value {
    let (status, report) = call(envoy(shared).await, "POST", "/api/run-demo", &[], "").await;
    assert_eq!(status, StatusCode::OK, "run-demo always answers 200: {report}");
    report
}

fn reasons(report: &Value) -> Vec<Value> {
    report["hops"].as_array().expect("hops").iter().map(|h| h["reason"].clone()).collect()
}

#[tokio::test]
async fn run_demo_success_reports_every_hop_with_evidence() {
    let body = json!({
        "envoy": {
            "xfcc": "By=spiffe://ztlab.test/ns/demo/sa/backend;Hash=9f;URI=spiffe://ztlab.test/ns/demo/sa/frontend",
            "client_spiffe_id": "spiffe://ztlab.test/ns/demo/sa/frontend",
            "server_spiffe_id": "spiffe://ztlab.test/ns/demo/sa/backend"
        },
        "postgres": {"client_spiffe_id": "spiffe://ztlab.test/ns/demo/sa/backend", "ssl_version": "TLSv1.3",
                     "cipher": "TLS_AES_256_GCM_SHA384", "db_user": "v-jwt-backend-x1"},
        "openbao": {"lease_id": "database/creds/backend/abc", "ttl_left_secs": 42, "lease_duration_secs": 60, "rotations": 1},
        "orders": [{"id": 1, "item": "widget"}]
    });
    let shared = script(200, "application/json", body.to_string());
    let report = run_demo_with(&shared).await;
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["took_ms"].is_u64(), "{report}");
    let hops = report["hops"].as_array().expect("hops");
    assert_eq!(hops.len(), 3);
    assert_eq!(hops[0]["evidence"]["client_spiffe_id"], "spiffe://ztlab.test/ns/demo/sa/frontend");
    assert_eq!(hops[0]["via"], "envoy (SDS mTLS + RBAC)");
    assert_eq!(hops[1]["evidence"]["ssl_version"], "TLSv1.3");
    assert_eq!(hops[2]["evidence"]["lease_id"], "database/creds/backend/abc");
    assert_eq!(shared.lock().expect("lock").seen[0].0, "GET /api/demo");
}

#[tokio::test]
async fn run_demo_rbac_denial_fails_the_first_hop() {
    let body = "RBAC: denied for spiffe://ztlab.test/ns/demo/sa/intruder";
    let report = run_demo_with(&script(403, "text/plain", body)).await;
    assert_eq!(report["ok"], false);
    assert_eq!(reasons(&report), [json!("rbac"), json!("skipped"), json!("skipped")]);
    assert_eq!(report["hops"][0]["error"], body);
    assert_eq!(report["hops"][0]["ok"], false);
}

#[tokio::test]
async fn run_demo_backend_down_behind_envoy() {
    let body = "upstream connect error or disconnect/reset before headers. reset reason: connection failure, \
                transport failure reason: delayed connect error: 111";
    let shared = script(503, "text/plain", body);
    let report = run_demo_with(&shared).await;
    assert_eq!(reasons(&report)[0], "backend_unreachable", "{report}");

    // The same reply while the local Envoy is still initializing.
    shared.lock().expect("lock").ready = Some((503, "PRE_INITIALIZING\n"));
    let report = run_demo_with(&shared).await;
    assert_eq!(reasons(&report)[0], "envoy_not_ready", "{report}");
    assert!(report["hops"][0]["error"].as_str().unwrap_or_default().contains("PRE_INITIALIZING"), "{report}");
}

#[tokio::test]
async fn run_demo_backend_errors_name_the_failing_hop() {
    let body = json!({"error": "connection to 127.0.0.1:5432 refused", "hop": "postgres", "reason": "database_down"});
    let report = run_demo_with(&script(503, "application/json", body.to_string())).await;
    assert_eq!(reasons(&report), [Value::Null, json!("database_down"), json!("skipped")], "{report}");
    assert_eq!(report["hops"][0]["ok"], true);
    assert_eq!(report["hops"][1]["error"], "connection to 127.0.0.1:5432 refused");
}

#[tokio::test]
async fn run_demo_without_envoy() {
    let state = state_for(&closed().await, &closed().await);
    let (status, report) = call(state, "POST", "/api/run-demo", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reasons(&report), [json!("envoy_not_ready"), json!("skipped"), json!("skipped")], "{report}");
    let error = report["hops"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("admin interface does not answer") && error.contains("cannot connect to"), "{error}");
}

#[tokio::test]
async fn readyz_follows_envoy_admin() {
    let shared = script(200, "text/plain", "");
    let (status, body) = call(envoy(&shared).await, "GET", "/readyz", &[], "").await;
    assert_eq!((status, body), (StatusCode::OK, json!({"ready": true, "envoy": "LIVE"})));

    shared.lock().expect("lock").ready = Some((503, "PRE_INITIALIZING\n"));
    let (status, body) = call(envoy(&shared).await, "GET", "/readyz", &[], "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["ready"], false);
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("envoy not ready: ") && reason.contains("PRE_INITIALIZING"), "{body}");

    let (status, body) = call(state_for(&closed().await, &closed().await), "GET", "/readyz", &[], "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["reason"].as_str().unwrap_or_default().starts_with("envoy not ready: "), "{body}");
}

#[tokio::test]
async fn index_has_a_labelled_run_button() {
    let mut state = state_for(&closed().await, &closed().await);
    let req = signed_get(&mut state, "/");
    let resp = router(state).oneshot(req).await.expect("answer");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"].to_str().unwrap_or_default().starts_with("text/html"));
    let html = String::from_utf8(resp.into_body().collect().await.expect("body").to_bytes().to_vec()).expect("utf8");
    assert!(html.contains(r#"<html lang="en">"#));
    assert!(html.contains(r#"<button id="run" type="button""#) && html.contains(">Run Demo</button>"), "{html}");
    let js = assets::linked(&html);
    assert!(js.contains(r#"fetch("/api/run-demo", { method: "POST""#));
    assert!(html.contains(r#"aria-live="polite""#));
    assert!(!html.contains("http://") && !html.contains("https://"), "no external resources");
    assert!(!js.contains("innerHTML"), "server text is inserted as text");
}

#[tokio::test]
async fn proxies_forward_method_path_body_and_authorization() {
    let shared = script(200, "application/json", r#"{"token":"t","user":"alice"}"#);
    let state = envoy(&shared).await;
    let (status, body) = call(
        state.clone(),
        "POST",
        "/api/login",
        &[("content-type", "application/json"), ("cookie", "not-forwarded")],
        r#"{"username":"alice","password":"pw"}"#,
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"token": "t", "user": "alice"})));
    for (method, path) in [("GET", "/api/orders?limit=5"), ("PUT", "/api/github/token"), ("GET", "/api/github/repos")] {
        call(state.clone(), method, path, &[("authorization", "Bearer abc")], "").await;
    }
    let seen = shared.lock().expect("lock").seen.clone();
    assert_eq!(seen[0], ("POST /api/login".into(), None, r#"{"username":"alice","password":"pw"}"#.into()));
    let rest: Vec<(&str, Option<&str>)> = seen[1..].iter().map(|(t, a, _)| (t.as_str(), a.as_deref())).collect();
    assert_eq!(
        rest,
        [
            ("GET /api/orders?limit=5", Some("Bearer abc")),
            ("PUT /api/github/token", Some("Bearer abc")),
            ("GET /api/github/repos", Some("Bearer abc"))
        ]
    );
}

#[tokio::test]
async fn proxies_pass_json_errors_and_wrap_envoy_replies() {
    let shared = script(401, "application/json", r#"{"error":"bad password"}"#);
    let state = envoy(&shared).await;
    let (status, body) = call(state.clone(), "POST", "/api/login", &[], "{}").await;
    assert_eq!((status, body), (StatusCode::UNAUTHORIZED, json!({"error": "bad password"})));

    {
        let mut s = shared.lock().expect("lock");
        s.status = 403;
        s.content_type = "text/plain";
        s.body = "RBAC: denied for spiffe://ztlab.test/x".into();
    }
    let (status, body) = call(state, "GET", "/api/orders", &[], "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body, json!({"error": "RBAC: denied for spiffe://ztlab.test/x", "reason": "rbac"}));

    let (status, body) = call(state_for(&closed().await, &closed().await), "GET", "/api/orders", &[], "").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["reason"], "envoy_not_ready", "{body}");
}

#[test]
fn config_defaults_and_durations() {
    let config = Config::default();
    assert_eq!(config.listen_addr, "127.0.0.1:8080");
    assert_eq!(config.backend_url, "http://127.0.0.1:10080");
    assert_eq!(config.envoy_admin_url, "http://127.0.0.1:15080");
    assert_eq!(config.request_timeout, Duration::from_secs(5));
    let json = serde_json::to_value(&config).expect("json");
    assert_eq!(json["request_timeout"], "5s");
    assert_eq!(json["trust_domain"], "ztlab.test", "workload settings are flattened");
    let parsed: Config = serde_json::from_value(json!({"request_timeout": "250ms"})).expect("humantime");
    assert_eq!(parsed.request_timeout, Duration::from_millis(250));
    let parsed: Config = serde_json::from_value(json!({"request_timeout": 3})).expect("seconds");
    assert_eq!(parsed.request_timeout, Duration::from_secs(3));
    let err = serde_json::from_value::<Config>(json!({"request_timeout": "soon"})).expect_err("bad");
    assert!(err.to_string().contains("not a duration"), "{err}");
    let bad = Config { backend_url: "https://127.0.0.1:1".into(), ..Config::default() };
    assert!(bad.state().expect_err("https").to_string().starts_with("backend_url:"));
    let zero = Config { request_timeout: Duration::ZERO, ..Config::default() };
    assert!(zero.state().expect_err("zero").to_string().starts_with("request_timeout:"));
}

fn component(name: &str, kind: &str, health: &str, id: Option<&str>, left: Option<i64>) -> ComponentStatus {
    ComponentStatus {
        name: name.into(),
        kind: serde_json::from_value(json!(kind)).expect("a kind"),
        site: "a".into(),
        pid: Some(42),
        health: serde_json::from_value(json!(health)).expect("a health"),
        spiffe_id: id.map(str::to_owned),
        svid_expires_at: None,
        svid_seconds_left: left,
        svid_serial: None,
        detail: None,
    }
}

use zt_runtime::lab::ComponentStatus;

/// A signed-in GET of `path` (the UI is behind the login).
fn signed_get(state: &mut AppState, path: &str) -> Request<Body> {
    let cookie = auth::testing::sign_in(state, "jake");
    Request::builder().uri(path).header("cookie", cookie).body(Body::empty()).expect("request")
}

async fn get_page(mut state: AppState, path: &str) -> (StatusCode, String) {
    let req = signed_get(&mut state, path);
    let resp = router(state).oneshot(req).await;
    let resp = resp.expect("answer");
    let status = resp.status();
    assert!(resp.headers()["content-type"].to_str().unwrap_or_default().starts_with("text/html"), "{path}");
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8(bytes.to_vec()).expect("utf8"))
}

async fn no_lab_state() -> (AppState, tempfile_dir::Dir) {
    let dir = tempfile_dir::Dir::new();
    let state = Config { state_dir: dir.0.clone(), ..Config::default() }.state().expect("state");
    (state, dir)
}

/// An empty temporary directory (removed when dropped).
mod tempfile_dir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Self {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!("frontend-test-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&p).expect("temp dir");
            Self(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn assert_layout(html: &str) {
    assert!(html.contains(r#"<html lang="en">"#), "{html}");
    for link in [r#"href="/dashboard""#, r#"href="/scenarios""#, r#"href="/""#] {
        assert!(html.contains(link), "nav has {link}");
    }
    assert!(!html.contains("http://") && !html.contains("https://"), "no external resources: {html}");
    assets::linked(html);
}

#[test]
fn dashboard_renders_every_component_with_health_via_and_countdown() {
    let list = vec![
        component("frontend", "workload", "healthy", Some("spiffe://ztlab.test/ns/demo/sa/frontend"), Some(250)),
        component("envoy-frontend", "envoy", "stopped", Some("spiffe://ztlab.test/ns/demo/sa/frontend"), None),
        component("spiffe-helper-backend", "spiffe-helper", "unhealthy", None, Some(12)),
        component("openbao", "openbao", "healthy", None, None),
    ];
    let html = ui::dashboard(Some("jake"), Ok(&list));
    assert_layout(&html);
    assert!(html.contains(r#"aria-current="page">Dashboard"#));
    for name in ["frontend", "envoy-frontend", "spiffe-helper-backend", "openbao"] {
        assert!(html.contains(&format!(r#"<tr data-name="{name}">"#)), "{name}: {html}");
    }
    assert!(html.contains("spiffe://ztlab.test/ns/demo/sa/frontend"));
    assert!(html.contains(r#"<span class="badge ok">✓ healthy</span>"#));
    assert!(html.contains(r#"<span class="badge bad">■ stopped</span>"#));
    assert!(html.contains(r#"<span class="badge bad">✗ unhealthy</span>"#));
    assert!(html.contains(r#"data-left="250""#) && html.contains(r#"data-left="12""#));
    assert!(assets::linked(&html).contains(r#"zt.follow("/events""#));
    assert!(!html.contains("error-box\" role"), "no error box when the state is read");
    let vias: Vec<&str> = list.iter().map(ui::svid_via).collect();
    assert_eq!(vias, ["native", "SDS", "helper", "—"]);
}

#[test]
fn values_are_escaped() {
    // (Kinds and health are enums: only names and free text can carry markup.)
    let mut evil = component("<script>x</script>", "workload", "healthy", Some("spiffe://a/<b>&"), None);
    evil.detail = Some("<img src=x onerror=alert(1)>".into());
    let html = ui::dashboard(None, Ok(std::slice::from_ref(&evil)));
    assert!(!html.contains("<script>x</script>") && !html.contains("<img src=x"), "{html}");
    assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
    assert!(html.contains("spiffe://a/&lt;b&gt;&amp;"));
    let html = ui::dashboard(None, Err("reading /x/<lab>.json"));
    assert!(html.contains("&lt;lab&gt;") && !html.contains("<lab>"));
}

#[tokio::test]
async fn dashboard_without_lab_state_says_what_failed_and_what_to_do() {
    let (state, dir) = no_lab_state().await;
    let (status, html) = get_page(state, "/dashboard").await;
    assert_eq!(status, StatusCode::OK);
    assert_layout(&html);
    assert!(html.contains(r#"class="error-box" role="alert""#), "{html}");
    assert!(html.contains("What failed:") && html.contains("cannot read the lab state"), "{html}");
    assert!(html.contains(&dir.0.join("lab.json").display().to_string()), "names the file: {html}");
    assert!(html.contains("What to do:") && html.contains("ztlab up"), "{html}");
}

#[tokio::test]
async fn events_stream_status_json() {
    let (mut state, _dir) = no_lab_state().await;
    let req = signed_get(&mut state, "/events");
    let resp = router(state).oneshot(req).await.expect("answer");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let frame = tokio::time::timeout(Duration::from_secs(3), body.frame()).await.expect("an event within 3 s");
    let data = frame.expect("frame").expect("ok").into_data().expect("data");
    let text = String::from_utf8(data.to_vec()).expect("utf8");
    let json_text = text.trim().strip_prefix("data: ").expect("a data line");
    let v: Value = serde_json::from_str(json_text).expect("json");
    assert_eq!(v["ok"], false, "{v}");
    assert!(v["error"].as_str().unwrap_or_default().contains("lab.json"), "{v}");
    assert!(v["todo"].as_str().unwrap_or_default().contains("ztlab up"), "{v}");
    let list = [component("backend", "workload", "healthy", Some("spiffe://ztlab.test/ns/demo/sa/backend"), Some(9))];
    let view = LabView { lab: Ok(list.to_vec()), entries: Err(error::Failure::no_svid()), at: None };
    let v = status_json(&view);
    assert_eq!(v["ok"], true);
    assert_eq!(v["components"][0]["name"], "backend");
    assert_eq!(v["components"][0]["via"], "native");
    assert_eq!(v["components"][0]["svid_seconds_left"], 9);
}

#[tokio::test]
async fn scenario_pages_list_show_and_404() {
    let state = state_for(&closed().await, &closed().await);
    let catalogue = zt_scenarios::Catalogue::builtin().expect("catalogue");
    let (status, html) = get_page(state.clone(), "/scenarios").await;
    assert_eq!(status, StatusCode::OK);
    assert_layout(&html);
    for s in &catalogue.scenario {
        assert!(html.contains(&format!(r#"href="/scenarios/{}""#, s.id)), "{}", s.id);
    }
    let (status, html) = get_page(state.clone(), "/scenarios/run-demo").await;
    assert_eq!(status, StatusCode::OK);
    assert_layout(&html);
    assert!(html.contains("Narration") && html.contains("Evidence to show") && html.contains("Expected outcome"));
    assert!(html.contains("x-forwarded-client-cert") && html.contains("run-demo"), "{html}");
    let (status, html) = get_page(state.clone(), "/scenarios/delegation").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(r#"aria-label="Delegation cases""#), "{html}");
    assert!(html.contains("Alice → Gpt4 → DOC-001") && html.contains("✓ granted") && html.contains("✗ denied"));
    let (status, html) = get_page(state, "/scenarios/%3Cnope%3E").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_layout(&html);
    assert!(html.contains("&quot;&lt;nope&gt;&quot;") && !html.contains("<nope>"), "{html}");
    for s in &catalogue.scenario {
        assert!(html.contains(&format!(r#"href="/scenarios/{}""#, s.id)), "404 names {}", s.id);
    }
}

mod entry_pages;

mod sessions {
    use super::*;

    async fn send(state: AppState, req: Request<Body>) -> Response {
        router(state).oneshot(req).await.expect("answer")
    }

    fn location(resp: &Response) -> String {
        resp.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    }

    async fn text(resp: Response) -> String {
        String::from_utf8(resp.into_body().collect().await.expect("body").to_bytes().to_vec()).expect("utf8")
    }

    fn form(body: &str) -> Request<Body> {
        Request::builder()
            .method("POST")
            .uri("/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body.to_owned()))
            .expect("request")
    }

    #[tokio::test]
    async fn the_ui_needs_a_session_and_the_app_api_does_not() {
        let state = state_for(&closed().await, &closed().await);
        for (path, next) in [
            ("/dashboard", "/login?next=/dashboard"),
            ("/scenarios/rotation?x=1", "/login?next=/scenarios/rotation%3Fx%3D1"),
            ("/", "/login?next=/"),
        ] {
            let resp = send(state.clone(), Request::builder().uri(path).body(Body::empty()).expect("req")).await;
            assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{path}");
            assert_eq!(location(&resp), next);
        }
        let (status, body) = call(state.clone(), "POST", "/api/scenarios/rotation/run", &[], "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"], "not signed in");
        assert!(body["todo"].as_str().unwrap_or_default().contains("/login"), "{body}");
        // A token of another key: refused, the cookie is cleared, and the login page says why.
        let mut other = state.clone();
        let forged = auth::testing::sign_in(&mut other, "jake");
        let mut state = state;
        let _ = auth::testing::sign_in(&mut state, "jake");
        let req = Request::builder().uri("/dashboard").header("cookie", forged).body(Body::empty()).expect("req");
        let resp = send(state.clone(), req).await;
        assert_eq!(location(&resp), "/login?next=/dashboard&expired=1");
        assert!(resp.headers()["set-cookie"].to_str().unwrap_or_default().contains("Max-Age=0"));
        let resp =
            send(state.clone(), Request::builder().uri("/login?expired=1").body(Body::empty()).expect("r")).await;
        assert!(text(resp).await.contains("Your session has ended"));
        // The app's own API stays open (the backend authorizes it); so do /login and /readyz.
        let (status, _) = call(state.clone(), "POST", "/api/run-demo", &[], "").await;
        assert_eq!(status, StatusCode::OK);
        let resp = send(state, Request::builder().uri("/login").body(Body::empty()).expect("r")).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let html = text(resp).await;
        assert!(html.contains(r#"<label for="username">Username</label>"#), "{html}");
        assert!(html.contains(r#"<label for="password">Password</label>"#), "{html}");
        assert!(html.contains(r#"autocomplete="current-password""#));
    }

    #[tokio::test]
    async fn login_sets_an_http_only_cookie_from_the_backends_token() {
        // The token the fake Envoy hands back is signed by the key the state trusts.
        let shared = script(200, "application/json", "");
        let mut state = envoy(&shared).await;
        let cookie = auth::testing::sign_in(&mut state, "jake");
        let token = cookie.strip_prefix("ztlab_session=").expect("cookie").to_owned();
        shared.lock().expect("lock").body = json!({"token": token, "expires_in": 600}).to_string();
        let resp = send(state.clone(), form("username=jake&password=jake99&next=%2Fscenarios%2Frotation")).await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&resp), "/scenarios/rotation");
        let set = resp.headers()["set-cookie"].to_str().expect("cookie").to_owned();
        assert!(set.starts_with(&format!("ztlab_session={token};")), "{set}");
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=600"] {
            assert!(set.contains(attr), "{attr}: {set}");
        }
        let seen = shared.lock().expect("lock").seen.clone();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, "POST /api/login");
        let sent: Value = serde_json::from_str(&seen[0].2).expect("json body");
        assert_eq!(sent, json!({"username": "jake", "password": "jake99"}));
        // The cookie opens the UI, which names the user.
        let req = Request::builder().uri("/dashboard").header("cookie", &cookie).body(Body::empty()).expect("req");
        let html = text(send(state.clone(), req).await).await;
        assert!(html.contains(r#"Signed in as <strong id="whoami">jake</strong>"#), "{html}");
        assert!(html.contains(r#"<form method="post" action="/logout">"#));
        // Somewhere else than this site is never a `next`.
        let resp = send(state.clone(), form("username=jake&password=jake99&next=%2F%2Fevil.example%2F")).await;
        assert_eq!(location(&resp), "/dashboard");
        // Signing out clears the cookie.
        let req = Request::builder().method("POST").uri("/logout").body(Body::empty()).expect("req");
        let resp = send(state, req).await;
        assert_eq!(location(&resp), "/login");
        assert!(resp.headers()["set-cookie"].to_str().unwrap_or_default().contains("Max-Age=0"));
    }

    #[tokio::test]
    async fn login_problems_are_shown_next_to_their_field() {
        let shared = script(401, "application/json", r#"{"error":"bad credentials"}"#);
        let state = envoy(&shared).await;
        let resp = send(state.clone(), form("username=jake&password=nope")).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert!(resp.headers().get("set-cookie").is_none());
        let html = text(resp).await;
        assert!(html.contains(r#"aria-describedby="password-error""#), "{html}");
        assert!(html.contains(r#"<p class="field-error" id="password-error">Wrong username or password.</p>"#));
        assert!(html.contains(r#"value="jake""#), "the username is kept: {html}");
        // Empty fields: said per field, and the backend is not asked.
        shared.lock().expect("lock").seen.clear();
        let resp = send(state.clone(), form("username=&password=")).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let html = text(resp).await;
        assert!(html.contains(r#"id="username-error">Enter your username."#), "{html}");
        assert!(html.contains(r#"id="password-error">Enter your password."#), "{html}");
        assert!(shared.lock().expect("lock").seen.is_empty());
        // Envoy's RBAC refusing the frontend: what failed and what to do.
        let shared = script(403, "text/plain", "RBAC: denied for spiffe://ztlab.test/ns/demo/sa/frontend");
        let resp = send(envoy(&shared).await, form("username=jake&password=jake99")).await;
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
        let html = text(resp).await;
        assert!(html.contains("RBAC: denied for") && html.contains("ztlab policy rbac allow-frontend"), "{html}");
        // Nothing listening: the error box names the problem.
        let resp = send(state_for(&closed().await, &closed().await), form("username=jake&password=jake99")).await;
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
        let html = text(resp).await;
        assert!(html.contains("cannot reach the backend") && html.contains("ztlab up"), "{html}");
    }
}

mod scenario_runs {
    use super::*;

    /// A stand-in for the `ztlab` binary: a shell script that prints its arguments and some
    /// progress on stderr, `stdout` on stdout, and exits with `code`. (The real runner is
    /// exercised by the e2e browser test.)
    async fn finished(state: &AppState, id: &str) -> Value {
        for _ in 0..100 {
            let (_, v) = call_signed(state, "GET", &format!("/api/scenarios/{id}/run"), "").await;
            if v["state"] != "running" {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the run of {id} did not end");
    }

    async fn call_signed(state: &AppState, method: &str, path: &str, body: &str) -> (StatusCode, Value) {
        let mut state = state.clone();
        let cookie = auth::testing::sign_in(&mut state, "amy");
        call(state, method, path, &[("cookie", cookie.as_str())], body).await
    }

    #[tokio::test]
    async fn runs_are_checked_one_at_a_time_and_followed_to_their_end() {
        let (state, dir) = no_lab_state().await;
        let (status, v) = call_signed(&state, "POST", "/api/scenarios/nope/run", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
        assert!(v["todo"].as_str().unwrap_or_default().contains("delegation"), "names the known ids: {v}");
        let (status, v) = call_signed(&state, "POST", "/api/scenarios/delegation/run", r#"{"cases":[99]}"#).await;
        assert_eq!((status, v["field"].as_str()), (StatusCode::NOT_FOUND, Some("cases")), "{v}");
        let (status, v) = call_signed(&state, "POST", "/api/scenarios/delegation/run", r#"{"case":5}"#).await;
        assert_eq!((status, v["field"].as_str()), (StatusCode::BAD_REQUEST, Some("cases")), "{v}");
        let (_, v) = call_signed(&state, "GET", "/api/scenarios/delegation/run", "").await;
        assert_eq!(v["state"], "idle", "nothing was started: {v}");

        // Against a state dir without a lab: started, then an error saying what to do.
        let (status, v) = call_signed(&state, "POST", "/api/scenarios/delegation/run", r#"{"cases":[5]}"#).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{v}");
        assert_eq!((v["state"].as_str(), v["user"].as_str()), (Some("running"), Some("amy")));
        assert_eq!(v["cases"], json!([5]));
        let done = finished(&state, "delegation").await;
        assert_eq!(done["state"], "error", "{done}");
        let want = format!("no lab at {}: run ./scripts/setup.sh", dir.0.display());
        assert!(done["error"].as_str().unwrap_or_default().contains(&want), "{done}");
        assert!(done["todo"].as_str().unwrap_or_default().contains("ztlab status"), "{done}");
        assert!(done["took_ms"].as_u64().is_some() && done.get("result").is_none(), "{done}");

        // One at a time: while a run goes on, another is refused, naming it and who started it.
        state.runs.hold_for_test("delegation", "amy");
        let (status, busy) = call_signed(&state, "POST", "/api/scenarios/rotation/run", "").await;
        assert_eq!(status, StatusCode::CONFLICT, "{busy}");
        assert!(busy["error"].as_str().unwrap_or_default().contains("delegation is running (started by amy)"));
    }

    #[test]
    fn runs_keep_the_runners_events_as_lines_and_load() {
        let mut run = runs::Run::running(1, "rotation", &[], "amy");
        run.record(&ztlab::demo::Event::Started { scenario: "rotation".into(), title: "Rotation".into() });
        let load = ztlab::demo::Event::Load { secs: 10, requests: 95, failures: 0, rotations: vec![] };
        run.record(&load);
        run.record(&ztlab::demo::Event::Warning { message: "could not restart spire-server-b".into() });
        assert_eq!(run.lines[0], "▶ rotation  Rotation");
        assert!(run.lines[1].contains("requests   95  failures 0"), "{:?}", run.lines);
        assert_eq!(run.lines[2], "warning: could not restart spire-server-b");
        assert_eq!(run.load, Some(runs::Load { requests: 95, failures: 0 }));
    }

    #[tokio::test]
    async fn scenario_pages_have_a_run_panel_and_per_case_buttons() {
        let state = state_for(&closed().await, &closed().await);
        let (_, html) = get_page(state.clone(), "/scenarios/rotation").await;
        assert!(html.contains(r#"data-scenario="rotation""#) && html.contains(r#"id="run-scenario""#), "{html}");
        assert!(assets::linked(&html).contains(r#"zt.follow("/events/scenarios/" + encodeURIComponent(id)"#));
        assert!(html.contains(r#"id="run-state" class="badge" role="status" aria-live="polite""#));
        let (_, html) = get_page(state, "/scenarios/delegation").await;
        for n in 1..=9 {
            assert!(html.contains(&format!(r#"aria-label="Run case {n}""#)), "case {n}");
            assert!(html.contains(&format!(r#"id="case-{n}-result""#)), "case {n}");
        }
        assert!(!html.contains("innerHTML"), "values are inserted as text");
    }
}

mod published_status;

#[tokio::test]
async fn every_page_links_the_icon_and_favicon_ico_answers_with_it() {
    let mut state = state_for(&closed().await, &closed().await);
    let req = signed_get(&mut state, "/");
    let resp = router(state.clone()).oneshot(req).await.expect("answer");
    let html = String::from_utf8(resp.into_body().collect().await.expect("body").to_bytes().to_vec()).expect("utf8");
    assert!(
        html.contains(&format!(r#"<link rel="icon" type="image/svg+xml" href="{}">"#, assets::url(assets::FAVICON))),
        "{html}"
    );
    // Browsers ask for /favicon.ico on their own, signed in or not: it is the icon, not a 404.
    let req = Request::get("/favicon.ico").body(Body::empty()).expect("request");
    let resp = router(state).oneshot(req).await.expect("answer");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "image/svg+xml");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert!(body.starts_with(b"<svg"), "{body:?}");
}
