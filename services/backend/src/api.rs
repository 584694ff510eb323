//! The HTTP API (behind the backend's Envoy) and the extra ops routes.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use zt_usertoken::{Claims, Issuer, Verifier};

use crate::db::{self, Store};
use crate::error::Error;
use crate::github::{GithubClient, GithubToken};
use crate::openbao::OpenBao;
use crate::rotation::Database;
use crate::{rules, xfcc};

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The current database pool.
    pub db: Database,
    /// OpenBao.
    pub openbao: Arc<OpenBao>,
    /// Signs user tokens.
    pub issuer: Arc<Issuer>,
    /// Verifies user tokens with the issuer's own key.
    pub verifier: Verifier,
    /// GitHub (or the fixture).
    pub github: GithubClient,
}

/// The API routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/register", post(register))
        .route("/api/login", post(login))
        .route("/api/me", get(me))
        .route("/api/github/token", put(put_github_token))
        .route("/api/github/profile", get(github_profile))
        .route("/api/github/repos", get(github_repos))
        .route("/api/orders", get(orders))
        .route("/api/demo", get(demo))
        .fallback(|| async { Error::NotFound("no such route".into()) })
        .with_state(state)
        .layer(axum::middleware::from_fn(caller))
        .layer(axum::middleware::from_fn(zt_service::request::trace))
}

/// The calling workload's SPIFFE ID, as the backend's Envoy forwards it (XFCC): the backend is
/// reached only through its Envoy, which terminates mTLS.
fn caller_id(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get("x-forwarded-client-cert")?.to_str().ok()?;
    xfcc::nearest(raw)?.uri
}

/// Names the request's actor: the calling workload (see [`caller_id`]).
async fn caller(req: Request, next: axum::middleware::Next) -> Response {
    if let Some(id) = caller_id(req.headers()) {
        zt_service::request::set_actor(&id);
    }
    next.run(req).await
}

/// Routes added to the ops listener: `GET /.well-known/jwks.json` (the user-token JWKS,
/// public), `GET /readyz` (200 once a database pool is installed) and `GET /lease` (the
/// current database lease).
pub fn ops_routes(state: AppState) -> Router {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/readyz", get(readyz))
        .route("/lease", get(lease))
        .with_state(state)
}

/// A JSON body whose rejection is an [`Error`].
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(Error::invalid("body", rejection.body_text())),
        }
    }
}

/// The user of a request, from a valid `Authorization: Bearer <user token>`.
#[derive(Debug, Clone)]
pub struct AuthUser(pub Claims);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let token = bearer(&parts.headers)
            .ok_or_else(|| Error::Unauthenticated("missing header Authorization: Bearer <token>".into()))?;
        let claims = state.verifier.verify(token).await.map_err(|e| Error::Unauthenticated(e.to_string()))?;
        // A person, through the workload that carries their token.
        let via = caller_id(&parts.headers).unwrap_or_else(|| zt_service::request::ANONYMOUS.to_owned());
        zt_service::request::set_actor(&format!("{} via {via}", claims.username));
        Ok(AuthUser(claims))
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

#[derive(Debug, Deserialize)]
struct RegisterRequest {
    #[serde(default)]
    username: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

async fn register(State(state): State<AppState>, JsonBody(req): JsonBody<RegisterRequest>) -> Result<Response, Error> {
    let username = req.username.trim().to_owned();
    let email = req.email.trim().to_owned();
    rules::check_username(&username)?;
    rules::check_email(&email)?;
    rules::check_password(&req.password, &username)?;
    let taken = {
        let username = username.clone();
        state.db.run(move |s: Store| {
            let username = username.clone();
            async move { s.username_taken(&username).await }
        })
    }
    .await?;
    if taken {
        return Err(Error::Taken { field: "username", message: "username is already taken".into() });
    }
    let hash = db::hash_password(req.password).await?;
    let user = state
        .db
        .run(|s: Store| {
            let (username, email, hash) = (username.clone(), email.clone(), hash.clone());
            async move { s.create_user(&username, &email, &hash, db::DEFAULT_ROLE).await }
        })
        .await?;
    tracing::info!(username = %user.username, "registered a user");
    Ok((StatusCode::CREATED, Json(json!({ "user": user }))).into_response())
}

#[derive(Debug, Deserialize)]
struct LoginRequest {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// A bcrypt hash (same cost) checked when the user does not exist, so that an unknown user
/// takes as long as a wrong password.
async fn decoy_hash() -> Result<String, Error> {
    static DECOY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    DECOY.get_or_try_init(|| db::hash_password(format!("decoy-{}", std::process::id()))).await.cloned()
}

fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

async fn login(State(state): State<AppState>, JsonBody(req): JsonBody<LoginRequest>) -> Result<Json<Value>, Error> {
    if req.username.is_empty() {
        return Err(Error::invalid("username", "username is required"));
    }
    if req.password.is_empty() {
        return Err(Error::invalid("password", "password is required"));
    }
    let username = req.username.trim().to_owned();
    let record = state
        .db
        .run(|s: Store| {
            let username = username.clone();
            async move { s.user_by_username(&username).await }
        })
        .await?;
    let hash = match &record {
        Some(r) => r.password_hash.clone(),
        None => decoy_hash().await?,
    };
    let matches = db::verify_password(req.password, hash).await?;
    let Some(record) = record.filter(|_| matches) else {
        tracing::info!(%username, "login refused");
        return Err(Error::BadCredentials);
    };
    let user = record.user;
    let (token, claims) = state
        .issuer
        .issue(user.id, &user.username)
        .map_err(|e| Error::Internal(format!("cannot issue a token: {e}")))?;
    tracing::info!(username = %user.username, "logged in");
    Ok(Json(json!({
        "token": token,
        "token_type": "Bearer",
        "expires_at": rfc3339(claims.exp),
        "expires_in": claims.exp - claims.iat,
        "user": user,
    })))
}

async fn me(State(state): State<AppState>, AuthUser(claims): AuthUser) -> Result<Json<Value>, Error> {
    let user = state
        .db
        .run(|s: Store| async move { s.user_by_id(claims.user_id).await })
        .await?
        .ok_or_else(|| Error::Unauthenticated("the token's user no longer exists".into()))?;
    Ok(Json(json!({ "user": user, "token_expires_at": rfc3339(claims.exp) })))
}

#[derive(Debug, Deserialize)]
struct PutTokenRequest {
    #[serde(default)]
    token: Option<GithubToken>,
}

async fn put_github_token(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    JsonBody(req): JsonBody<PutTokenRequest>,
) -> Result<Json<Value>, Error> {
    let token = req.token.ok_or_else(|| Error::invalid("token", "token is required"))?;
    token.check()?;
    state.openbao.put_github_token(&claims.username, &token).await?;
    tracing::info!(username = %claims.username, "stored a GitHub token in OpenBao");
    Ok(Json(json!({ "stored": true, "fixture": state.github.is_fixture() })))
}

async fn stored_token(state: &AppState, username: &str) -> Result<GithubToken, Error> {
    state.openbao.github_token(username).await?.ok_or(Error::NoGithubToken)
}

async fn github_profile(State(state): State<AppState>, AuthUser(claims): AuthUser) -> Result<Json<Value>, Error> {
    let token = stored_token(&state, &claims.username).await?;
    let answer = state.github.profile(&token).await?;
    Ok(Json(json!({ "fixture": answer.fixture, "profile": answer.body })))
}

async fn github_repos(State(state): State<AppState>, AuthUser(claims): AuthUser) -> Result<Json<Value>, Error> {
    let token = stored_token(&state, &claims.username).await?;
    let answer = state.github.repos(&token).await?;
    Ok(Json(json!({ "fixture": answer.fixture, "repos": answer.body })))
}

async fn orders(State(state): State<AppState>) -> Result<Json<Value>, Error> {
    let orders = state.db.run(|s: Store| async move { s.orders().await }).await?;
    Ok(Json(json!({ "orders": orders })))
}

/// The Envoy hop of the demo evidence, from XFCC.
pub fn envoy_evidence(headers: &HeaderMap) -> Value {
    let raw = headers.get("x-forwarded-client-cert").and_then(|v| v.to_str().ok());
    let nearest = raw.and_then(xfcc::nearest);
    json!({
        "xfcc": raw,
        "client_spiffe_id": nearest.as_ref().and_then(|e| e.uri.clone()),
        "server_spiffe_id": nearest.as_ref().and_then(|e| e.by.clone()),
    })
}

async fn demo(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, Error> {
    let envoy = envoy_evidence(&headers);
    let (pg, orders) = state.db.run(|s: Store| async move { s.evidence().await }).await?;
    state.openbao.check_unsealed().await?;
    let lease = state.db.lease_info();
    Ok(Json(json!({
        "envoy": envoy,
        "postgres": pg,
        "openbao": {
            "lease_id": lease.as_ref().map(|l| l.lease_id.clone()),
            "db_user": lease.as_ref().map(|l| l.db_user.clone()),
            "ttl_left_secs": lease.as_ref().and_then(|l| l.ttl_left_secs),
            "lease_duration_secs": lease.as_ref().map(|l| l.lease_duration_secs),
            "rotations": state.db.rotations(),
        },
        "orders": orders,
    })))
}

async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "public, max-age=60")], Json(state.issuer.jwks()))
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.db.current() {
        Ok(_) => (StatusCode::OK, Json(json!({ "status": "ready", "lease": state.db.lease_info() }))).into_response(),
        Err(e) => {
            let mut body = e.body();
            body["status"] = "not_ready".into();
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

async fn lease(State(state): State<AppState>) -> Response {
    match state.db.lease_info() {
        Some(info) => Json(info).into_response(),
        None => state.db.current().err().unwrap_or(Error::Internal("no lease".into())).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use axum::body::Body;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use crate::config::{GithubSettings, OpenBaoSettings};
    use crate::error::BaoReason;

    struct Lab {
        state: AppState,
        _dir: tempfile::TempDir,
    }

    /// State with no database pool and an OpenBao address where nothing listens.
    fn lab() -> Lab {
        zt_tls::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let issuer = Issuer::load_or_create(&dir.path().join("key.pem"), "ztlab-backend", Duration::from_secs(3600))
            .expect("issuer");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let bao = OpenBaoSettings { addr: format!("http://127.0.0.1:{port}"), ..OpenBaoSettings::default() };
        let db = Database::new(0.83);
        db.set_error(Error::OpenBao { reason: BaoReason::Unreachable, message: "cannot reach OpenBao".into() });
        let state = AppState {
            db,
            openbao: Arc::new(OpenBao::new(&bao, "unix:///nonexistent/agent.sock")),
            verifier: issuer.verifier(),
            issuer: Arc::new(issuer),
            github: GithubClient::new(&GithubSettings::default()),
        };
        Lab { state, _dir: dir }
    }

    async fn call(
        state: &AppState,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let resp = router(state.clone()).oneshot(req.body(body).expect("request")).await.expect("response");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn register_names_the_bad_field_before_touching_the_database() {
        let lab = lab();
        let cases = [
            (json!({"email": "a@b", "password": "abcdefghij1"}), "username"),
            (json!({"username": "Jake", "email": "a@b", "password": "abcdefghij1"}), "username"),
            (json!({"username": "jake2", "email": "nope", "password": "abcdefghij1"}), "email"),
            (json!({"username": "jake2", "email": "j@b", "password": "short1"}), "password"),
            (json!({"username": "jake2", "email": "j@b", "password": "xjake2abcdef9"}), "password"),
        ];
        for (body, field) in cases {
            let (status, answer) = call(&lab.state, "POST", "/api/register", None, Some(body.clone())).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(answer["field"], field, "{body} -> {answer}");
            assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()));
        }
        let (status, answer) = call(&lab.state, "POST", "/api/register", None, Some(json!([1]))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(answer["field"], "body");
        // Valid, but there is no database: 503 that says which hop and why.
        let ok = json!({"username": "jake2", "email": "j@b", "password": "correcthorse9"});
        let (status, answer) = call(&lab.state, "POST", "/api/register", None, Some(ok)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!((answer["hop"].as_str(), answer["reason"].as_str()), (Some("openbao"), Some("openbao_unreachable")));
    }

    #[tokio::test]
    async fn login_requires_both_fields() {
        let lab = lab();
        let (status, answer) = call(&lab.state, "POST", "/api/login", None, Some(json!({"username": "jake"}))).await;
        assert_eq!((status, answer["field"].as_str()), (StatusCode::BAD_REQUEST, Some("password")));
        let body = json!({"username": "jake", "password": "jake99"});
        let (status, _) = call(&lab.state, "POST", "/api/login", None, Some(body)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn bearer_tokens_are_checked() {
        let lab = lab();
        for path in ["/api/me", "/api/github/profile", "/api/github/repos"] {
            let (status, answer) = call(&lab.state, "GET", path, None, None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
            assert!(answer["error"].as_str().is_some_and(|e| e.contains("Bearer")), "{answer}");
        }
        // Signed by another key: refused with the verifier's reason.
        let other_dir = tempfile::tempdir().expect("tempdir");
        let other = Issuer::load_or_create(&other_dir.path().join("k.pem"), "ztlab-backend", Duration::from_secs(60))
            .expect("issuer");
        let (forged, _) = other.issue(1, "jake").expect("token");
        let (status, answer) = call(&lab.state, "GET", "/api/me", Some(&forged), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(answer["error"].as_str().is_some_and(|e| e.contains("not known")), "{answer}");
        // A valid token gets past authentication to the (missing) dependencies.
        let (token, _) = lab.state.issuer.issue(1, "jake").expect("token");
        let (status, _) = call(&lab.state, "GET", "/api/me", Some(&token), None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let (status, answer) = call(&lab.state, "GET", "/api/github/profile", Some(&token), None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer["hop"], "openbao");
        let (status, answer) = call(&lab.state, "PUT", "/api/github/token", Some(&token), Some(json!({}))).await;
        assert_eq!((status, answer["field"].as_str()), (StatusCode::BAD_REQUEST, Some("token")));
        let body = json!({"token": "ghp_fixture_jake"});
        let (status, answer) = call(&lab.state, "PUT", "/api/github/token", Some(&token), Some(body)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!answer.to_string().contains("ghp_fixture_jake"), "{answer}");
    }

    #[tokio::test]
    async fn demo_and_orders_say_which_hop_failed() {
        let lab = lab();
        for path in ["/api/demo", "/api/orders"] {
            let (status, answer) = call(&lab.state, "GET", path, None, None).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
            assert_eq!(answer["hop"], "openbao", "{answer}");
            assert_eq!(answer["reason"], "openbao_unreachable", "{answer}");
        }
        let (status, answer) = call(&lab.state, "GET", "/nope", None, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(answer["error"].is_string());
    }

    #[test]
    fn envoy_evidence_from_xfcc() {
        let mut headers = HeaderMap::new();
        let xfcc = "By=spiffe://ztlab.test/ns/demo/sa/backend;Hash=abc;URI=spiffe://ztlab.test/ns/demo/sa/frontend";
        headers.insert("x-forwarded-client-cert", xfcc.parse().expect("value"));
        let e = envoy_evidence(&headers);
        assert_eq!(e["xfcc"], xfcc);
        assert_eq!(e["client_spiffe_id"], "spiffe://ztlab.test/ns/demo/sa/frontend");
        assert_eq!(e["server_spiffe_id"], "spiffe://ztlab.test/ns/demo/sa/backend");
        let none = envoy_evidence(&HeaderMap::new());
        assert!(none["xfcc"].is_null() && none["client_spiffe_id"].is_null());
    }

    #[tokio::test]
    async fn ops_routes_serve_the_jwks_that_other_services_verify_with() {
        let lab = lab();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let ops = ops_routes(lab.state.clone());
        tokio::spawn(async move { axum::serve(listener, ops).await });
        // What the document service does: verify a backend-issued token through the JWKS URL.
        let verifier = Verifier::new(&format!("http://{addr}/.well-known/jwks.json"), "ztlab-backend");
        let (token, claims) = lab.state.issuer.issue(7, "rosa").expect("token");
        assert_eq!(verifier.verify(&token).await.expect("verified"), claims);

        let resp = ops_routes(lab.state.clone())
            .oneshot(Request::builder().uri("/readyz").body(Body::empty()).expect("req"))
            .await
            .expect("resp");
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: Value =
            serde_json::from_slice(&resp.into_body().collect().await.expect("body").to_bytes()).expect("json");
        assert_eq!(body["status"], "not_ready");
        assert_eq!(body["hop"], "openbao");
    }
}
