//! The Data API in process: the router with an authenticated peer put on each request the way
//! the mTLS server does it. Status codes, OPA's response shapes, and the decision log.

use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::{Extension, Router};
use http_body_util::BodyExt;
use opa::scenarios::{DECISION_PATH, NINE};
use opa::{ApiState, DecisionLog, PolicyStore};
use serde_json::{Value, json};
use tower::ServiceExt;
use zt_tls::{CertInfo, PeerIdentity};

const DOCUMENT: &str = "spiffe://ztlab.test/ns/demo/sa/document";

fn app() -> (Router, Arc<Mutex<Vec<Value>>>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/rego");
    let store = Arc::new(PolicyStore::open(&dir).expect("policies"));
    let lines = Arc::new(Mutex::new(Vec::new()));
    let peer = PeerIdentity {
        spiffe_id: zt_identity::SpiffeId::new(DOCUMENT).expect("id"),
        cert: CertInfo { spiffe_id: DOCUMENT.into(), serial: "01".into(), not_after: 0, expires_at: String::new() },
    };
    let router = opa::router(ApiState { store, log: DecisionLog::Memory(lines.clone()) }).layer(Extension(peer));
    (router, lines)
}

async fn call(app: &Router, method: &str, path: &str, body: &str) -> (StatusCode, Value) {
    let req = Request::builder().method(method).uri(path).body(Body::from(body.to_owned())).expect("request");
    let resp = app.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes))))
}

#[tokio::test]
async fn nine_scenarios_over_the_data_api() {
    let (app, lines) = app();
    for s in NINE {
        let body = json!({"input": s.input("ztlab.test")}).to_string();
        let (status, answer) = call(&app, "POST", &format!("/v1/data/{DECISION_PATH}"), &body).await;
        assert_eq!(status, StatusCode::OK, "{}: {answer}", s.title());
        assert_eq!(answer, json!({"result": s.expected()}), "{}", s.title());
    }
    // One decision line per request, with the caller, input, result and reason.
    let lines = lines.lock().expect("lines");
    assert_eq!(lines.len(), 9);
    let line = &lines[7];
    assert_eq!(line["msg"], "decision");
    assert_eq!(line["caller_spiffe_id"], DOCUMENT);
    assert_eq!(line["path"], DECISION_PATH);
    assert_eq!(line["input"], NINE[7].input("ztlab.test"));
    assert_eq!(line["result"], NINE[7].expected());
    assert_eq!(line["allow"], false);
    assert_eq!(line["reason"], "summarizer lacks engineering");
    assert!(line["decision_id"].as_str().is_some_and(|s| !s.is_empty()), "{line}");
    // The request's trace ID (a new one per request here) and the caller as its actor.
    assert_eq!(line["actor"], DOCUMENT);
    assert!(line["trace_id"].as_str().is_some_and(|s| s.len() == 32), "{line}");
    assert_ne!(line["trace_id"], lines[6]["trace_id"]);
}

#[tokio::test]
async fn a_callers_trace_id_is_logged_and_answered() {
    let (app, lines) = app();
    let req = Request::builder()
        .method("GET")
        .uri("/v1/data/ztlab/documents/decision")
        .header("x-trace-id", "trace-from-document")
        .body(Body::empty())
        .expect("request");
    let resp = app.oneshot(req).await.expect("response");
    assert_eq!(resp.headers()["x-trace-id"], "trace-from-document");
    let lines = lines.lock().expect("lines");
    assert_eq!(lines[0]["trace_id"], "trace-from-document");
    assert_eq!(lines[0]["component"], "opa");
}

#[tokio::test]
async fn opa_shapes() {
    let (app, lines) = app();
    // A missing rule: `{}` without `result`, like OPA.
    let (status, answer) = call(&app, "POST", "/v1/data/ztlab/documents/missing", r#"{"input": {}}"#).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({})));
    // No body, or a body without `input`: `input` is undefined.
    let want = json!({"result": {"allow": false, "reason": "no caller SPIFFE ID in the request"}});
    assert_eq!(call(&app, "POST", "/v1/data/ztlab/documents/decision", "").await, (StatusCode::OK, want.clone()));
    assert_eq!(call(&app, "POST", "/v1/data/ztlab/documents/decision", "{}").await, (StatusCode::OK, want.clone()));
    assert_eq!(call(&app, "GET", "/v1/data/ztlab/documents/decision", "").await, (StatusCode::OK, want));
    // Data documents and the root.
    let (status, alice) = call(&app, "GET", "/v1/data/ztlab/directory/users/alice", "").await;
    assert_eq!((status, alice), (StatusCode::OK, json!({"result": {"departments": ["engineering", "finance"]}})));
    let (status, root) = call(&app, "POST", "/v1/data", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(root["result"]["ztlab"]["directory"]["trust_domain"], "ztlab.test");
    // An undefined result is logged too, without a reason.
    let lines = lines.lock().expect("lines");
    assert_eq!(lines[0]["path"], "ztlab/documents/missing");
    assert_eq!(lines[0]["result"], Value::Null);
    assert_eq!(lines[0]["reason"], Value::Null);
}

#[tokio::test]
async fn bad_requests() {
    let (app, lines) = app();
    let (status, answer) = call(&app, "POST", "/v1/data/ztlab/documents/decision", r#"{"input": {"user": "al"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["code"], "invalid_parameter");
    assert!(answer["message"].as_str().is_some_and(|m| m.contains("not valid JSON")), "{answer}");

    let (status, answer) = call(&app, "POST", "/v1/data/ztlab/documents/decision", "[1, 2]").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["message"].as_str().is_some_and(|m| m.contains("JSON object")), "{answer}");
    assert!(lines.lock().expect("lines").is_empty(), "a bad request is not a decision");
}

#[tokio::test]
async fn peer_is_kept() {
    let (app, _) = app();
    let (status, answer) = call(&app, "GET", "/v1/peer", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["spiffe_id"], DOCUMENT);
}
