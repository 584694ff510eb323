//! The Data API, shaped like OPA's: `POST /v1/data/<path>` with `{"input": ...}` answers
//! `{"result": ...}`, or `{}` when the path is undefined; `GET` evaluates without input. Errors
//! are `{"code": ..., "message": ...}` with OPA's codes. Every answer is logged as one decision
//! line (see [`DecisionLog`]).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use zt_tls::PeerIdentity;

use crate::policy::{DataPath, PolicyError};
use crate::store::PolicyStore;

/// Where decision lines go.
#[derive(Debug, Clone, Default)]
pub enum DecisionLog {
    /// One JSON line per decision on stderr, next to the service's other logs.
    #[default]
    Stderr,
    /// Kept in memory (tests).
    Memory(Arc<Mutex<Vec<Value>>>),
}

impl DecisionLog {
    fn write(&self, line: Value) {
        match self {
            DecisionLog::Stderr => {
                use std::io::Write as _;
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{line}");
            }
            DecisionLog::Memory(lines) => lines.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(line),
        }
    }
}

/// What the routes share.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The policies.
    pub store: Arc<PolicyStore>,
    /// The decision log.
    pub log: DecisionLog,
}

/// The mTLS routes: the Data API and `GET /v1/peer`.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/peer", get(peer))
        .route("/v1/data", get(get_root).post(post_root))
        .route("/v1/data/", get(get_root).post(post_root))
        .route("/v1/data/{*path}", get(get_path).post(post_path))
        .with_state(state)
        .layer(axum::middleware::from_fn(zt_service::request::trace))
}

/// Who called, as this service authenticated them.
async fn peer(peer: PeerIdentity) -> Json<PeerIdentity> {
    Json(peer)
}

async fn get_root(State(s): State<ApiState>, trace: Trace, peer: PeerIdentity) -> Result<Json<Value>, ApiError> {
    decide(&s, &trace, &peer, "", None)
}

async fn post_root(
    State(s): State<ApiState>,
    trace: Trace,
    peer: PeerIdentity,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    decide(&s, &trace, &peer, "", parse_body(&body)?)
}

async fn get_path(
    State(s): State<ApiState>,
    trace: Trace,
    peer: PeerIdentity,
    Path(path): Path<String>,
) -> Result<Json<Value>, ApiError> {
    decide(&s, &trace, &peer, &path, None)
}

async fn post_path(
    State(s): State<ApiState>,
    trace: Trace,
    peer: PeerIdentity,
    Path(path): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    decide(&s, &trace, &peer, &path, parse_body(&body)?)
}

/// The request's trace ID (the router's request layer puts it there).
type Trace = axum::Extension<zt_service::request::TraceId>;

/// The input in a request body: none for an empty body or one without `input`.
fn parse_body(body: &[u8]) -> Result<Option<Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::InvalidParameter(format!("request body is not valid JSON: {e}")))?;
    match doc {
        Value::Object(mut fields) => Ok(fields.remove("input")),
        other => Err(ApiError::InvalidParameter(format!(
            "request body must be a JSON object like {{\"input\": ...}}, not {}",
            kind(&other)
        ))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Evaluates, logs the decision (with the request's trace ID, and the caller as its actor), and
/// shapes the answer.
fn decide(
    s: &ApiState,
    axum::Extension(trace): &Trace,
    peer: &PeerIdentity,
    path: &str,
    input: Option<Value>,
) -> Result<Json<Value>, ApiError> {
    let path = DataPath::parse(path);
    let start = Instant::now();
    let outcome = s.store.eval(&path, input.clone());
    let elapsed = start.elapsed();
    let decision_id = uuid::Uuid::new_v4().to_string();
    let caller = peer.spiffe_id.to_string();
    let slashes = path.as_slashes();

    let (result, error) = match &outcome {
        Ok(result) => (result.clone(), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let allow = result.as_ref().and_then(|r| r.get("allow")).and_then(Value::as_bool);
    let reason = result.as_ref().and_then(|r| r.get("reason")).and_then(Value::as_str).map(str::to_owned);
    let label = match (&error, &result, allow) {
        (Some(_), _, _) => "error",
        (None, None, _) => "undefined",
        (None, Some(_), Some(true)) => "allow",
        (None, Some(_), Some(false)) => "deny",
        (None, Some(_), None) => "value",
    };
    metrics::counter!("opa_decisions_total", "path" => slashes.clone(), "outcome" => label).increment(1);
    metrics::histogram!("opa_decision_duration_seconds").record(elapsed.as_secs_f64());

    let mut line = json!({
        "timestamp": now_rfc3339(),
        "level": if error.is_some() { "ERROR" } else { "INFO" },
        "component": "opa",
        "msg": "decision",
        "trace_id": trace.0,
        "actor": caller,
        "decision_id": decision_id,
        "caller_spiffe_id": caller,
        "path": slashes,
        "input": input,
        "result": result,
        "allow": allow,
        "reason": reason,
        "eval_us": elapsed.as_micros() as u64,
    });
    if let Some(error) = &error {
        line["error"] = json!(error);
    }
    s.log.write(line);

    match outcome {
        Ok(Some(result)) => Ok(Json(json!({"result": result}))),
        Ok(None) => Ok(Json(json!({}))),
        Err(e) => Err(ApiError::Eval(e)),
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Every error the API answers, mapped to a status and OPA's error shape in one place.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (400, `invalid_parameter`).
    #[error("{0}")]
    InvalidParameter(String),
    /// Evaluation failed (500, `internal_error`).
    #[error(transparent)]
    Eval(#[from] PolicyError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ApiError::InvalidParameter(_) => (StatusCode::BAD_REQUEST, "invalid_parameter"),
            ApiError::Eval(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        };
        (status, Json(json!({"code": code, "message": self.to_string()}))).into_response()
    }
}
