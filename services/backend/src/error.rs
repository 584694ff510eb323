//! The backend's one error type, and the one place where errors become HTTP responses.
//!
//! Every error body is `{"error": "<what went wrong>"}`, plus `"field"` when one request field
//! is at fault, plus `"hop"` and `"reason"` when a dependency is down (503):
//!
//! | error | status | hop | reason |
//! |---|---|---|---|
//! | [`Error::Invalid`] | 400 | | |
//! | [`Error::BadCredentials`], [`Error::Unauthenticated`] | 401 | | |
//! | [`Error::NoGithubToken`], [`Error::NotFound`] | 404 | | |
//! | [`Error::Taken`] | 409 | | |
//! | [`Error::Github`] | 502 | | |
//! | [`Error::Database`] | 503 | `postgres` | `database_down`, `tls`, `no_svid`, `credentials_rejected` |
//! | [`Error::OpenBao`] | 503 | `openbao` | `openbao_sealed`, `openbao_unreachable`, `no_svid`, `openbao_denied`, `openbao_error` |
//! | [`Error::Internal`] | 500 | | |

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Why PostgreSQL could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DbReason {
    /// Not reachable, refused the login, or failed a query.
    DatabaseDown,
    /// The TLS handshake failed (certificate refused, wrong server SPIFFE ID).
    Tls,
    /// spiffe-helper's SVID files are missing.
    NoSvid,
    /// PostgreSQL rejected the dynamic credentials: the role is gone or its password no longer
    /// works (its OpenBao lease was revoked or expired). The backend gets new ones at once.
    CredentialsRejected,
}

impl DbReason {
    /// The `reason` of the error body.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DatabaseDown => "database_down",
            Self::Tls => "tls",
            Self::NoSvid => "no_svid",
            Self::CredentialsRejected => "credentials_rejected",
        }
    }
}

/// Whether PostgreSQL's error says the login role is unusable: `invalid_authorization_specification`
/// (28000: role does not exist, no pg_hba entry for it), `invalid_password` (28P01: password
/// authentication failed), or `undefined_object` (42704) about a role (the session's role was
/// dropped under it: "invalid role OID").
fn credentials_rejected(err: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    match err.code() {
        Some(c) if *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION || *c == SqlState::INVALID_PASSWORD => true,
        Some(c) if *c == SqlState::UNDEFINED_OBJECT => {
            err.as_db_error().is_some_and(|db| db.message().to_ascii_lowercase().contains("role"))
        }
        _ => false,
    }
}

/// Why OpenBao could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BaoReason {
    /// OpenBao is sealed.
    Sealed,
    /// Nothing answers at OpenBao's address, or it timed out.
    Unreachable,
    /// The SPIRE agent issued no JWT-SVID to log in with.
    NoSvid,
    /// OpenBao refused the login or the request (policy, role).
    Denied,
    /// Any other OpenBao error.
    Failed,
}

impl BaoReason {
    /// The `reason` of the error body.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sealed => "openbao_sealed",
            Self::Unreachable => "openbao_unreachable",
            Self::NoSvid => "no_svid",
            Self::Denied => "openbao_denied",
            Self::Failed => "openbao_error",
        }
    }
}

/// Everything that can go wrong in the backend.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A request field is not acceptable.
    #[error("{message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// A unique value is already used.
    #[error("{message}")]
    Taken {
        /// The field.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// Unknown user or wrong password (deliberately the same message for both).
    #[error("invalid username or password")]
    BadCredentials,
    /// No valid user token.
    #[error("{0}")]
    Unauthenticated(String),
    /// The user has not stored a GitHub token.
    #[error("no GitHub token configured")]
    NoGithubToken,
    /// Something does not exist.
    #[error("{0}")]
    NotFound(String),
    /// GitHub (or the fixture) failed or refused.
    #[error("{0}")]
    Github(String),
    /// PostgreSQL could not be used.
    #[error("{message}")]
    Database {
        /// Why, for the UI.
        reason: DbReason,
        /// What happened.
        message: String,
    },
    /// OpenBao could not be used.
    #[error("{message}")]
    OpenBao {
        /// Why, for the UI.
        reason: BaoReason,
        /// What happened.
        message: String,
    },
    /// The pool a request started on was closed by a rotation; the request is retried on the
    /// new pool, so this only escapes if that happens twice in a row.
    #[error("the database connection pool was replaced during the request")]
    PoolClosed,
    /// PostgreSQL closed the pooled connection a query ran on (a restart, or
    /// `pg_terminate_backend`); the request is retried on a new connection, so this only escapes
    /// if that happens three times in a row.
    #[error("{0}")]
    ConnectionLost(String),
    /// A bug or an unexpected state.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// A 400 about `field`.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { field, message: message.into() }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Invalid { .. } => StatusCode::BAD_REQUEST,
            Self::BadCredentials | Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::NoGithubToken | Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Taken { .. } => StatusCode::CONFLICT,
            Self::Github(_) => StatusCode::BAD_GATEWAY,
            Self::Database { .. } | Self::OpenBao { .. } | Self::PoolClosed | Self::ConnectionLost(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        let mut body = json!({"error": self.to_string()});
        match self {
            Self::Invalid { field, .. } | Self::Taken { field, .. } => body["field"] = (*field).into(),
            Self::Database { reason, .. } => {
                body["hop"] = "postgres".into();
                body["reason"] = reason.as_str().into();
            }
            Self::PoolClosed | Self::ConnectionLost(_) => {
                body["hop"] = "postgres".into();
                body["reason"] = DbReason::DatabaseDown.as_str().into();
            }
            Self::OpenBao { reason, .. } => {
                body["hop"] = "openbao".into();
                body["reason"] = reason.as_str().into();
            }
            _ => {}
        }
        body
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %self, "request failed");
        }
        (status, Json(self.body())).into_response()
    }
}

/// Classifies a PostgreSQL or pool error. TLS failures are told apart from the rest by their
/// messages (tokio-postgres does not expose its error kinds); missing SVID files by the
/// `zt_tls::pg` error in the chain.
pub(crate) fn db_error(context: &str, err: &(dyn std::error::Error + 'static)) -> Error {
    let mut chain = Vec::new();
    let mut reason = DbReason::DatabaseDown;
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(pg) = e.downcast_ref::<zt_tls::pg::PgTlsError>() {
            reason = match pg {
                zt_tls::pg::PgTlsError::Missing { .. } | zt_tls::pg::PgTlsError::Unreadable { .. } => DbReason::NoSvid,
                _ => DbReason::Tls,
            };
        }
        let msg = e.to_string();
        if let Some(pg) = e.downcast_ref::<tokio_postgres::Error>()
            && credentials_rejected(pg)
        {
            reason = DbReason::CredentialsRejected;
        }
        if reason == DbReason::DatabaseDown && (msg.contains("TLS") || msg.contains("certificate")) {
            reason = DbReason::Tls;
        }
        if !chain.iter().any(|m: &String| m.contains(&msg)) {
            chain.push(msg);
        }
        cur = e.source();
    }
    let message = match reason {
        DbReason::CredentialsRejected => format!(
            "{context}: PostgreSQL rejected the backend's database credentials (their OpenBao lease was revoked \
             or has expired; the backend is getting new ones): {}",
            chain.join(": ")
        ),
        _ => format!("{context}: {}", chain.join(": ")),
    };
    Error::Database { reason, message }
}

/// Classifies a pool error; [`Error::PoolClosed`] is kept apart so the caller can retry.
pub(crate) fn pool_error(err: deadpool_postgres::PoolError) -> Error {
    use deadpool_postgres::PoolError as P;
    match err {
        P::Closed => Error::PoolClosed,
        P::Timeout(t) => Error::Database {
            reason: DbReason::DatabaseDown,
            message: format!("PostgreSQL did not answer in time ({t:?})"),
        },
        P::Backend(e) => db_error("cannot connect to PostgreSQL", &e),
        other => db_error("cannot connect to PostgreSQL", &other),
    }
}

/// Classifies a query error. A unique violation becomes [`Error::Taken`] for `field`.
pub(crate) fn query_error(err: tokio_postgres::Error, unique_field: Option<&'static str>) -> Error {
    use tokio_postgres::error::SqlState;
    if let (Some(field), Some(&SqlState::UNIQUE_VIOLATION)) = (unique_field, err.code()) {
        return Error::Taken { field, message: format!("{field} is already taken") };
    }
    let lost = err.is_closed() || matches!(err.code(), Some(&SqlState::ADMIN_SHUTDOWN | &SqlState::CRASH_SHUTDOWN));
    match db_error("PostgreSQL query failed", &err) {
        Error::Database { message, reason: DbReason::DatabaseDown } if lost => Error::ConnectionLost(message),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_bodies() {
        let e = Error::invalid("password", "too short");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert_eq!(e.body(), json!({"error": "too short", "field": "password"}));
        let e = Error::Taken { field: "username", message: "username is already taken".into() };
        assert_eq!(e.status(), StatusCode::CONFLICT);
        assert_eq!(e.body()["field"], "username");
        assert_eq!(Error::BadCredentials.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(Error::NoGithubToken.status(), StatusCode::NOT_FOUND);
        assert_eq!(Error::NoGithubToken.body(), json!({"error": "no GitHub token configured"}));
        let e = Error::OpenBao { reason: BaoReason::Sealed, message: "OpenBao is sealed".into() };
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.body(), json!({"error": "OpenBao is sealed", "hop": "openbao", "reason": "openbao_sealed"}));
        let e = Error::Database { reason: DbReason::DatabaseDown, message: "down".into() };
        assert_eq!(e.body(), json!({"error": "down", "hop": "postgres", "reason": "database_down"}));
        assert_eq!(Error::PoolClosed.status(), StatusCode::SERVICE_UNAVAILABLE);
        let e = Error::ConnectionLost("PostgreSQL query failed: terminating connection".into());
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            e.body(),
            json!({"error": "PostgreSQL query failed: terminating connection", "hop": "postgres", "reason": "database_down"})
        );
        assert_eq!(Error::Github("x".into()).status(), StatusCode::BAD_GATEWAY);
        assert_eq!(Error::Internal("x".into()).status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn database_errors_are_classified() {
        let missing = zt_tls::pg::PgTlsError::Missing { path: "/certs/svid.pem".into() };
        let e = db_error("cannot connect", &missing);
        assert!(matches!(e, Error::Database { reason: DbReason::NoSvid, .. }), "{e:?}");
        assert!(e.to_string().contains("/certs/svid.pem"), "{e}");
        let wrong = zt_tls::pg::PgTlsError::WrongServer { found: "a".into(), expected: "b".into() };
        assert!(matches!(db_error("x", &wrong), Error::Database { reason: DbReason::Tls, .. }));
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let e = db_error("cannot connect", &refused);
        assert!(matches!(e, Error::Database { reason: DbReason::DatabaseDown, .. }), "{e:?}");
        assert_eq!(e.body()["reason"], "database_down");
        assert!(matches!(pool_error(deadpool_postgres::PoolError::Closed), Error::PoolClosed));
    }

    #[test]
    fn server_errors_log_but_do_not_leak_internals_in_status() {
        let resp = Error::OpenBao { reason: BaoReason::Unreachable, message: "no".into() }.into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
