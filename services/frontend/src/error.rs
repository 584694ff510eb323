//! The one shape of every JSON error the frontend answers, and the one "what failed, what to
//! do" pair the pages show.
//!
//! [`ApiError`] is `{"error", "field"?, "todo"?, "reason"?, "code"?, "errors"?}` with an HTTP
//! status; its [`IntoResponse`] is the only place a JSON error becomes a response. Fields that do
//! not apply are left out: a pass-through of an Envoy refusal stays `{"error","reason"}`, a form
//! problem is `{"error","field","errors":[{"field","error"},…]}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, Render};
use serde::Serialize;

/// A problem with one field of a form: the field (as the JSON API names it) and what is wrong,
/// in words for the page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The field, e.g. `spiffe_id`.
    pub field: &'static str,
    /// What is wrong.
    pub error: String,
}

impl Problem {
    /// `error` about `field`.
    pub fn new(field: &'static str, error: impl Into<String>) -> Self {
        Self { field, error: error.into() }
    }
}

/// Something that failed, with what to do about it (the pages' error box, and the `error` and
/// `todo` of a JSON error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// What failed.
    pub what: String,
    /// What to do.
    pub todo: String,
}

impl Failure {
    /// `what` failed; `todo` says what to do.
    pub fn new(what: impl Into<String>, todo: impl Into<String>) -> Self {
        Self { what: what.into(), todo: todo.into() }
    }
}

impl Render for Failure {
    fn render(&self) -> Markup {
        crate::ui::error_box(&self.what, &self.todo)
    }
}

/// A JSON error answer (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    /// The HTTP status.
    #[serde(skip)]
    pub status: StatusCode,
    /// What went wrong, in words.
    pub error: String,
    /// The input field it is about, for the page to show it next to that field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'static str>,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub todo: Option<String>,
    /// A short machine-readable reason (`rbac`, `envoy_not_ready`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// The gRPC code of an entry-manager refusal (`PermissionDenied`, …).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "code_name")]
    pub code: Option<tonic::Code>,
    /// Every problem of a form, each with its field (the first is `error` and `field`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<Problem>,
}

impl ApiError {
    /// `error` with `status`.
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        Self { status, error: error.into(), field: None, todo: None, reason: None, code: None, errors: Vec::new() }
    }

    /// A failure (what failed, what to do) with `status`.
    pub fn failed(status: StatusCode, f: Failure) -> Self {
        Self::new(status, f.what).todo(f.todo)
    }

    /// 400 for a form's problems: the first one as `error` and `field`, all of them as `errors`.
    pub fn invalid(problems: Vec<Problem>) -> Self {
        let first = problems.first().cloned();
        let mut e = Self::new(StatusCode::BAD_REQUEST, first.as_ref().map_or("invalid input", |p| p.error.as_str()));
        e.field = first.map(|p| p.field);
        e.errors = problems;
        e
    }

    /// About input field `field`.
    pub fn field(mut self, field: impl Into<Option<&'static str>>) -> Self {
        self.field = field.into();
        self
    }

    /// With what to do.
    pub fn todo(mut self, todo: impl Into<String>) -> Self {
        self.todo = Some(todo.into());
        self
    }

    /// With a machine-readable reason.
    pub fn reason(mut self, reason: &'static str) -> Self {
        self.reason = Some(reason);
        self
    }

    /// With the gRPC code behind it.
    pub fn code(mut self, code: tonic::Code) -> Self {
        self.code = Some(code);
        self
    }
}

/// A gRPC code by its name (`PermissionDenied`).
fn code_name<S: serde::Serializer>(code: &Option<tonic::Code>, s: S) -> Result<S::Ok, S::Error> {
    match code {
        Some(c) => s.serialize_str(&format!("{c:?}")),
        None => s.serialize_none(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_leave_out_what_does_not_apply() {
        let e = ApiError::new(StatusCode::FORBIDDEN, "RBAC: denied").reason("rbac");
        assert_eq!(
            serde_json::to_value(&e).expect("json"),
            serde_json::json!({"error": "RBAC: denied", "reason": "rbac"})
        );
        let e = ApiError::invalid(vec![Problem::new("hint", "too long"), Problem::new("site_ids", "none")]);
        let v = serde_json::to_value(&e).expect("json");
        assert_eq!((e.status, &v["error"], &v["field"]), (StatusCode::BAD_REQUEST, &"too long".into(), &"hint".into()));
        assert_eq!(v["errors"][1], serde_json::json!({"field": "site_ids", "error": "none"}));
    }
}
