//! `github-fixture`: a test double for GitHub's REST API, because the lab cannot reach GitHub.
//!
//! It answers the two calls the backend makes, in GitHub's shapes, and marks every response
//! with the header `x-ztlab-fixture: github` so that callers (and the UI) can say that a
//! fixture answered:
//!
//! - `GET /user`: `{login, id, name, html_url, public_repos}`;
//! - `GET /user/repos`: three repositories per user,
//!   `[{id, name, full_name, private, html_url, description, stargazers_count}]`.
//!
//! Credentials: `Authorization: Bearer <token>` or `Authorization: token <token>`. A token that
//! starts with [`TOKEN_PREFIX`] (`ghp_fixture_`) followed by a login (letters, digits and `-`)
//! is valid for that login, optionally followed by `_<secret>`: `ghp_fixture_jake` and
//! `ghp_fixture_jake_x1y2` are user `jake`. Anything else gets GitHub's
//! `401 {"message":"Bad credentials"}`. Answers are deterministic per login. Tokens are never
//! logged.

use std::net::SocketAddr;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

/// The header that marks a fixture response.
pub const FIXTURE_HEADER: &str = "x-ztlab-fixture";

/// Valid tokens start with this; the rest is the login.
pub const TOKEN_PREFIX: &str = "ghp_fixture_";

const DOCS: &str = "https://docs.github.com/rest";

/// The fixture's routes.
pub fn router() -> Router {
    Router::new()
        .route("/user", get(user))
        .route("/user/repos", get(repos))
        .fallback(not_found)
        .layer(axum::middleware::map_response(mark))
        .layer(axum::middleware::from_fn(zt_service::request::trace))
}

async fn mark(mut response: Response) -> Response {
    response.headers_mut().insert(FIXTURE_HEADER, HeaderValue::from_static("github"));
    response
}

fn message(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"message": message, "documentation_url": DOCS, "status": status.as_u16().to_string()})))
        .into_response()
}

async fn not_found() -> Response {
    message(StatusCode::NOT_FOUND, "Not Found")
}

/// The login a request's token is valid for, if it is.
pub fn login_for(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") && !scheme.eq_ignore_ascii_case("token") {
        return None;
    }
    // `ghp_fixture_<login>` or `ghp_fixture_<login>_<anything>`: the part after the login plays
    // the token's secret (tests check that it never reaches a log).
    let rest = token.trim().strip_prefix(TOKEN_PREFIX)?;
    let login = rest.split_once('_').map_or(rest, |(l, _)| l);
    let valid = !login.is_empty()
        && login.len() <= 39
        && login.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !login.starts_with('-');
    valid.then(|| login.to_owned())
}

/// A stable number for a login (FNV-1a), so that ids and counts are deterministic.
fn seed(login: &str) -> u64 {
    login.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The `/user` answer for `login`.
pub fn user_json(login: &str) -> Value {
    let mut name = login.to_owned();
    if let Some(first) = name.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    json!({
        "login": login,
        "id": 1_000_000 + seed(login) % 9_000_000,
        "name": format!("{name} (fixture)"),
        "html_url": format!("https://github.com/{login}"),
        "public_repos": 2,
    })
}

/// The `/user/repos` answer for `login`: three repositories, one private.
pub fn repos_json(login: &str) -> Value {
    let base = seed(login);
    let repos = [
        ("case-files", true, "Evidence notes for open cases"),
        ("precinct-tools", false, "Scripts the 99th precinct uses every day"),
        ("ztlab-demo", false, "Zero-trust lab walkthrough"),
    ];
    Value::Array(
        repos
            .iter()
            .enumerate()
            .map(|(i, (name, private, description))| {
                json!({
                    "id": 100_000_000 + (base % 1_000_000) * 10 + i as u64,
                    "name": name,
                    "full_name": format!("{login}/{name}"),
                    "private": private,
                    "html_url": format!("https://github.com/{login}/{name}"),
                    "description": description,
                    "stargazers_count": (base >> (8 * i)) % 100,
                })
            })
            .collect(),
    )
}

async fn user(headers: HeaderMap) -> Response {
    match login_for(&headers) {
        Some(login) => {
            tracing::info!(%login, path = "/user", "answered");
            axum::Json(user_json(&login)).into_response()
        }
        None => unauthorized("/user"),
    }
}

async fn repos(headers: HeaderMap) -> Response {
    match login_for(&headers) {
        Some(login) => {
            tracing::info!(%login, path = "/user/repos", "answered");
            axum::Json(repos_json(&login)).into_response()
        }
        None => unauthorized("/user/repos"),
    }
}

fn unauthorized(path: &str) -> Response {
    tracing::info!(path, "refused: bad credentials");
    message(StatusCode::UNAUTHORIZED, "Bad credentials")
}

/// A bound, not yet serving fixture.
#[derive(Debug)]
pub struct Application {
    listener: tokio::net::TcpListener,
}

impl Application {
    /// Binds `listen` (`host:port`; port 0 picks a free one).
    pub async fn build(listen: &str) -> anyhow::Result<Self> {
        Ok(Self { listener: zt_service::workload::bind("--listen", listen).await? })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Serves until `shutdown` resolves.
    pub async fn run_until_stopped<F>(self, shutdown: F) -> anyhow::Result<()>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        tracing::info!(addr = %self.addr(), "serving the GitHub API fixture");
        axum::serve(self.listener, router()).with_graceful_shutdown(shutdown).await?;
        tracing::info!("stopped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    async fn get(path: &str, auth: Option<&str>) -> (StatusCode, HeaderMap, Value) {
        let mut req = Request::builder().uri(path);
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        let resp = router().oneshot(req.body(Body::empty()).expect("request")).await.expect("response");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, headers, serde_json::from_slice(&body).expect("json"))
    }

    #[tokio::test]
    async fn user_and_repos_for_valid_tokens() {
        for auth in ["Bearer ghp_fixture_jake", "token ghp_fixture_jake", "bearer ghp_fixture_jake_s3cr3t"] {
            let (status, headers, body) = get("/user", Some(auth)).await;
            assert_eq!(status, StatusCode::OK, "{auth}");
            assert_eq!(headers[FIXTURE_HEADER], "github");
            assert_eq!(body["login"], "jake");
            for field in ["id", "name", "html_url", "public_repos"] {
                assert!(body.get(field).is_some(), "{field}");
            }
        }
        let (status, headers, body) = get("/user/repos", Some("Bearer ghp_fixture_amy")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[FIXTURE_HEADER], "github");
        let repos = body.as_array().expect("array");
        assert_eq!(repos.len(), 3);
        assert_eq!(repos[0]["full_name"], "amy/case-files");
        for field in ["id", "name", "full_name", "private", "html_url", "description", "stargazers_count"] {
            assert!(repos[1].get(field).is_some(), "{field}");
        }
        // Deterministic.
        assert_eq!(get("/user/repos", Some("Bearer ghp_fixture_amy")).await.2, body);
        assert_ne!(get("/user/repos", Some("Bearer ghp_fixture_rosa")).await.2, body);
    }

    #[tokio::test]
    async fn bad_credentials_like_github() {
        for auth in [None, Some("Bearer ghp_real_token"), Some("Bearer ghp_fixture_"), Some("Basic abc"), Some("x")] {
            for path in ["/user", "/user/repos"] {
                let (status, headers, body) = get(path, auth).await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?} {path}");
                assert_eq!(body["message"], "Bad credentials");
                assert_eq!(headers[FIXTURE_HEADER], "github");
            }
        }
        let (status, headers, _) = get("/nope", Some("Bearer ghp_fixture_jake")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(headers[FIXTURE_HEADER], "github");
    }

    #[tokio::test]
    async fn serves_and_stops() {
        let app = Application::build("127.0.0.1:0").await.expect("bind");
        let addr = app.addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async {
            let _ = rx.await;
        }));
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        stream
            .write_all(
                b"GET /user HTTP/1.1\r\nhost: x\r\nauthorization: token ghp_fixture_gina\r\nconnection: close\r\n\r\n",
            )
            .await
            .expect("write");
        let mut out = String::new();
        stream.read_to_string(&mut out).await.expect("read");
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.contains("\"login\":\"gina\""), "{out}");
        let _ = tx.send(());
        task.await.expect("join").expect("clean stop");
    }
}
