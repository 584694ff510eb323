//! Tests of the entry pages: validation, error mapping, the templates, and the handlers against
//! a fake entry-manager (a real tonic server on 127.0.0.1:0).

use std::sync::Mutex;

use axum::body::Body;
use axum::http::{Request, header};
use http_body_util::BodyExt as _;
use tonic::Code;
use tower::ServiceExt as _;
use zt_entry_api::validate::FieldError;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};
use zt_entry_api::client::Client;
use zt_entry_api::pb;

use super::*;
use crate::AppState;
use crate::error::Failure;

/// `rpc_error` as the page gets it: the HTTP status and the JSON body.
fn rpc(url: &str, s: &tonic::Status, fallback: Option<&'static str>) -> (StatusCode, Value) {
    let e = rpc_error(url, s, fallback);
    (e.status, serde_json::to_value(&e).expect("json"))
}

fn good() -> CreateRequest {
    CreateRequest {
        spiffe_id: "spiffe://ztlab.test/demo/app".into(),
        parent_id: "spiffe://ztlab.test/ztlab/nodes/local".into(),
        selectors: Lines::Text("unix:uid:4242\n\n unix:path:/opt/app \n".into()),
        x509_svid_ttl: json!("300"),
        site_ids: vec!["b".into(), "a".into()],
        hint: "demo".into(),
    }
}

fn field_of(req: &CreateRequest) -> Vec<&'static str> {
    validate_create(req).expect_err("invalid").iter().map(|p| p.field).collect()
}

#[test]
fn a_good_form_becomes_a_normalized_spec() {
    let spec = validate_create(&good()).expect("valid");
    assert_eq!(spec.spiffe_id, "spiffe://ztlab.test/demo/app");
    assert_eq!(spec.selectors.len(), 2);
    assert_eq!(spec.x509_svid_ttl, 300);
    assert_eq!(spec.site_ids, ["a", "b"]);
    let mut r = good();
    r.x509_svid_ttl = json!(120);
    r.selectors = Lines::List(vec!["unix:uid:1".into(), "".into()]);
    assert_eq!(validate_create(&r).expect("valid").x509_svid_ttl, 120);
    // Outside /demo is entry-manager's to refuse (PermissionDenied), not the form's.
    r.spiffe_id = "spiffe://ztlab.test/ns/other".into();
    assert!(validate_create(&r).is_ok());
}

#[test]
fn bad_spiffe_ids_name_the_field() {
    for bad in [
        "",
        "http://ztlab.test/demo/x",
        "spiffe://ZTLAB.test/demo/x",
        "spiffe://ztlab.test",
        "spiffe://ztlab.test/",
        "spiffe://ztlab.test/demo//x",
        "spiffe://ztlab.test/demo/./x",
        "spiffe://ztlab.test/demo/../x",
        "spiffe://ztlab.test/demo/x/",
        "spiffe://ztlab.test/demo/x?y=1",
        "spiffe://ztlab.test/demo/x#f",
        "spiffe://ztlab.test/demo/a b",
        "spiffe://zt lab/demo",
    ] {
        let mut r = good();
        r.spiffe_id = bad.into();
        let problems = validate_create(&r).expect_err(bad);
        assert_eq!(problems[0].field, "spiffe_id", "{bad}: {problems:?}");
        assert!(!problems[0].error.is_empty());
    }
    let mut r = good();
    r.parent_id = "spiffe://other.test/ztlab/nodes/local".into();
    let p = validate_create(&r).expect_err("other td");
    assert_eq!(p[0].field, "parent_id");
    assert!(p[0].error.contains("trust domain ztlab.test"), "{p:?}");
    r.parent_id = "nope".into();
    assert_eq!(field_of(&r), ["parent_id"]);
}

#[test]
fn bad_selectors_ttls_and_sites_name_their_field() {
    type Mutate = Box<dyn Fn(&mut CreateRequest)>;
    let cases: Vec<(&str, Mutate, &str)> = vec![
        ("selectors", Box::new(|r| r.selectors = Lines::Text(String::new())), "at least one selector"),
        ("selectors", Box::new(|r| r.selectors = Lines::Text("\n  \n".into())), "at least one selector"),
        ("selectors", Box::new(|r| r.selectors = Lines::Text("unix:uid:1\nnocolon".into())), "line 2"),
        ("selectors", Box::new(|r| r.selectors = Lines::Text(":uid:1".into())), "line 1: type is required"),
        ("selectors", Box::new(|r| r.selectors = Lines::Text("unix:".into())), "line 1: value is required"),
        ("selectors", Box::new(|r| r.selectors = Lines::Text("un ix:uid:1".into())), "line 1"),
        (
            "selectors",
            Box::new(|r| r.selectors = Lines::Text("unix:uid:1\nunix:gid:2\n\n unix:uid:1".into())),
            "line 4: duplicate of line 1",
        ),
        ("parent_id", Box::new(|r| r.parent_id = r.spiffe_id.clone()), "cannot be its own parent"),
        ("x509_svid_ttl", Box::new(|r| r.x509_svid_ttl = Value::Null), "required"),
        ("x509_svid_ttl", Box::new(|r| r.x509_svid_ttl = json!("")), "required"),
        ("x509_svid_ttl", Box::new(|r| r.x509_svid_ttl = json!("abc")), "whole number"),
        ("x509_svid_ttl", Box::new(|r| r.x509_svid_ttl = json!("-5")), "whole number"),
        ("x509_svid_ttl", Box::new(|r| r.x509_svid_ttl = json!(-5)), "whole number"),
        ("x509_svid_ttl", Box::new(|r| r.x509_svid_ttl = json!(1.5)), "whole number"),
        ("x509_svid_ttl", Box::new(|r| r.x509_svid_ttl = json!("0")), "more than 0"),
        ("x509_svid_ttl", Box::new(|r| r.x509_svid_ttl = json!(5)), "out of range"),
        ("x509_svid_ttl", Box::new(|r| r.x509_svid_ttl = json!("99999999999")), "out of range"),
        ("site_ids", Box::new(|r| r.site_ids.clear()), "at least one site"),
        ("site_ids", Box::new(|r| r.site_ids = vec!["Site A".into()]), "a-z"),
        ("hint", Box::new(|r| r.hint = "a\nb".into()), "printable"),
    ];
    for (field, mutate, says) in cases {
        let mut r = good();
        mutate(&mut r);
        let problems = validate_create(&r).expect_err(field);
        assert_eq!(problems.len(), 1, "{field}: {problems:?}");
        assert_eq!(problems[0].field, field, "{problems:?}");
        assert!(problems[0].error.contains(says), "{field}: {:?} should say {says:?}", problems[0].error);
    }
    // Every problem at once, each with its field.
    let r = CreateRequest::default();
    assert_eq!(field_of(&r), ["spiffe_id", "parent_id", "selectors", "x509_svid_ttl", "site_ids"]);
}

#[test]
fn entry_manager_messages_map_to_their_field() {
    for (path, field) in [
        ("entry.spiffe_id", Some("spiffe_id")),
        ("entry", Some("spiffe_id")),
        ("entry.parent_id", Some("parent_id")),
        ("entry.selectors[1].type", Some("selectors")),
        ("entry.x509_svid_ttl", Some("x509_svid_ttl")),
        ("entry.site_ids[0]", Some("site_ids")),
        ("entry.hint", Some("hint")),
        ("id", Some("id")),
        ("entry.dns_names[0]", None),
    ] {
        assert_eq!(ui_field(path), field, "{path}");
    }
    let url = "https://127.0.0.1:8444";
    let denied = FieldError::new(
        "entry.spiffe_id",
        "spiffe://ztlab.test/ns/demo/sa/frontend (Developer) may only write SPIFFE IDs under [\"/demo\"], not \
         spiffe://ztlab.test/ns/x",
    )
    .into_status(Code::PermissionDenied);
    let (status, body) = rpc(url, &denied, None);
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["field"], "spiffe_id");
    assert!(body["error"].as_str().unwrap_or_default().starts_with("PermissionDenied from entry-manager: "));
    let exists = FieldError::new("entry", "an entry with the same SPIFFE ID, parent ID and selectors already exists");
    let (status, body) = rpc(url, &exists.into_status(Code::AlreadyExists), None);
    assert_eq!((status, body["field"].as_str()), (StatusCode::CONFLICT, Some("spiffe_id")));
    let (status, body) = rpc(url, &FieldError::new("entry.site_ids[0]", "site \"z\" does not exist").into(), None);
    assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("site_ids")));
    let (status, body) = rpc(url, &tonic::Status::not_found("entry x does not exist"), Some("id"));
    assert_eq!((status, body["field"].as_str()), (StatusCode::NOT_FOUND, Some("id")));
    // The field comes from the details, not from text that looks like a field.
    let (_, body) = rpc(url, &tonic::Status::invalid_argument("entry.hint: looks like a field"), None);
    assert!(body["field"].is_null(), "{body}");
    let (_, body) = rpc(url, &FieldError::new("entry.hint", "too long").into(), None);
    assert_eq!(body["error"], "InvalidArgument from entry-manager: entry.hint: too long", "the text is kept");
    // The frontend itself refused (an old Viewer config), or entry-manager down: what and what to do.
    let (status, body) = rpc(
        url,
        &tonic::Status::permission_denied(
            "spiffe://ztlab.test/ns/demo/sa/frontend (role Viewer) may not call CreateEntry",
        ),
        None,
    );
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["field"].is_null() && body["todo"].as_str().unwrap_or_default().contains("Developer"), "{body}");
    let (status, body) = rpc(url, &tonic::Status::unavailable("connection refused"), None);
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(body["todo"].as_str().unwrap_or_default().contains("ztlab up"), "{body}");
}

fn pb_entry(id: &str, spiffe_id: &str, state: pb::SyncState) -> pb::Entry {
    pb::Entry {
        id: id.into(),
        spiffe_id: spiffe_id.into(),
        parent_id: "spiffe://ztlab.test/ztlab/nodes/local".into(),
        selectors: vec![pb::Selector { r#type: "unix".into(), value: "uid:4242".into() }],
        site_ids: vec!["a".into(), "b".into()],
        revision: 1,
        site_status: ["a", "b"]
            .iter()
            .map(|s| pb::SiteStatus { site_id: (*s).into(), state: state as i32, ..Default::default() })
            .collect(),
        ..Default::default()
    }
}

#[test]
fn the_form_has_a_label_for_every_field_and_escapes_values() {
    let spec = zt_runtime::lab::LabSpec::default();
    let form = NewEntryForm::new(&[], Ok(&spec));
    assert_eq!(form.parents, ["spiffe://ztlab.test/ztlab/nodes/local"]);
    assert_eq!(form.sites.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    let html = new_entry_page(Some("jake"), &form, Ok(&Snapshot::of(vec![])));
    for id in ["entry-spiffe-id", "entry-parent-id", "entry-selectors", "entry-ttl", "entry-hint", "entry-site-a"] {
        assert!(html.contains(&format!("<label for=\"{id}\">")), "label for {id}");
        assert!(html.contains(&format!("id=\"{id}\"")), "{id}");
    }
    for id in ["entry-spiffe-id", "entry-parent-id", "entry-selectors", "entry-ttl", "entry-hint", "entry-sites"] {
        assert!(html.contains(&format!("<p id=\"{id}-error\" class=\"field-error\"")), "error of {id}");
        assert!(html.contains(&format!("{id}-error\"")), "described by its error: {id}");
    }
    assert!(html.contains("aria-describedby=\"entry-spiffe-id-hint entry-spiffe-id-scope entry-spiffe-id-error\""));
    assert!(html.contains("<form id=\"entry-form\"") && html.contains("<textarea id=\"entry-selectors\""));
    assert!(html.contains("<button id=\"entry-create\" type=\"submit\""));
    assert!(html.contains("<p id=\"entry-form-status\" role=\"status\""));
    assert!(html.contains("value=\"spiffe://ztlab.test/ztlab/nodes/local\""), "default parent");
    assert!(html.contains("<legend>Sites</legend>") && html.contains("value=\"b\" checked"));
    assert!(html.contains("aria-current=\"page\">Entries"));
    let js = crate::assets::linked(&html);
    assert!(js.contains("zt.follow(\"/events/entries\"") && js.contains("fetch(\"/api/entries\""));
    assert!(!js.contains(".innerHTML") && !html.contains(".innerHTML"), "scripts insert text only");

    let evil = NewEntryForm {
        sites: vec![SiteChoice { id: "<b>".into(), trust_domain: "\"><script>x</script>".into() }],
        parents: vec!["\"><img src=x onerror=alert(1)>".into()],
        trust_domain: Some("<td>".into()),
        lab_error: Some("<script>alert(2)</script>".into()),
    };
    let list = [pb_entry("<e>", "spiffe://x/<script>alert(3)</script>", pb::SyncState::Pending)];
    let html = new_entry_page(Some("jake"), &evil, Ok(&Snapshot::of(list.to_vec())));
    for raw in ["<b>", "<script>x", "<img src=x", "<td>", "<script>alert"] {
        assert!(!html.contains(raw), "{raw} is escaped");
    }
    assert!(html.contains("&lt;script&gt;alert(2)&lt;/script&gt;") && html.contains("&quot;&gt;&lt;img"));
    let f = Failure { what: "<what>".into(), todo: "<todo>".into() };
    let html = new_entry_page(Some("jake"), &NewEntryForm::new(&[], Err("no lab".into())), Err(&f));
    assert!(html.contains("&lt;what&gt;") && html.contains("no lab"), "error box and the lab's error");
    let sites = [(
        pb::Site { id: "a".into(), trust_domain: "ztlab.test".into(), ..Default::default() },
        pb::SiteHealth::default(),
    )];
    let form = NewEntryForm::new(&sites, Err("no lab".into()));
    assert_eq!(form.parents, ["spiffe://ztlab.test/ztlab/nodes/local"], "the default alias without the spec");
}

#[test]
fn rows_have_a_delete_button_and_the_page_a_dialog() {
    let list = [
        pb_entry("e1", "spiffe://ztlab.test/demo/a\"b", pb::SyncState::Synced),
        pb_entry("e2", "spiffe://ztlab.test/demo/gone", pb::SyncState::Deleting),
    ];
    let html = entries_page(Some("jake"), Ok(&Snapshot::of(list.to_vec())));
    assert!(html.contains("<tr data-id=\"e1\" data-spiffe-id=\"spiffe://ztlab.test/demo/a&quot;b\">"), "{html}");
    assert!(html.contains("class=\"entry-delete danger small\" data-id=\"e1\""));
    assert!(html.contains("aria-label=\"Delete spiffe://ztlab.test/demo/gone\" disabled>Deleting…</button>"));
    assert!(html.contains("href=\"/entries/audit?entry=e1\">History</a>"));
    for id in ["confirm-delete", "confirm-delete-yes", "confirm-delete-no", "entries-status"] {
        assert!(html.contains(&format!("id=\"{id}\"")), "{id}");
    }
    assert!(html.contains("<dialog id=\"confirm-delete\""));
    assert!(html.contains("href=\"/entries/new\"") && html.contains("href=\"/entries/audit\""));
    assert!(crate::assets::linked(&html).contains("zt.follow(\"/events/entries\""));
}

#[test]
fn audit_rows_say_who_did_what_to_which_id() {
    let created = pb::AuditEvent {
        id: 7,
        at: Some(prost_types::Timestamp { seconds: 1_700_000_000, nanos: 0 }),
        actor: "spiffe://ztlab.test/ns/demo/sa/frontend".into(),
        action: "entry.create".into(),
        resource_type: "entry".into(),
        resource_id: "e1".into(),
        after_json: json!({"spiffe_id": "spiffe://ztlab.test/demo/<x>", "revision": 1, "site_ids": ["a", "b"]})
            .to_string(),
        ..Default::default()
    };
    let deleted = pb::AuditEvent {
        id: 9,
        action: "entry.delete".into(),
        actor: "oidc:<admin>".into(),
        before_json: json!({"spiffe_id": "spiffe://ztlab.test/demo/y", "site_ids": ["a"]}).to_string(),
        ..Default::default()
    };
    let site = pb::AuditEvent {
        id: 3,
        action: "site.create".into(),
        resource_type: "site".into(),
        resource_id: "a".into(),
        ..Default::default()
    };
    let v = audit_json(&created);
    assert_eq!(v["spiffe_id"], "spiffe://ztlab.test/demo/<x>");
    assert_eq!(v["at"], "2023-11-14T22:13:20Z");
    assert_eq!((v["outcome"].as_str(), v["detail"].as_str()), (Some("✓ created"), Some("revision 1, PENDING at a, b")));
    assert_eq!(audit_json(&deleted)["detail"], "DELETING at a until gone");
    assert!(audit_json(&site)["spiffe_id"].is_null());
    let html = audit_page(Some("jake"), Some("e1"), Ok(&[deleted.clone(), created.clone(), site.clone()]));
    assert!(html.contains("<table id=\"audit\"") && html.contains("data-entry=\"e1\""));
    assert!(html.contains("<tr data-action=\"entry.delete\" data-id=\"9\">"), "{html}");
    assert!(html.contains("<tr data-action=\"entry.create\" data-id=\"7\">"));
    assert!(html.contains("spiffe://ztlab.test/demo/&lt;x&gt;") && html.contains("oidc:&lt;admin&gt;"));
    assert!(!html.contains("<x>") && !html.contains("<admin>"));
    assert!(html.contains("<span class=\"muted\">site a</span>"));
    let f = Failure { what: "<w>".into(), todo: "t".into() };
    assert!(audit_page(None, None, Err(&f)).contains("&lt;w&gt;"));
}

/// A fake entry-manager that records every call and answers like the real one.
#[derive(Debug, Clone, Default)]
struct Fake {
    calls: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    fn log(&self, call: String) {
        self.calls.lock().expect("lock").push(call);
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("lock").clone()
    }
}

type Res<T> = Result<tonic::Response<T>, tonic::Status>;

#[tonic::async_trait]
impl pb::workload_entry_service_server::WorkloadEntryService for Fake {
    async fn create_entry(&self, req: tonic::Request<pb::CreateEntryRequest>) -> Res<pb::Entry> {
        let trace = req.metadata().get("x-trace-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let spec = req.into_inner().entry.unwrap_or_default();
        self.log(format!("create {} trace={}", spec.spiffe_id, !trace.is_empty()));
        let id = zt_identity::SpiffeId::new(&spec.spiffe_id).map_err(|e| tonic::Status::internal(e.to_string()))?;
        if !id.path().starts_with("/demo/") {
            let why = format!(
                "spiffe://ztlab.test/ns/demo/sa/frontend (Developer) may only write SPIFFE IDs under \
                 [\"/demo\"], not {}",
                spec.spiffe_id
            );
            return Err(FieldError::new("entry.spiffe_id", why).into_status(Code::PermissionDenied));
        }
        if id.path() == "/demo/dup" {
            let why = "an entry with the same SPIFFE ID, parent ID and selectors already exists";
            return Err(FieldError::new("entry", why).into_status(Code::AlreadyExists));
        }
        if let Some(s) = spec.site_ids.iter().find(|s| *s != "a" && *s != "b") {
            return Err(FieldError::new("entry.site_ids[0]", format!("site {s:?} does not exist")).into());
        }
        Ok(tonic::Response::new(pb::Entry {
            id: "0190-new".into(),
            spiffe_id: spec.spiffe_id,
            site_ids: spec.site_ids.clone(),
            revision: 1,
            site_status: spec
                .site_ids
                .iter()
                .map(|s| pb::SiteStatus {
                    site_id: s.clone(),
                    state: pb::SyncState::Pending as i32,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }))
    }
    async fn get_entry(&self, _: tonic::Request<pb::GetEntryRequest>) -> Res<pb::Entry> {
        Err(tonic::Status::unimplemented("fake"))
    }
    async fn update_entry(&self, _: tonic::Request<pb::UpdateEntryRequest>) -> Res<pb::Entry> {
        Err(tonic::Status::unimplemented("fake"))
    }
    async fn delete_entry(&self, req: tonic::Request<pb::DeleteEntryRequest>) -> Res<pb::Entry> {
        let id = req.into_inner().id;
        self.log(format!("delete {id}"));
        match id.as_str() {
            "abc-1" => {
                Ok(tonic::Response::new(pb_entry("abc-1", "spiffe://ztlab.test/demo/x", pb::SyncState::Deleting)))
            }
            "abc-2" => Err(FieldError::new(
                "id",
                "spiffe://ztlab.test/ns/demo/sa/frontend (Developer) may only write SPIFFE IDs under \
                 [\"/demo\"], not spiffe://ztlab.test/ns/demo/sa/backend",
            )
            .into_status(Code::PermissionDenied)),
            _ => Err(FieldError::new("id", format!("entry {id} does not exist")).into_status(Code::NotFound)),
        }
    }
    async fn list_entries(&self, _: tonic::Request<pb::ListEntriesRequest>) -> Res<pb::ListEntriesResponse> {
        Ok(tonic::Response::new(pb::ListEntriesResponse {
            entries: vec![pb_entry("abc-1", "spiffe://ztlab.test/demo/x", pb::SyncState::Synced)],
            next_page_token: String::new(),
        }))
    }
    async fn batch_create_entries(
        &self,
        _: tonic::Request<pb::BatchCreateEntriesRequest>,
    ) -> Res<pb::BatchCreateEntriesResponse> {
        Err(tonic::Status::unimplemented("fake"))
    }
    async fn batch_delete_entries(
        &self,
        _: tonic::Request<pb::BatchDeleteEntriesRequest>,
    ) -> Res<pb::BatchDeleteEntriesResponse> {
        Err(tonic::Status::unimplemented("fake"))
    }
}

#[tonic::async_trait]
impl pb::audit_service_server::AuditService for Fake {
    async fn list_audit_events(
        &self,
        req: tonic::Request<pb::ListAuditEventsRequest>,
    ) -> Res<pb::ListAuditEventsResponse> {
        let r = req.into_inner();
        self.log(format!("audit entry={} size={}", r.entry_id, r.page_size));
        let ev = |id: i64, action: &str| pb::AuditEvent {
            id,
            action: action.into(),
            actor: "spiffe://ztlab.test/ns/demo/sa/frontend".into(),
            resource_type: "entry".into(),
            resource_id: "abc-1".into(),
            after_json: json!({"spiffe_id": "spiffe://ztlab.test/demo/x", "revision": 1}).to_string(),
            ..Default::default()
        };
        // Oldest first on purpose: the frontend shows newest first whatever it gets.
        Ok(tonic::Response::new(pb::ListAuditEventsResponse {
            events: vec![ev(1, "entry.create"), ev(2, "entry.delete")],
            next_page_token: String::new(),
        }))
    }
}

/// The frontend's state with a fake entry-manager, and a signed-in cookie.
async fn with_fake() -> (AppState, Fake, String) {
    let fake = Fake::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let incoming = futures_util::stream::unfold(listener, |l| async move {
        let r = l.accept().await.map(|(s, _)| s);
        Some((r, l))
    });
    let server = tonic::transport::Server::builder()
        .add_service(pb::workload_entry_service_server::WorkloadEntryServiceServer::new(fake.clone()))
        .add_service(pb::audit_service_server::AuditServiceServer::new(fake.clone()))
        .serve_with_incoming(incoming);
    tokio::spawn(server);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).expect("url").connect_lazy();
    let client = Client::with_channel(channel, None).expect("client");
    let mut state = crate::Config::default().state().expect("state");
    state.entry_manager = Some(Arc::new(EntryManager::over(client, "https://fake", Duration::from_secs(5))));
    state.publish(crate::status::LocalLab::new(&state.state_dir.clone()));
    let cookie = crate::auth::testing::sign_in(&mut state, "jake");
    (state, fake, cookie)
}

async fn call(state: &AppState, cookie: &str, method: &str, uri: &str, body: Value) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let resp = crate::router(state.clone()).oneshot(req).await.expect("answer");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn form(spiffe_id: &str) -> Value {
    json!({
        "spiffe_id": spiffe_id,
        "parent_id": "spiffe://ztlab.test/ztlab/nodes/local",
        "selectors": ["unix:uid:4242", ""],
        "x509_svid_ttl": "300",
        "site_ids": ["a", "b"],
        "hint": "demo",
    })
}

#[tokio::test]
async fn bad_input_is_refused_with_its_field_and_no_rpc() {
    let (state, fake, cookie) = with_fake().await;
    let cases = [
        ("spiffe_id", json!({"spiffe_id": "spiffe://ztlab.test/demo/x/"})),
        ("spiffe_id", json!({"spiffe_id": "spiffe://Bad/demo"})),
        ("selectors", json!({"selectors": ["nocolon"]})),
        ("selectors", json!({"selectors": "unix:"})),
        ("x509_svid_ttl", json!({"x509_svid_ttl": "-1"})),
        ("x509_svid_ttl", json!({"x509_svid_ttl": "abc"})),
        ("site_ids", json!({"site_ids": []})),
        ("selectors", json!({"selectors": ["unix:uid:4242", "unix:uid:4242"]})),
        ("parent_id", json!({"parent_id": "spiffe://ztlab.test/demo/x"})),
    ];
    for (field, change) in cases {
        let mut body = form("spiffe://ztlab.test/demo/x");
        for (k, v) in change.as_object().expect("object") {
            body[k] = v.clone();
        }
        let (status, answer) = call(&state, &cookie, "POST", "/api/entries", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {answer}");
        assert_eq!(answer["field"], field, "{answer}");
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()), "{answer}");
        assert_eq!(answer["errors"][0]["field"], field, "{answer}");
    }
    let (status, answer) = call(&state, &cookie, "POST", "/api/entries", json!("not a form")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, _) = call(&state, &cookie, "DELETE", "/api/entries/..%2Fx", Value::Null).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(fake.calls().is_empty(), "nothing reached entry-manager: {:?}", fake.calls());
}

#[tokio::test]
async fn writes_need_a_session() {
    let (state, fake, _) = with_fake().await;
    let (status, answer) = call(&state, "", "POST", "/api/entries", form("spiffe://ztlab.test/demo/x")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    let (status, _) = call(&state, "", "DELETE", "/api/entries/abc-1", Value::Null).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(&state, "", "GET", "/api/entries/audit", Value::Null).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn entry_manager_answers_reach_the_page_with_their_field() {
    let (state, fake, cookie) = with_fake().await;
    let (status, answer) = call(&state, &cookie, "POST", "/api/entries", form("spiffe://ztlab.test/demo/app")).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["entry"]["spiffe_id"], "spiffe://ztlab.test/demo/app");
    assert_eq!(answer["entry"]["sites"][0], json!({"site_id": "a", "state": "PENDING", "last_error": ""}));
    let (status, answer) = call(&state, &cookie, "POST", "/api/entries", form("spiffe://ztlab.test/ns/other")).await;
    assert_eq!((status, answer["field"].as_str()), (StatusCode::FORBIDDEN, Some("spiffe_id")), "{answer}");
    assert!(answer["error"].as_str().unwrap_or_default().contains("PermissionDenied"), "{answer}");
    let (status, answer) = call(&state, &cookie, "POST", "/api/entries", form("spiffe://ztlab.test/demo/dup")).await;
    assert_eq!((status, answer["field"].as_str()), (StatusCode::CONFLICT, Some("spiffe_id")), "{answer}");
    let mut body = form("spiffe://ztlab.test/demo/app");
    body["site_ids"] = json!(["zz"]);
    let (status, answer) = call(&state, &cookie, "POST", "/api/entries", body).await;
    assert_eq!((status, answer["field"].as_str()), (StatusCode::BAD_REQUEST, Some("site_ids")), "{answer}");

    let (status, answer) = call(&state, &cookie, "DELETE", "/api/entries/abc-1", Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["entry"]["sites"][1]["state"], "DELETING");
    let (status, answer) = call(&state, &cookie, "DELETE", "/api/entries/abc-2", Value::Null).await;
    assert_eq!((status, answer["field"].as_str()), (StatusCode::FORBIDDEN, Some("id")), "{answer}");
    let (status, answer) = call(&state, &cookie, "DELETE", "/api/entries/abc-3", Value::Null).await;
    assert_eq!((status, answer["field"].as_str()), (StatusCode::NOT_FOUND, Some("id")), "{answer}");

    let (status, answer) = call(&state, &cookie, "GET", "/api/entries/audit?entry=abc-1", Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["events"][0]["action"], "entry.delete", "newest first: {answer}");
    assert_eq!(answer["events"][1]["spiffe_id"], "spiffe://ztlab.test/demo/x");
    let (status, _) = call(&state, &cookie, "GET", "/api/entries/audit?entry=%3Cx%3E", Value::Null).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let req =
        Request::builder().uri("/entries/audit").header(header::COOKIE, &cookie).body(Body::empty()).expect("request");
    let resp = crate::router(state.clone()).oneshot(req).await.expect("answer");
    assert_eq!(resp.status(), StatusCode::OK);
    let html = String::from_utf8(resp.into_body().collect().await.expect("body").to_bytes().to_vec()).expect("utf8");
    assert!(html.contains("<tr data-action=\"entry.delete\"") && html.contains("Signed in as"), "{html}");

    assert_eq!(
        fake.calls(),
        [
            "create spiffe://ztlab.test/demo/app trace=true",
            "create spiffe://ztlab.test/ns/other trace=true",
            "create spiffe://ztlab.test/demo/dup trace=true",
            "create spiffe://ztlab.test/demo/app trace=true",
            "delete abc-1",
            "delete abc-2",
            "delete abc-3",
            "audit entry=abc-1 size=200",
            "audit entry= size=200",
        ]
    );
}

#[tokio::test]
async fn the_form_page_is_served_behind_the_login() {
    let (state, _, cookie) = with_fake().await;
    let req = Request::builder().uri("/entries/new").header(header::COOKIE, &cookie).body(Body::empty());
    let resp = crate::router(state.clone()).oneshot(req.expect("request")).await.expect("answer");
    assert_eq!(resp.status(), StatusCode::OK);
    let html = String::from_utf8(resp.into_body().collect().await.expect("body").to_bytes().to_vec()).expect("utf8");
    assert!(html.contains("<form id=\"entry-form\"") && html.contains("Signed in as <strong id=\"whoami\">jake"));
    let req = Request::builder().uri("/entries/new").body(Body::empty()).expect("request");
    let resp = crate::router(state).oneshot(req).await.expect("answer");
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "to /login");
}
