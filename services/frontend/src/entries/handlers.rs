//! The entry pages' handlers: the pages and their event stream (from the published
//! [`crate::status::LabView`]), and the JSON actions, each logged with the signed-in user.

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use zt_entry_api::pb;

use super::form::{CreateRequest, validate_create};
use super::new_form::{NewEntryForm, new_entry_page};
use super::views::{audit_json, audit_page, entries_page, entry_json, sites_page, snapshot_json};
use super::{EntryManager, rpc_error};
use crate::AppState;
use crate::auth::Session;
use crate::error::{ApiError, Failure};
use crate::ui::html;

/// The trace ID of the UI request behind a write. entry-manager stores it with the audit row,
/// and the frontend's log lines of that request carry it with the signed-in user as `actor`, so
/// an audit row leads back to the person at the UI.
type Trace = Extension<zt_service::request::TraceId>;

/// entry-manager, or 503 when the frontend has no SVID yet.
fn entry_manager(state: &AppState) -> Result<std::sync::Arc<EntryManager>, ApiError> {
    state.entry_manager.clone().ok_or_else(|| ApiError::failed(StatusCode::SERVICE_UNAVAILABLE, Failure::no_svid()))
}

/// `GET /entries`.
async fn entries(State(state): State<AppState>, session: Session) -> Response {
    let view = state.status.current().await;
    html(StatusCode::OK, entries_page(Some(&session.user), view.entries.as_ref()))
}

/// `GET /sites`.
async fn sites(State(state): State<AppState>, session: Session) -> Response {
    let view = state.status.current().await;
    html(StatusCode::OK, sites_page(Some(&session.user), view.entries.as_ref().map(|s| s.sites.as_slice())))
}

/// `GET /events/entries`: [`snapshot_json`] of each published view.
async fn events(State(state): State<AppState>) -> Response {
    state.status.events(|v| snapshot_json(&v.entries).to_string())
}

/// `POST /api/entries`.
async fn create_entry(
    State(state): State<AppState>,
    session: Session,
    Extension(trace): Trace,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: CreateRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("the body is not the form's JSON: {e}")))?;
    let spec = validate_create(&req).map_err(|problems| {
        tracing::info!(user = %session.user, spiffe_id = %req.spiffe_id, ?problems, "entry not created: invalid input");
        ApiError::invalid(problems)
    })?;
    let em = entry_manager(&state)?;
    match em.create(spec.clone(), &trace.0).await {
        Ok(entry) => {
            tracing::info!(user = %session.user, spiffe_id = %entry.spiffe_id, entry_id = %entry.id,
                sites = ?entry.site_ids, "entry created via the UI");
            metrics::counter!("frontend_entry_writes_total", "action" => "create", "outcome" => "ok").increment(1);
            Ok((StatusCode::CREATED, Json(json!({"ok": true, "entry": entry_json(&entry, true)}))).into_response())
        }
        Err(s) => {
            tracing::warn!(user = %session.user, spiffe_id = %spec.spiffe_id, code = ?s.code(),
                reason = %s.message(), "entry-manager refused the UI's create");
            metrics::counter!("frontend_entry_writes_total", "action" => "create", "outcome" => format!("{:?}", s.code()))
                .increment(1);
            Err(rpc_error(em.url(), &s, None))
        }
    }
}

/// An entry ID as entry-manager makes them (a UUID), so that nothing else is passed on.
fn valid_entry_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// `DELETE /api/entries/{id}`.
async fn delete_entry(
    State(state): State<AppState>,
    session: Session,
    Extension(trace): Trace,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !valid_entry_id(&id) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("{id:?} is not an entry ID (a UUID)")).field("id"));
    }
    let em = entry_manager(&state)?;
    match em.delete(&id, &trace.0).await {
        Ok(entry) => {
            tracing::info!(user = %session.user, spiffe_id = %entry.spiffe_id, entry_id = %id,
                "entry deleted via the UI (DELETING at every site)");
            metrics::counter!("frontend_entry_writes_total", "action" => "delete", "outcome" => "ok").increment(1);
            Ok(Json(json!({"ok": true, "entry": entry_json(&entry, true)})).into_response())
        }
        Err(s) => {
            tracing::warn!(user = %session.user, entry_id = %id, code = ?s.code(),
                reason = %s.message(), "entry-manager refused the UI's delete");
            metrics::counter!("frontend_entry_writes_total", "action" => "delete", "outcome" => format!("{:?}", s.code()))
                .increment(1);
            Err(rpc_error(em.url(), &s, Some("id")))
        }
    }
}

/// `?entry=<id>` of the audit views.
#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    /// Only this entry's events.
    #[serde(default)]
    pub entry: Option<String>,
}

impl AuditQuery {
    /// The entry asked for, or why it is not an entry ID.
    fn entry(&self) -> Result<Option<&str>, String> {
        match self.entry.as_deref().filter(|e| !e.is_empty()) {
            Some(e) if !valid_entry_id(e) => Err(format!("{e:?} is not an entry ID (a UUID)")),
            other => Ok(other),
        }
    }
}

/// How many audit events the views show.
const AUDIT_PAGE: i32 = 200;

async fn audit_events(state: &AppState, entry: Option<&str>) -> Result<Vec<pb::AuditEvent>, Failure> {
    let Some(em) = state.entry_manager.clone() else {
        return Err(Failure::no_svid());
    };
    em.audit(entry.unwrap_or_default(), AUDIT_PAGE).await.map_err(|s| Failure::from_status(em.url(), &s))
}

/// `GET /entries/audit`.
async fn audit_view(State(state): State<AppState>, session: Session, Query(q): Query<AuditQuery>) -> Response {
    let user = Some(session.user.as_str());
    let Ok(entry) = q.entry() else {
        let f = Failure::new(
            "the entry in the address is not an entry ID",
            "Open the history from an entry's History link on /entries.",
        );
        return html(StatusCode::BAD_REQUEST, audit_page(user, None, Err(&f)));
    };
    let events = audit_events(&state, entry).await;
    html(StatusCode::OK, audit_page(user, entry, events.as_deref()))
}

/// `GET /api/entries/audit`.
async fn audit_api(State(state): State<AppState>, Query(q): Query<AuditQuery>) -> Result<Response, ApiError> {
    let entry = q.entry().map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e).field("entry"))?;
    let events = audit_events(&state, entry).await.map_err(|f| ApiError::failed(StatusCode::BAD_GATEWAY, f))?;
    Ok(Json(json!({"ok": true, "events": events.iter().map(audit_json).collect::<Vec<_>>()})).into_response())
}

/// `GET /entries/new`.
async fn new_entry(State(state): State<AppState>, session: Session) -> Response {
    let view = state.status.current().await;
    let lab = zt_runtime::lab::Lab::open(&state.state_dir).map_err(|e| e.to_string());
    let sites = view.entries.as_ref().map(|s| s.sites.as_slice()).unwrap_or_default();
    let form = NewEntryForm::new(sites, lab.as_ref().map(|l| l.spec()).map_err(Clone::clone));
    html(StatusCode::OK, new_entry_page(Some(&session.user), &form, view.entries.as_ref()))
}

/// The entry pages, their event stream and their actions (merged into the UI router behind
/// the login).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/entries", get(entries))
        .route("/sites", get(sites))
        .route("/events/entries", get(events))
        .route("/entries/new", get(new_entry))
        .route("/entries/audit", get(audit_view))
        .route("/api/entries", post(create_entry))
        .route("/api/entries/audit", get(audit_api))
        .route("/api/entries/{id}", delete(delete_entry))
}
