//! GitHub's REST API (or the github-fixture test double at the same paths), called with a
//! user's stored token.

use std::fmt;
use std::time::Duration;

use hyper::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use zt_tls::client::WebClient;

use crate::config::GithubSettings;
use crate::error::Error;
use crate::http;

/// A GitHub token. It is never logged or shown: `Debug` and `Display` are redacted, and it
/// is not `Serialize`. It lives in OpenBao, never in PostgreSQL.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct GithubToken(String);

impl GithubToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token, for the calls that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Checks the shape: 1 to 255 visible ASCII characters, no spaces.
    pub fn check(&self) -> Result<(), Error> {
        let ok = !self.0.is_empty() && self.0.len() <= 255 && self.0.chars().all(|c| c.is_ascii_graphic());
        if !ok {
            return Err(Error::invalid("token", "token must be 1 to 255 visible ASCII characters without spaces"));
        }
        Ok(())
    }
}

impl fmt::Debug for GithubToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GithubToken(<redacted>)")
    }
}

impl fmt::Display for GithubToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The header with which github-fixture marks its answers.
pub const FIXTURE_HEADER: &str = "x-ztlab-fixture";

/// An answer from GitHub, and whether a fixture gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct GithubAnswer {
    /// The JSON body.
    pub body: Value,
    /// True when the configuration says `api_url` is the fixture, or the answer carried
    /// `x-ztlab-fixture: github`.
    pub fixture: bool,
}

/// Calls GitHub's REST API.
#[derive(Clone)]
pub struct GithubClient {
    http: WebClient,
    api_url: String,
    fixture: bool,
    timeout: Duration,
}

impl fmt::Debug for GithubClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubClient").field("api_url", &self.api_url).field("fixture", &self.fixture).finish()
    }
}

impl GithubClient {
    /// A client for `settings.api_url`.
    pub fn new(settings: &GithubSettings) -> Self {
        Self {
            http: zt_tls::client::web_client(),
            api_url: settings.api_url.trim_end_matches('/').to_owned(),
            fixture: settings.fixture,
            timeout: settings.timeout,
        }
    }

    /// Whether the configuration says this is the fixture.
    pub fn is_fixture(&self) -> bool {
        self.fixture
    }

    /// `GET /user`.
    pub async fn profile(&self, token: &GithubToken) -> Result<GithubAnswer, Error> {
        self.get("/user", token).await
    }

    /// `GET /user/repos`.
    pub async fn repos(&self, token: &GithubToken) -> Result<GithubAnswer, Error> {
        self.get("/user/repos", token).await
    }

    async fn get(&self, path: &str, token: &GithubToken) -> Result<GithubAnswer, Error> {
        let url = format!("{}{path}", self.api_url);
        let auth = format!("Bearer {}", token.expose());
        let headers = [
            ("authorization", auth.as_str()),
            ("accept", "application/vnd.github+json"),
            ("x-github-api-version", "2022-11-28"),
            ("user-agent", "ztlab-backend"),
        ];
        let reply = http::send(&self.http, Method::GET, &url, &headers, None, self.timeout)
            .await
            .map_err(|f| Error::Github(format!("cannot reach the GitHub API at {}: {f}", self.api_url)))?;
        let fixture = self.fixture || reply.headers.get(FIXTURE_HEADER).is_some_and(|v| v == "github");
        let body = reply.json();
        if reply.status.is_success() {
            return Ok(GithubAnswer { body, fixture });
        }
        let message = body.get("message").and_then(Value::as_str).unwrap_or("no message").to_owned();
        Err(Error::Github(match reply.status {
            StatusCode::UNAUTHORIZED => format!("GitHub rejected the stored token: {message}"),
            status => format!("GitHub answered {status} to GET {path}: {message}"),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_redacted() {
        let t = GithubToken::new("ghp_supersecret");
        assert_eq!(format!("{t:?}"), "GithubToken(<redacted>)");
        assert_eq!(t.to_string(), "<redacted>");
        let wrapped = Some(t.clone());
        assert!(!format!("{wrapped:?}").contains("supersecret"));
        let parsed: GithubToken = serde_json::from_str("\"ghp_x\"").expect("json");
        assert_eq!(parsed.expose(), "ghp_x");
        assert!(GithubToken::new("").check().is_err());
        assert!(GithubToken::new("a b").check().is_err());
        assert!(GithubToken::new("ghp_fixture_jake").check().is_ok());
    }

    async fn fixture() -> (String, tokio::task::JoinHandle<()>) {
        let app = github_fixture::Application::build("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", app.addr());
        let task = tokio::spawn(async move {
            let _ = app.run_until_stopped(std::future::pending()).await;
        });
        (url, task)
    }

    #[tokio::test]
    async fn calls_the_fixture() {
        zt_tls::install_crypto_provider();
        let (url, task) = fixture().await;
        // The config does not say fixture: the response header does.
        let client = GithubClient::new(&GithubSettings { api_url: url, ..GithubSettings::default() });
        assert!(!client.is_fixture());
        let token = GithubToken::new("ghp_fixture_jake");
        let profile = client.profile(&token).await.expect("profile");
        assert!(profile.fixture);
        assert_eq!(profile.body["login"], "jake");
        let repos = client.repos(&token).await.expect("repos");
        assert_eq!(repos.body.as_array().map(Vec::len), Some(3));

        let err = client.profile(&GithubToken::new("ghp_wrong")).await.expect_err("bad token");
        assert!(matches!(err, Error::Github(ref m) if m.contains("Bad credentials")), "{err:?}");
        assert!(!err.to_string().contains("ghp_wrong"));
        task.abort();
    }

    #[tokio::test]
    async fn unreachable_github_is_a_bad_gateway() {
        zt_tls::install_crypto_provider();
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let client = GithubClient::new(&GithubSettings {
            api_url: format!("http://127.0.0.1:{port}"),
            fixture: true,
            ..GithubSettings::default()
        });
        let err = client.profile(&GithubToken::new("ghp_fixture_jake")).await.expect_err("down");
        assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
    }
}
