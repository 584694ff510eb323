//! The `frontend` service: the presenter's web UI, SPIFFE ID `spiffe://<td>/ns/demo/sa/frontend`.
//!
//! The app speaks plain HTTP to its own Envoy sidecar (`backend_url`, the outbound listener).
//! That Envoy gets its SVID over SDS from the SPIRE agent and does mTLS with the backend's Envoy,
//! which admits only the frontend's SPIFFE ID (Envoy RBAC). The app never holds a TLS config for
//! the backend. It also holds its own X.509-SVID from the Workload API (native SDK), shown on
//! `/healthz`, for its later mTLS calls to entry-manager and document.
//!
//! Routes on `listen_addr` (plain HTTP, browser-facing). The UI's pages, streams and actions need
//! a session ([`auth`]: `GET|POST /login`, `POST /logout`; a user token from the backend kept in
//! an HttpOnly cookie); the app's API (`/api/run-demo`, the pass-throughs, documents) and
//! `/readyz` do not, since the backend and document service authorize those calls themselves.
//! - `GET /`: the demo page ([`page`]): a "Run Demo" button and the hops with their evidence.
//! - `POST /api/run-demo`: calls the backend's `GET /api/demo` through Envoy and answers 200
//!   with a [`demo::DemoReport`] (`{"ok","took_ms","hops":[…]}`), success or not.
//! - `GET /dashboard`: every lab component (from the lab state in `state_dir`, see
//!   [`zt_runtime::lab::Lab::status`]) with its SPIFFE ID, how it gets its SVID, health and SVID
//!   expiry; updated in place from `GET /events`, a server-sent event stream that pushes
//!   `{"ok":true,"components":[…]}` (or `{"ok":false,"error","todo"}`) about every second. One
//!   task computes that status for every page and stream ([`status`]).
//! - `GET /scenarios`, `GET /scenarios/{id}`: the scenario catalogue ([`zt_scenarios`]); an
//!   unknown id is a 404 page naming the known ones. The pages share one layout ([`ui`]).
//! - `GET /entries`, `GET /sites`: entry-manager's entries (SPIFFE ID, selectors, revision, a
//!   badge per site) and each site's health, read over mTLS with the frontend's SVID from
//!   `entry_manager_url` ([`entries`]); updated in place from `GET /events/entries` (from [`status`]),
//!   with an error box saying what failed and what to do when entry-manager does not answer or
//!   refuses. `/entries/new` creates an entry (checked as you type and again on the server),
//!   each row can be deleted after a confirmation, `/entries/audit` is the audit trail; the
//!   frontend is a `Developer` limited to `spiffe://<td>/demo/…` ([`entries`]).
//! - `POST /api/scenarios/{id}/run`, `GET /events/scenarios/{id}`: a scenario run from its page,
//!   by the `ztlab` library's scenario runner in process, followed live ([`runs`]).
//! - `GET /policies`: the backend Envoy's RBAC policy and counters, the Rego policy and its data,
//!   the Cilium policies and their reachability matrix ([`policies`]).
//! - `GET /readyz`: 200 `{"ready":true,"envoy":"LIVE"}` when the Envoy's admin `/ready` says
//!   `LIVE`, else 503 `{"ready":false,"reason":"envoy not ready: …"}`.
//! - `POST /api/login`, `GET /api/orders`, `PUT /api/github/token`, `GET /api/github/repos`:
//!   thin pass-throughs to the backend through Envoy (method, path, query, body,
//!   `authorization`, `content-type`, `accept`). JSON answers are passed on as they are; an
//!   error that is not JSON (an Envoy reply) becomes `{"error","reason"}` with the same status;
//!   no answer at all is 502 `{"error","reason":"envoy_not_ready"}`.
//!
//! On `ops_addr`: `/healthz` (SPIFFE ID and SVID expiry) and `/metrics`.
//!
//! - `GET /assets/{name}`: the pages' JavaScript and CSS ([`assets`]), open to everyone.
//!
//! Module map: [`envoy`] (the plain-HTTP client and Envoy readiness), [`demo`] (how answers
//! map to hops), [`ui`] (maud templates: the layout, the Run Demo, dashboard and scenario
//! pages), [`assets`] (the embedded JS and CSS), [`status`] (the one status task and its watch
//! channel), [`error`] (the one JSON error type), [`auth`] (login, sessions, the [`auth::Session`]
//! extractor), [`runs`] (scenario runs), [`entries`], [`policies`]. Shape: [`Config`] (layered: defaults, TOML file, `ZT_*`),
//! [`Application::build`] binds (port 0 works for tests) and waits for the SVID,
//! [`Application::run_until_stopped`] serves until shutdown; [`router`] is the app router
//! without any SVID, for in-process tests.

pub mod assets;
pub mod auth;
pub mod demo;
pub mod entries;
pub mod envoy;
pub mod error;
pub mod policies;
pub mod runs;
pub mod status;
#[cfg(test)]
mod tests;
pub mod ui;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;
use zt_service::workload::WorkloadSettings;
use zt_tls::X509Source;

use crate::auth::Session;
use crate::demo::DemoReport;
use crate::envoy::{PlainClient, Readiness};
use crate::error::ApiError;
use crate::status::{LabSource, LabView, LocalLab, Published};

/// Errors of the frontend library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting (or a URL built from one) is not usable.
    #[error("{field}: {value:?} is not usable: {reason}")]
    InvalidSetting {
        /// The setting.
        field: String,
        /// Its value.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// Nothing answered at the URL (the local Envoy is down, or the connection broke).
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// The URL requested.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// No answer in time.
    #[error("{url}: no answer within {}", humantime::format_duration(*.timeout))]
    Timeout {
        /// The URL requested.
        url: String,
        /// The timeout that elapsed.
        timeout: Duration,
    },
    /// The response body could not be read (or was too large).
    #[error("{url}: cannot read the response: {reason}")]
    Body {
        /// The URL requested.
        url: String,
        /// What went wrong.
        reason: String,
    },
}

/// Configuration: defaults, then the TOML file, then `ZT_*` variables.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Workload API socket, trust domain, ops listener, SVID wait.
    #[serde(flatten)]
    pub workload: WorkloadSettings,
    /// The browser-facing plain-HTTP listener (`ZT_LISTEN_ADDR`).
    pub listen_addr: String,
    /// The frontend Envoy's outbound listener to the backend (`ZT_BACKEND_URL`).
    pub backend_url: String,
    /// The frontend Envoy's admin interface (`ZT_ENVOY_ADMIN_URL`).
    pub envoy_admin_url: String,
    /// Per-request timeout for calls through Envoy, e.g. `5s` (`ZT_REQUEST_TIMEOUT`).
    #[serde(with = "zt_service::config::duration")]
    pub request_timeout: Duration,
    /// The document service (mTLS, native SDK), for later (`ZT_DOCUMENT_URL`).
    pub document_url: String,
    /// The lab's state dir, whose `lab.json` the dashboard reads (`ZT_STATE_DIR`; default `.`,
    /// the working directory, which `ztlab up` sets to the state dir).
    pub state_dir: PathBuf,
    /// entry-manager's mTLS listener, for the read-only `/entries` and `/sites` pages
    /// (`ZT_ENTRY_MANAGER_URL`; lab.toml `[entry_management] listen`).
    pub entry_manager_url: String,
    /// The backend's JWKS, which verifies the UI's session tokens (`ZT_USER_JWKS_URL`).
    pub user_jwks_url: String,
    /// The issuer of user tokens (`ZT_USER_TOKEN_ISSUER`).
    pub user_token_issuer: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            workload: WorkloadSettings::default(),
            listen_addr: "127.0.0.1:8080".into(),
            backend_url: "http://127.0.0.1:10080".into(),
            envoy_admin_url: "http://127.0.0.1:15080".into(),
            request_timeout: Duration::from_secs(5),
            document_url: "https://127.0.0.1:8085".into(),
            state_dir: PathBuf::from("."),
            entry_manager_url: "https://127.0.0.1:8444".into(),
            user_jwks_url: "http://127.0.0.1:9090/.well-known/jwks.json".into(),
            user_token_issuer: "ztlab-backend".into(),
        }
    }
}

impl Config {
    /// The state the router needs, from this config (checks the URLs).
    pub fn state(&self) -> Result<AppState, Error> {
        if let Err(reason) = entries::authority(&self.entry_manager_url) {
            return Err(Error::InvalidSetting {
                field: "entry_manager_url".into(),
                value: self.entry_manager_url.clone(),
                reason,
            });
        }
        if self.request_timeout.is_zero() {
            return Err(Error::InvalidSetting {
                field: "request_timeout".into(),
                value: "0s".into(),
                reason: "the timeout must be more than zero".into(),
            });
        }
        Ok(AppState {
            backend: PlainClient::new("backend_url", &self.backend_url, self.request_timeout)?,
            admin: PlainClient::new("envoy_admin_url", &self.envoy_admin_url, self.request_timeout)?,
            documents: None,
            entry_manager: None,
            state_dir: self.state_dir.clone(),
            tokens: zt_usertoken::Verifier::new(&self.user_jwks_url, &self.user_token_issuer),
            runs: runs::Runs::default(),
            status: Published::new(LocalLab::new(&self.state_dir), None, status::PERIOD),
        })
    }
}

/// What the handlers share: plain-HTTP clients for the Envoy listener and its admin.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The Envoy outbound listener to the backend.
    pub backend: PlainClient,
    /// The Envoy admin interface.
    pub admin: PlainClient,
    /// The document service, over mTLS with the frontend's own SVID (native SDK); set once the
    /// SVID is there.
    pub documents: Option<Arc<Documents>>,
    /// entry-manager, over mTLS with the frontend's own SVID (role `Developer`, writes only
    /// under `/demo`); set once
    /// the SVID is there.
    pub entry_manager: Option<Arc<entries::EntryManager>>,
    /// The lab's state dir (for the dashboard).
    pub state_dir: PathBuf,
    /// Verifies the session cookie's user token ([`auth`]).
    pub tokens: zt_usertoken::Verifier,
    /// Scenario runs started from the browser ([`runs`]).
    pub runs: runs::Runs,
    /// The lab's status and entry-manager's entries, published by one task ([`status`]).
    pub status: Published,
}

impl AppState {
    /// Publishes the status of `lab`, and entry-manager's entries once [`Self::entry_manager`]
    /// is set, for every page and stream.
    pub fn publish<S: LabSource>(&mut self, lab: S) {
        self.status = Published::new(lab, self.entry_manager.clone(), status::PERIOD);
    }
}

/// An mTLS client for the document service, which must present the document's SPIFFE ID.
#[derive(Debug)]
pub struct Documents {
    client: zt_tls::MtlsClient,
    base: String,
}

impl Documents {
    /// A client for `config.document_url` with the SVIDs of `source`.
    pub fn new(config: &Config, source: &X509Source) -> anyhow::Result<Self> {
        let td = config.workload.trust_domain()?;
        let id = zt_identity::lab::id(td.as_str(), zt_identity::lab::DOCUMENT)?;
        let options = zt_tls::client::ClientOptions { timeout: config.request_timeout, ..Default::default() };
        let client = zt_tls::MtlsClient::new(source, &td, Arc::new(zt_identity::Rule::Exact(id)), options)?;
        Ok(Self { client, base: config.document_url.trim_end_matches('/').to_owned() })
    }
}

/// The browser-facing router: the UI's pages, streams and actions behind [`auth::require`]; the
/// app's API (which the backend authorizes itself), `/login` and `/readyz` open.
pub fn router(state: AppState) -> Router {
    let ui = Router::new()
        .route("/", get(index))
        .route("/dashboard", get(dashboard))
        .route("/events", get(events))
        .route("/scenarios", get(scenarios))
        .route("/scenarios/{id}", get(scenario))
        .merge(entries::routes())
        .merge(policies::routes())
        .merge(runs::routes())
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::require));
    Router::new()
        .merge(ui)
        .merge(auth::routes())
        .merge(assets::routes())
        .route("/api/run-demo", post(run_demo))
        .route("/readyz", get(readyz))
        .route("/api/login", post(proxy))
        .route("/api/orders", get(proxy))
        .route("/api/github/token", put(proxy))
        .route("/api/github/repos", get(proxy))
        .route("/api/documents/{id}", get(document))
        .with_state(state)
        .layer(axum::middleware::from_fn(zt_service::request::trace))
}

async fn index(session: Session) -> Response {
    ui::html(StatusCode::OK, ui::demo::index(Some(&session.user)))
}

async fn dashboard(State(state): State<AppState>, session: Session) -> Response {
    let view = state.status.current().await;
    ui::html(StatusCode::OK, ui::dashboard(Some(&session.user), view.lab.as_deref().map_err(String::as_str)))
}

/// The JSON pushed on `/events`.
pub fn status_json(view: &LabView) -> serde_json::Value {
    match &view.lab {
        Ok(list) => json!({"ok": true, "components": ui::rows(list)}),
        Err(e) => json!({"ok": false, "error": e, "todo": ui::STATE_TODO}),
    }
}

/// A server-sent event stream of the UI: every `period`, `snapshot(ctx)` as one event, for as
/// long as the page listens (the policies and scenario-run streams; the status streams follow
/// [`status::Published`] instead).
pub(crate) fn live<C, F, Fut>(period: Duration, ctx: C, snapshot: F) -> Response
where
    C: Clone + Send + 'static,
    F: Fn(C) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = String> + Send,
{
    let mut every = tokio::time::interval(period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream = futures_util::stream::unfold((ctx, every, snapshot), |(ctx, mut every, snapshot)| async move {
        every.tick().await;
        let data = snapshot(ctx.clone()).await;
        Some((Ok::<_, Infallible>(Event::default().data(data)), (ctx, every, snapshot)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

async fn events(State(state): State<AppState>) -> Response {
    state.status.events(|v| status_json(v).to_string())
}

async fn scenarios(session: Session) -> Response {
    let user = Some(session.user.as_str());
    match zt_scenarios::Catalogue::builtin() {
        Ok(c) => ui::html(StatusCode::OK, ui::scenario_list(user, &c)),
        Err(e) => ui::html(StatusCode::INTERNAL_SERVER_ERROR, ui::catalogue_error(user, &e.to_string())),
    }
}

async fn scenario(session: Session, axum::extract::Path(id): axum::extract::Path<String>) -> Response {
    let user = Some(session.user.as_str());
    match zt_scenarios::Catalogue::builtin() {
        Ok(c) => match c.get(&id) {
            Some(s) => ui::html(StatusCode::OK, ui::scenario_page(user, s)),
            None => ui::html(StatusCode::NOT_FOUND, ui::unknown_scenario(user, &id, &c)),
        },
        Err(e) => ui::html(StatusCode::INTERNAL_SERVER_ERROR, ui::catalogue_error(user, &e.to_string())),
    }
}

/// Runs the demo once: `GET /api/demo` through Envoy, mapped to hops.
pub async fn run(state: &AppState) -> DemoReport {
    let start = Instant::now();
    let hops = match state.backend.get(demo::DEMO_PATH).await {
        Ok(reply) => demo::hops_from_reply(&reply, || envoy::readiness(&state.admin)).await,
        Err(e) => demo::hops_from_error(&e, envoy::readiness(&state.admin).await),
    };
    let report = DemoReport::new(hops, u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX));
    let failed = report.hops.iter().find(|h| !h.ok);
    tracing::info!(
        ok = report.ok,
        took_ms = report.took_ms,
        failed_hop = failed.map(|h| format!("{}->{}", h.from, h.to)),
        reason = failed.and_then(|h| h.reason.clone()),
        "demo run"
    );
    metrics::counter!("frontend_demo_runs_total", "ok" => report.ok.to_string()).increment(1);
    report
}

async fn run_demo(State(state): State<AppState>) -> Json<DemoReport> {
    Json(run(&state).await)
}

/// `GET /api/documents/{id}`: reads a document as the user whose token the browser sends. The
/// document service sees the frontend's SPIFFE ID (a direct read, no agent) and the user's token,
/// and answers with the document or the policy's reason, which is passed on as is.
async fn document(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(docs) = state.documents.clone() else {
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no SVID yet for calling the document service")
            .into_response();
    };
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return ApiError::new(StatusCode::BAD_REQUEST, "invalid document id").field("id").into_response();
    }
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let extra: Vec<(&str, &str)> = if auth.is_empty() { vec![] } else { vec![("authorization", auth.as_str())] };
    let url = format!("{}/v1/documents/{id}", docs.base);
    match docs.client.request_with_headers(Method::GET, &url, &extra, None).await {
        Ok(resp) => {
            let body: serde_json::Value = serde_json::from_slice(&resp.body)
                .unwrap_or_else(|_| json!({"error": String::from_utf8_lossy(&resp.body)}));
            (StatusCode::from_u16(resp.status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY), Json(body)).into_response()
        }
        Err(e) => ApiError::new(StatusCode::BAD_GATEWAY, format!("document service: {e}"))
            .reason("document_unreachable")
            .into_response(),
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    match envoy::readiness(&state.admin).await {
        Readiness::Live => (StatusCode::OK, Json(json!({"ready": true, "envoy": "LIVE"}))).into_response(),
        Readiness::NotReady(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reason": format!("envoy not ready: {why}")})),
        )
            .into_response(),
    }
}

/// The request headers passed on to the backend, besides the request's trace ID.
const FORWARDED: [header::HeaderName; 3] = [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT];

async fn proxy(
    State(state): State<AppState>,
    axum::Extension(trace): axum::Extension<zt_service::request::TraceId>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or(uri.path());
    let mut out = HeaderMap::new();
    for name in FORWARDED {
        for value in headers.get_all(&name) {
            out.append(name.clone(), value.clone());
        }
    }
    if let Ok(v) = HeaderValue::from_str(&trace.0) {
        out.insert(zt_service::request::TRACE_HEADER, v);
    }
    let reply = match state.backend.send(method, path, &out, body).await {
        Ok(reply) => reply,
        Err(e) => {
            let reason = match envoy::readiness(&state.admin).await {
                Readiness::Live if matches!(e, Error::Timeout { .. }) => "timeout",
                _ => "envoy_not_ready",
            };
            return ApiError::new(StatusCode::BAD_GATEWAY, e.to_string()).reason(reason).into_response();
        }
    };
    let is_json = reply.content_type.as_deref().is_some_and(|c| c.starts_with("application/json"));
    if is_json || reply.status.is_success() {
        let mut response = (reply.status, reply.body.clone()).into_response();
        if let Some(ct) = reply.content_type.as_deref().and_then(|c| HeaderValue::from_str(c).ok()) {
            response.headers_mut().insert(header::CONTENT_TYPE, ct);
        }
        return response;
    }
    // An error that is not the backend's JSON: Envoy's own reply.
    let text = reply.text();
    let text = text.trim();
    let reason = if reply.status == StatusCode::FORBIDDEN && text.starts_with("RBAC:") {
        "rbac"
    } else if reply.status == StatusCode::SERVICE_UNAVAILABLE {
        "backend_unreachable"
    } else {
        "backend_error"
    };
    let error = if text.is_empty() { format!("HTTP {}", reply.status) } else { text.to_owned() };
    ApiError::new(reply.status, error).reason(reason).into_response()
}

/// A built, bound, not yet serving frontend.
#[derive(Debug)]
pub struct Application {
    app: TcpListener,
    ops: TcpListener,
    state: AppState,
    source: X509Source,
}

impl Application {
    /// Validates the config, binds both listeners and waits for this workload's SVID.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let mut state = config.state()?;
        config.workload.trust_domain()?;
        let app = zt_service::workload::bind("listen_addr", &config.listen_addr).await?;
        let ops = zt_service::workload::bind("ops_addr", &config.workload.ops_addr).await?;
        let source = config.workload.connect().await?;
        state.documents = Some(Arc::new(Documents::new(&config, &source)?));
        state.entry_manager = Some(Arc::new(entries::EntryManager::new(&config, &source)?));
        state.publish(LocalLab::new(&config.state_dir));
        Ok(Self { app, ops, state, source })
    }

    /// The browser-facing address.
    pub fn addr(&self) -> SocketAddr {
        self.app.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The ops address.
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves both listeners until `shutdown` resolves, then lets open requests finish.
    pub async fn run_until_stopped<F>(self, shutdown: F) -> anyhow::Result<()>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let stop = zt_service::Stop::on(shutdown);
        let ops = zt_service::ops::router("frontend", self.source.clone(), zt_service::ops::install_metrics());
        let _svid = zt_tls::source::watch_svid(&self.source);
        tracing::info!(
            app = %self.addr(),
            ops = %self.ops_addr(),
            backend = self.state.backend.base(),
            envoy_admin = self.state.admin.base(),
            "serving"
        );
        let ops_stop = stop.wait();
        let ops_task = tokio::spawn(async move { axum::serve(self.ops, ops).with_graceful_shutdown(ops_stop).await });
        axum::serve(self.app, router(self.state)).with_graceful_shutdown(stop.wait()).await?;
        ops_task.await??;
        tracing::info!("stopped");
        Ok(())
    }
}
