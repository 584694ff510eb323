//! The backend's OpenBao client: JWT-SVID login, dynamic database credentials, lease
//! revocation, KV v2 (GitHub tokens) and seal status, through vaultrs on the reqwest client
//! that `zt_tls::client` builds.
//!
//! vaultrs covers the JWT login (`auth::oidc::login`) and KV v2. Where it falls short, its own
//! request types and middleware still make the call:
//! - its database-credentials helper drops `lease_id` and `lease_duration`, so its
//!   [`GenerateCredentialsRequest`] is executed here and the whole answer kept;
//! - it has no lease API and no `sys/seal-status`: [`RevokeLease`] and [`SealStatus`] are the
//!   two endpoints it lacks, run through vaultrs' middleware (token header, `/v1`) and error
//!   parsing like its own.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use hyper::StatusCode;
use rustify::endpoint::Endpoint;
use rustify::enums::{RequestMethod, RequestType, ResponseType};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use vaultrs::api::database::requests::GenerateCredentialsRequest;
use vaultrs::client::VaultClient;
use vaultrs::error::ClientError as VaultError;
use zt_tls::client::WebClient;

use crate::config::OpenBaoSettings;
use crate::error::{BaoReason, Error};
use crate::github::GithubToken;
use crate::http::Reply;
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

/// `PUT sys/leases/revoke/<lease_id>`: vaultrs has no lease API. The lease ID goes in the path
/// (not in the body), so that the backend's policy can allow revoking its own leases only.
#[derive(Debug)]
struct RevokeLease {
    lease_id: String,
}

impl Endpoint for RevokeLease {
    type Response = ();
    const REQUEST_BODY_TYPE: RequestType = RequestType::JSON;
    const RESPONSE_BODY_TYPE: ResponseType = ResponseType::JSON;

    fn path(&self) -> String {
        format!("sys/leases/revoke/{}", self.lease_id)
    }

    fn method(&self) -> RequestMethod {
        RequestMethod::PUT
    }
}

/// `GET sys/seal-status` (no token needed): vaultrs has no such call (its `sys::status` reads
/// `sys/health`, a different endpoint).
#[derive(Debug)]
struct SealStatus;

/// The part of `sys/seal-status` the backend reads.
#[derive(Debug, Deserialize)]
struct SealStatusResponse {
    sealed: bool,
}

impl Endpoint for SealStatus {
    type Response = SealStatusResponse;
    const REQUEST_BODY_TYPE: RequestType = RequestType::JSON;
    const RESPONSE_BODY_TYPE: ResponseType = ResponseType::JSON;

    fn path(&self) -> String {
        "sys/seal-status".into()
    }

    fn method(&self) -> RequestMethod {
        RequestMethod::GET
    }
}

/// Why a call got no usable answer.
#[derive(Debug)]
enum Failure {
    /// No answer within the configured timeout.
    Timeout,
    /// What vaultrs said.
    Vault(VaultError),
}

impl From<VaultError> for Failure {
    fn from(e: VaultError) -> Self {
        Self::Vault(e)
    }
}

impl From<rustify::errors::ClientError> for Failure {
    fn from(e: rustify::errors::ClientError) -> Self {
        Self::Vault(VaultError::RestClientError { source: e })
    }
}

impl Failure {
    /// The HTTP status of an OpenBao error answer.
    fn status(&self) -> Option<u16> {
        match self {
            Self::Vault(VaultError::APIError { code, .. })
            | Self::Vault(VaultError::RestClientError {
                source: rustify::errors::ClientError::ServerResponseError { code, .. },
            }) => Some(*code),
            _ => None,
        }
    }
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

/// An error and its sources on one line, without repeats.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(e) = cur {
        let msg = e.to_string();
        if !parts.iter().any(|p| p.contains(&msg)) {
            parts.push(msg);
        }
        cur = e.source();
    }
    parts.join(": ")
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

    /// A vaultrs client on the shared reqwest client, with `token` (none: unauthenticated).
    fn vault(&self, token: Option<&Secret>) -> Result<VaultClient, Error> {
        zt_tls::client::vault_client(&self.http, &self.addr, token.map(Secret::expose).unwrap_or_default())
            .map_err(|e| Error::OpenBao { reason: BaoReason::Failed, message: e.to_string() })
    }

    /// Runs `op` within the configured timeout.
    async fn timed<T>(&self, op: impl Future<Output = Result<T, Failure>>) -> Result<T, Failure> {
        tokio::time::timeout(self.settings.timeout, op).await.unwrap_or(Err(Failure::Timeout))
    }

    /// The backend's error for a `what` call that failed.
    fn failed(&self, what: &str, failure: Failure) -> Error {
        let unreachable = |reason: String| Error::OpenBao {
            reason: BaoReason::Unreachable,
            message: format!("cannot reach OpenBao at {}: {reason}", self.addr),
        };
        match failure {
            Failure::Timeout => unreachable("no answer in time".into()),
            Failure::Vault(VaultError::APIError { code, errors }) => {
                refused(what, &reply(code, json!({ "errors": errors }).to_string()))
            }
            Failure::Vault(VaultError::RestClientError { source }) => match source {
                rustify::errors::ClientError::ServerResponseError { code, content } => {
                    refused(what, &reply(code, content.unwrap_or_default()))
                }
                rustify::errors::ClientError::RequestError { source, .. } => unreachable(chain(source.as_ref())),
                other => Error::OpenBao {
                    reason: BaoReason::Failed,
                    message: format!("OpenBao's answer to {what} is not usable: {}", chain(&other)),
                },
            },
            Failure::Vault(other) => Error::OpenBao {
                reason: BaoReason::Failed,
                message: format!("OpenBao's answer to {what} is not usable: {}", chain(&other)),
            },
        }
    }

    /// Logs in at `auth/<jwt_mount>/login` with a fresh JWT-SVID for the configured audience.
    async fn login(&self) -> Result<Token, Error> {
        let svid =
            zt_tls::source::fetch_jwt_svid(&self.workload_endpoint, &self.settings.audience).await.map_err(|e| {
                Error::OpenBao { reason: BaoReason::NoSvid, message: format!("no JWT-SVID to log in to OpenBao: {e}") }
            })?;
        let client = self.vault(None)?;
        let role = Some(self.settings.role.clone());
        let auth = self
            .timed(async {
                Ok(vaultrs::auth::oidc::login(&client, &self.settings.jwt_mount, svid.token(), role).await?)
            })
            .await
            .map_err(|f| self.failed(&format!("the login with the JWT-SVID (role {:?})", self.settings.role), f))?;
        let ttl = auth.lease_duration;
        tracing::info!(role = %self.settings.role, ttl_secs = ttl, "logged in to OpenBao with a JWT-SVID");
        Ok(Token {
            token: Secret::new(&auth.client_token),
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

    /// An authenticated call (`op` on a vaultrs client with the current token); on 403 (token
    /// expired or revoked) logs in again and retries once. `what` names the call in errors.
    async fn call<T, F, Fut>(&self, what: &str, op: F) -> Result<T, Error>
    where
        F: Fn(VaultClient) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let token = self.token().await?;
        let first = self.timed(op(self.vault(Some(&token))?)).await;
        match first {
            Err(f) if f.status() == Some(403) && self.static_token.is_none() => {
                {
                    let mut slot = self.token.lock().await;
                    if slot.as_ref().is_some_and(|t| t.token == token) {
                        *slot = None;
                    }
                }
                tracing::info!(what, "OpenBao answered 403; logging in again");
                let token = self.token().await?;
                self.timed(op(self.vault(Some(&token))?)).await.map_err(|f| self.failed(what, f))
            }
            other => other.map_err(|f| self.failed(what, f)),
        }
    }

    /// New dynamic credentials from `<db_mount>/creds/<db_role>`, with their lease.
    pub async fn db_creds(&self) -> Result<DbCreds, Error> {
        let path = format!("{}/creds/{}", self.settings.db_mount, self.settings.db_role);
        let (mount, role) = (&self.settings.db_mount, &self.settings.db_role);
        let body = self
            .call(&format!("database credentials at {path}"), |client| async move {
                // vaultrs' `database::creds::generate` keeps only `data`: run its endpoint and
                // keep the whole answer (lease_id, lease_duration, renewable).
                let endpoint = GenerateCredentialsRequest { mount: mount.clone(), name: role.clone() };
                let result = endpoint.with_middleware(&client.middle).exec(&client.http).await?;
                serde_json::from_slice::<Value>(&result.raw())
                    .map_err(|e| Failure::Vault(VaultError::JsonParseError { source: e }))
            })
            .await?;
        parse_creds(&body, SystemTime::now())
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
        self.call(&format!("revoking lease {lease_id}"), |client| async move {
            let endpoint = RevokeLease { lease_id: lease_id.to_owned() };
            Ok(vaultrs::api::exec_with_empty(&client, endpoint).await?)
        })
        .await
    }

    /// `github/<username>` under the KV v2 mount.
    fn github_path(username: &str) -> String {
        format!("github/{username}")
    }

    /// Stores a user's GitHub token at `<kv_mount>/data/github/<username>` (field `token`).
    pub async fn put_github_token(&self, username: &str, token: &GithubToken) -> Result<(), Error> {
        let (mount, path) = (&self.settings.kv_mount, Self::github_path(username));
        let data = json!({"token": token.expose()});
        self.call("storing the GitHub token", |client| {
            let (path, data) = (&path, &data);
            async move {
                vaultrs::kv2::set(&client, mount, path, data).await?;
                Ok(())
            }
        })
        .await
    }

    /// A user's GitHub token, if stored.
    pub async fn github_token(&self, username: &str) -> Result<Option<GithubToken>, Error> {
        let (mount, path) = (&self.settings.kv_mount, Self::github_path(username));
        let data = self
            .call("reading the GitHub token", |client| {
                let path = &path;
                async move {
                    match vaultrs::kv2::read::<Value>(&client, mount, path).await {
                        Ok(data) => Ok(Some(data)),
                        Err(VaultError::APIError { code: 404, .. }) => Ok(None),
                        Err(e) => Err(e.into()),
                    }
                }
            })
            .await?;
        Ok(data
            .as_ref()
            .and_then(|d| d.get("token"))
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(GithubToken::new))
    }

    /// Whether OpenBao is sealed (`sys/seal-status`, no token needed).
    pub async fn sealed(&self) -> Result<bool, Error> {
        let client = self.vault(None)?;
        let status = self
            .timed(async { Ok(vaultrs::api::exec_with_no_result(&client, SealStatus).await?) })
            .await
            .map_err(|f| self.failed("the seal status", f))?;
        Ok(status.sealed)
    }

    /// Checks that OpenBao is reachable and unsealed, as an error for the UI otherwise.
    pub async fn check_unsealed(&self) -> Result<(), Error> {
        if self.sealed().await? {
            return Err(Error::OpenBao { reason: BaoReason::Sealed, message: "OpenBao is sealed".into() });
        }
        Ok(())
    }
}

/// An OpenBao error answer as a [`Reply`], for [`refused`].
fn reply(status: u16, body: String) -> Reply {
    Reply {
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
        headers: Default::default(),
        body: body.into(),
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
        super::reply(status, body.to_owned())
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
