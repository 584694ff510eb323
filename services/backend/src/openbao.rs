//! The backend's OpenBao client: JWT-SVID login, dynamic database credentials, lease
//! revocation, KV v2 (GitHub tokens) and seal status. Plain HTTP API calls, so that whole
//! responses (lease id and duration included) are kept.

use std::time::{Duration, Instant, SystemTime};

use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use zt_tls::client::WebClient;

use crate::config::OpenBaoSettings;
use crate::error::{BaoReason, Error};
use crate::github::GithubToken;
use crate::http::{self, Failure, Reply};
use crate::lease::{DbCreds, Lease, Secret};

/// An OpenBao token and when to log in again.
#[derive(Debug)]
struct Token {
    token: Secret,
    refresh_at: Option<Instant>,
}

/// Talks to OpenBao as this workload.
#[derive(Debug)]
pub struct OpenBao {
    http: WebClient,
    settings: OpenBaoSettings,
    addr: String,
    workload_endpoint: String,
    token: Mutex<Option<Token>>,
    static_token: Option<Secret>,
}

fn errors_of(reply: &Reply) -> String {
    let body = reply.json();
    match body.get("errors").and_then(Value::as_array) {
        Some(errs) if !errs.is_empty() => errs
            .iter()
            .map(|e| e.as_str().map(str::to_owned).unwrap_or_else(|| e.to_string()))
            .collect::<Vec<_>>()
            .join("; "),
        _ => String::from_utf8_lossy(&reply.body).chars().take(200).collect(),
    }
}

/// Classifies a non-2xx OpenBao answer to `what`.
fn refused(what: &str, reply: &Reply) -> Error {
    let errors = errors_of(reply);
    let reason = if reply.status == StatusCode::SERVICE_UNAVAILABLE && errors.to_lowercase().contains("sealed") {
        BaoReason::Sealed
    } else if matches!(reply.status, StatusCode::FORBIDDEN | StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED) {
        BaoReason::Denied
    } else {
        BaoReason::Failed
    };
    let message = match reason {
        BaoReason::Sealed => format!("OpenBao is sealed ({what} failed)"),
        _ => format!("OpenBao refused {what} ({}): {errors}", reply.status),
    };
    Error::OpenBao { reason, message }
}

impl OpenBao {
    /// A client for `settings.addr`, logging in with JWT-SVIDs from the Workload API at
    /// `workload_endpoint`.
    pub fn new(settings: &OpenBaoSettings, workload_endpoint: &str) -> Self {
        Self {
            http: zt_tls::client::web_client(),
            addr: settings.addr.trim_end_matches('/').to_owned(),
            settings: settings.clone(),
            workload_endpoint: workload_endpoint.to_owned(),
            token: Mutex::new(None),
            static_token: None,
        }
    }

    /// A client that uses a fixed OpenBao token instead of logging in with a JWT-SVID (for
    /// tests and tools that run without a SPIRE agent).
    pub fn with_token(settings: &OpenBaoSettings, token: &str) -> Self {
        Self { static_token: Some(Secret::new(token)), ..Self::new(settings, "") }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v1/{}", self.addr, path.trim_start_matches('/'))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&Secret>,
        body: Option<&Value>,
    ) -> Result<Reply, Error> {
        let url = self.url(path);
        let headers: Vec<(&str, &str)> = token.map(|t| vec![("x-vault-token", t.expose())]).unwrap_or_default();
        http::send(&self.http, method, &url, &headers, body, self.settings.timeout).await.map_err(|f| {
            let reason = match f {
                Failure::Request(_) => BaoReason::Failed,
                Failure::Connect(_) | Failure::Timeout => BaoReason::Unreachable,
            };
            Error::OpenBao { reason, message: format!("cannot reach OpenBao at {}: {f}", self.addr) }
        })
    }

    /// Logs in at `auth/<jwt_mount>/login` with a fresh JWT-SVID for the configured audience.
    async fn login(&self) -> Result<Token, Error> {
        let svid =
            zt_tls::source::fetch_jwt_svid(&self.workload_endpoint, &self.settings.audience).await.map_err(|e| {
                Error::OpenBao { reason: BaoReason::NoSvid, message: format!("no JWT-SVID to log in to OpenBao: {e}") }
            })?;
        let path = format!("auth/{}/login", self.settings.jwt_mount);
        let body = json!({"role": self.settings.role, "jwt": svid.token()});
        let reply = self.send(Method::POST, &path, None, Some(&body)).await?;
        if !reply.status.is_success() {
            return Err(refused(&format!("the login with the JWT-SVID (role {:?})", self.settings.role), &reply));
        }
        let auth = reply.json().get("auth").cloned().unwrap_or(Value::Null);
        let token = auth.get("client_token").and_then(Value::as_str).ok_or_else(|| Error::OpenBao {
            reason: BaoReason::Failed,
            message: "OpenBao's login answer has no auth.client_token".into(),
        })?;
        let ttl = auth.get("lease_duration").and_then(Value::as_u64).unwrap_or(0);
        tracing::info!(role = %self.settings.role, ttl_secs = ttl, "logged in to OpenBao with a JWT-SVID");
        Ok(Token {
            token: Secret::new(token),
            refresh_at: (ttl > 0).then(|| Instant::now() + Duration::from_secs(ttl).mul_f64(0.8)),
        })
    }

    /// The current token, logging in first if there is none or it is due for renewal.
    async fn token(&self) -> Result<Secret, Error> {
        if let Some(t) = &self.static_token {
            return Ok(t.clone());
        }
        let mut slot = self.token.lock().await;
        if let Some(t) = slot.as_ref()
            && t.refresh_at.is_none_or(|at| Instant::now() < at)
        {
            return Ok(t.token.clone());
        }
        let fresh = self.login().await?;
        let token = fresh.token.clone();
        *slot = Some(fresh);
        Ok(token)
    }

    /// An authenticated call; on 403 (token expired or revoked) logs in again and retries once.
    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Reply, Error> {
        let token = self.token().await?;
        let reply = self.send(method.clone(), path, Some(&token), body).await?;
        if reply.status != StatusCode::FORBIDDEN || self.static_token.is_some() {
            return Ok(reply);
        }
        {
            let mut slot = self.token.lock().await;
            if slot.as_ref().is_some_and(|t| t.token == token) {
                *slot = None;
            }
        }
        tracing::info!(path, "OpenBao answered 403; logging in again");
        let token = self.token().await?;
        self.send(method, path, Some(&token), body).await
    }

    /// New dynamic credentials from `<db_mount>/creds/<db_role>`, with their lease.
    pub async fn db_creds(&self) -> Result<DbCreds, Error> {
        let path = format!("{}/creds/{}", self.settings.db_mount, self.settings.db_role);
        let reply = self.call(Method::GET, &path, None).await?;
        if !reply.status.is_success() {
            return Err(refused(&format!("database credentials at {path}"), &reply));
        }
        parse_creds(&reply.json(), SystemTime::now())
    }

    /// Forgets the cached OpenBao token, so that the next call logs in again with a fresh
    /// JWT-SVID (after PostgreSQL rejected the credentials: the token may be revoked too).
    pub async fn forget_token(&self) {
        *self.token.lock().await = None;
    }

    /// Revokes a lease (`sys/leases/revoke/<lease_id>`): OpenBao drops the PostgreSQL role. The
    /// lease ID goes in the path, so that the backend's policy can allow revoking its own leases
    /// (`sys/leases/revoke/<db_mount>/creds/<db_role>/*`) and no others.
    pub async fn revoke(&self, lease_id: &str) -> Result<(), Error> {
        let reply = self.call(Method::PUT, &format!("sys/leases/revoke/{lease_id}"), None).await?;
        if !reply.status.is_success() {
            return Err(refused(&format!("revoking lease {lease_id}"), &reply));
        }
        Ok(())
    }

    fn github_path(&self, username: &str) -> String {
        format!("{}/data/github/{username}", self.settings.kv_mount)
    }

    /// Stores a user's GitHub token at `<kv_mount>/data/github/<username>` (field `token`).
    pub async fn put_github_token(&self, username: &str, token: &GithubToken) -> Result<(), Error> {
        let body = json!({"data": {"token": token.expose()}});
        let reply = self.call(Method::POST, &self.github_path(username), Some(&body)).await?;
        if !reply.status.is_success() {
            return Err(refused("storing the GitHub token", &reply));
        }
        Ok(())
    }

    /// A user's GitHub token, if stored.
    pub async fn github_token(&self, username: &str) -> Result<Option<GithubToken>, Error> {
        let reply = self.call(Method::GET, &self.github_path(username), None).await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !reply.status.is_success() {
            return Err(refused("reading the GitHub token", &reply));
        }
        let body = reply.json();
        Ok(body.pointer("/data/data/token").and_then(Value::as_str).filter(|t| !t.is_empty()).map(GithubToken::new))
    }

    /// Whether OpenBao is sealed (`sys/seal-status`, no token needed).
    pub async fn sealed(&self) -> Result<bool, Error> {
        let reply = self.send(Method::GET, "sys/seal-status", None, None).await?;
        if !reply.status.is_success() {
            return Err(refused("the seal status", &reply));
        }
        reply.json().get("sealed").and_then(Value::as_bool).ok_or_else(|| Error::OpenBao {
            reason: BaoReason::Failed,
            message: "OpenBao's seal status has no \"sealed\" field".into(),
        })
    }

    /// Checks that OpenBao is reachable and unsealed, as an error for the UI otherwise.
    pub async fn check_unsealed(&self) -> Result<(), Error> {
        if self.sealed().await? {
            return Err(Error::OpenBao { reason: BaoReason::Sealed, message: "OpenBao is sealed".into() });
        }
        Ok(())
    }
}

/// Reads a `database/creds/<role>` answer.
pub(crate) fn parse_creds(body: &Value, now: SystemTime) -> Result<DbCreds, Error> {
    let bad = |what: &str| Error::OpenBao {
        reason: BaoReason::Failed,
        message: format!("OpenBao's database credentials answer has no {what}"),
    };
    let username = body.pointer("/data/username").and_then(Value::as_str).ok_or_else(|| bad("data.username"))?;
    let password = body.pointer("/data/password").and_then(Value::as_str).ok_or_else(|| bad("data.password"))?;
    let lease_id =
        body.get("lease_id").and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or_else(|| bad("lease_id"))?;
    let duration = body.get("lease_duration").and_then(Value::as_u64).ok_or_else(|| bad("lease_duration"))?;
    Ok(DbCreds {
        username: username.to_owned(),
        password: Secret::new(password),
        lease: Lease {
            lease_id: lease_id.to_owned(),
            duration: Duration::from_secs(duration),
            renewable: body.get("renewable").and_then(Value::as_bool).unwrap_or(false),
            issued_at: now,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creds_keep_the_lease() {
        let body = json!({
            "request_id": "r", "lease_id": "database/creds/backend/AbC", "renewable": true, "lease_duration": 3600,
            "data": {"username": "v-jwt-backend-xyz", "password": "s3cret"}, "warnings": null
        });
        let now = SystemTime::now();
        let c = parse_creds(&body, now).expect("creds");
        assert_eq!(c.username, "v-jwt-backend-xyz");
        assert_eq!(c.password.expose(), "s3cret");
        assert_eq!(c.lease.lease_id, "database/creds/backend/AbC");
        assert_eq!(c.lease.duration, Duration::from_secs(3600));
        assert!(c.lease.renewable);
        assert_eq!(c.lease.issued_at, now);
        let err = parse_creds(&json!({"data": {"username": "u", "password": "p"}}), now).expect_err("no lease");
        assert!(err.to_string().contains("lease_id"), "{err}");
    }

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).expect("status"),
            headers: Default::default(),
            body: bytes::Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn refusals_are_classified() {
        let sealed = refused("x", &reply(503, r#"{"errors":["Vault is sealed"]}"#));
        assert!(matches!(sealed, Error::OpenBao { reason: BaoReason::Sealed, .. }), "{sealed:?}");
        assert_eq!(sealed.body()["reason"], "openbao_sealed");
        let denied =
            refused("the login", &reply(400, r#"{"errors":["error validating token: invalid audience claim"]}"#));
        assert!(matches!(denied, Error::OpenBao { reason: BaoReason::Denied, .. }), "{denied:?}");
        assert!(denied.to_string().contains("invalid audience"), "{denied}");
        let other = refused("x", &reply(500, "oops"));
        assert!(matches!(other, Error::OpenBao { reason: BaoReason::Failed, .. }));
        assert!(other.to_string().contains("oops"));
    }

    #[tokio::test]
    async fn unreachable_openbao_is_named() {
        zt_tls::install_crypto_provider();
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let settings = OpenBaoSettings { addr: format!("http://127.0.0.1:{port}"), ..OpenBaoSettings::default() };
        let bao = OpenBao::new(&settings, "unix:///nonexistent/agent.sock");
        let err = bao.sealed().await.expect_err("nothing listens");
        assert!(matches!(err, Error::OpenBao { reason: BaoReason::Unreachable, .. }), "{err:?}");
        // No SVID: the login cannot even start.
        let err = bao.db_creds().await.expect_err("no agent");
        assert!(matches!(err, Error::OpenBao { reason: BaoReason::NoSvid, .. }), "{err:?}");
    }
}
