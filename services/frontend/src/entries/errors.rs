//! Error mapping: entry-manager's gRPC statuses as what the pages say (a [`Failure`]: what
//! failed, what to do) and as the JSON API's [`ApiError`] with the field to show it next to.
//! The field comes from the status's `BadRequest` details (`zt_entry_api::validate::FieldError`),
//! never from its text.

use axum::http::StatusCode;
use tonic::Code;
use zt_entry_api::validate::FieldError;

use crate::error::{ApiError, Failure};

/// What to do when entry-manager does not answer.
pub(super) const UNREACHABLE_TODO: &str = "Start the lab (or just entry-manager) with `ztlab up` and check `ztlab status`. The frontend calls \
     entry-manager's mTLS listener at its entry_manager_url setting (ZT_ENTRY_MANAGER_URL, default \
     https://127.0.0.1:8444, lab.toml [entry_management] listen).";

impl Failure {
    /// The frontend has no SVID yet, so it cannot call entry-manager.
    pub fn no_svid() -> Self {
        Self::new(
            "the frontend has no SVID yet, so it cannot call entry-manager over mTLS",
            "Wait for the SPIRE agent to issue the frontend's SVID (check `ztlab status`), or start the lab with \
             `ztlab up`.",
        )
    }

    /// From a gRPC status of a call to entry-manager at `url`.
    pub fn from_status(url: &str, s: &tonic::Status) -> Self {
        let msg = if s.message().is_empty() { format!("{:?}", s.code()) } else { s.message().to_owned() };
        match s.code() {
            Code::PermissionDenied | Code::Unauthenticated => Self::new(
                format!("entry-manager at {url} refuses the frontend: {msg}"),
                "entry-manager must list the frontend's SPIFFE ID (spiffe://<trust domain>/ns/demo/sa/frontend) in \
                 its [[identities]], as a Developer with path_prefixes = [\"/demo\"] (a Viewer can only read); \
                 `ztlab up` writes that config. Restart entry-manager (`ztlab up`) if it runs with an older config.",
            ),
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
                Self::new(format!("entry-manager at {url} does not answer: {msg}"), UNREACHABLE_TODO)
            }
            code => Self::new(
                format!("entry-manager at {url} answered {code:?}: {msg}"),
                "Check entry-manager's log (`ztlab logs entry-manager`) and `ztlab status`.",
            ),
        }
    }
}

/// The form field of an API field path (`entry.selectors[1].type` → `selectors`); `entry`
/// alone (a duplicate entry) is the SPIFFE ID.
pub fn ui_field(path: &str) -> Option<&'static str> {
    let path = path.strip_prefix("entry.").unwrap_or(path);
    let head = path.split(['.', '[']).next().unwrap_or_default();
    Some(match head {
        "entry" | "spiffe_id" => "spiffe_id",
        "parent_id" => "parent_id",
        "selectors" => "selectors",
        "x509_svid_ttl" => "x509_svid_ttl",
        "site_ids" => "site_ids",
        "hint" => "hint",
        "id" => "id",
        _ => return None,
    })
}

/// An entry-manager refusal (or failure) as the page's `{"error","field"}` with an HTTP status:
/// InvalidArgument 400, PermissionDenied 403, NotFound 404, AlreadyExists (and the other
/// conflicts) 409, entry-manager down 502/504. A status whose `BadRequest` details name a field
/// puts the error next to that field; `fallback` is the field otherwise (for deletes: `id`).
pub fn rpc_error(url: &str, s: &tonic::Status, fallback: Option<&'static str>) -> ApiError {
    let status = match s.code() {
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::PermissionDenied | Code::Unauthenticated => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted | Code::FailedPrecondition => StatusCode::CONFLICT,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    };
    let field = FieldError::from_status(s).and_then(|f| ui_field(&f.field));
    let answered = matches!(
        s.code(),
        Code::InvalidArgument
            | Code::OutOfRange
            | Code::PermissionDenied
            | Code::NotFound
            | Code::AlreadyExists
            | Code::Aborted
            | Code::FailedPrecondition
    );
    if answered && (field.is_some() || s.code() != Code::PermissionDenied) {
        ApiError::new(status, format!("{:?} from entry-manager: {}", s.code(), s.message()))
            .field(field.or(fallback))
            .code(s.code())
    } else {
        // Not about the input: the frontend itself is refused, or entry-manager is down.
        ApiError::failed(status, Failure::from_status(url, s)).field(field).code(s.code())
    }
}
