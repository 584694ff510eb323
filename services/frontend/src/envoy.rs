//! Plain HTTP to the frontend's own Envoy: its outbound listener (which does the mTLS to the
//! backend's Envoy) and its admin interface. The app itself never speaks TLS to the backend.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::header::{CONTENT_TYPE, HeaderMap};
use hyper::{Method, StatusCode, Uri};
use zt_tls::client::WebClient;

use crate::Error;

/// The largest response body read from Envoy.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// A response from Envoy (or from the backend through it).
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// The `content-type` header, if any.
    pub content_type: Option<String>,
    /// The body.
    pub body: Bytes,
}

impl Reply {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// A plain-HTTP client for one base URL (`http://host:port`, no path), on the reqwest client
/// that `zt_tls::client` builds.
#[derive(Debug, Clone)]
pub struct PlainClient {
    http: WebClient,
    base: String,
    timeout: Duration,
}

impl PlainClient {
    /// A client for `base`, an `http://` URL; `field` names the setting in errors.
    pub fn new(field: &str, base: &str, timeout: Duration) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidSetting {
            field: field.to_owned(),
            value: base.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = base.parse().map_err(|e: hyper::http::uri::InvalidUri| invalid(&e.to_string()))?;
        if uri.scheme_str() != Some("http") {
            return Err(invalid("only http:// is supported: the app speaks plain HTTP to its local Envoy"));
        }
        if uri.authority().is_none() {
            return Err(invalid("no host:port"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(invalid("give the base URL only, without a path"));
        }
        Ok(Self { http: zt_tls::client::web_client(), base: base.trim_end_matches('/').to_owned(), timeout })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `base` + `path_and_query`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Reply, Error> {
        self.send(Method::GET, path, &HeaderMap::new(), Bytes::new()).await
    }

    /// Sends one request with `headers` and `body`; any HTTP answer is `Ok`.
    pub async fn send(&self, method: Method, path: &str, headers: &HeaderMap, body: Bytes) -> Result<Reply, Error> {
        let url = self.url(path);
        let request =
            self.http.request(method, &url).headers(headers.clone()).body(body).build().map_err(|e| {
                Error::InvalidSetting { field: "path".into(), value: url.clone(), reason: e.to_string() }
            })?;
        let exchange = async {
            let mut response = self
                .http
                .execute(request)
                .await
                .map_err(|e| Error::Connect { url: url.clone(), reason: error_chain(&e) })?;
            let status = response.status();
            let content_type = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let mut body = BytesMut::new();
            while let Some(chunk) =
                response.chunk().await.map_err(|e| Error::Body { url: url.clone(), reason: error_chain(&e) })?
            {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(Error::Body { url: url.clone(), reason: "length limit exceeded".into() });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Reply { status, content_type, body: body.freeze() })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout { url, timeout: self.timeout }),
        }
    }
}

/// An error and its sources on one line (`a: b: c`), without repeats.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let msg = s.to_string();
        if !parts.iter().any(|p| p.contains(&msg)) {
            parts.push(msg);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// Envoy's server state from its admin interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// `GET /ready` answered `LIVE`.
    Live,
    /// Envoy is not ready; the text says why (its state, or why the admin did not answer).
    NotReady(String),
}

/// Asks Envoy's admin interface `GET /ready` (200 `LIVE` when Envoy serves traffic).
pub async fn readiness(admin: &PlainClient) -> Readiness {
    match admin.get("/ready").await {
        Ok(reply) => {
            let state = reply.text().trim().to_owned();
            if reply.status == StatusCode::OK && state == "LIVE" {
                Readiness::Live
            } else {
                let state = if state.is_empty() { "no state".to_owned() } else { state };
                Readiness::NotReady(format!(
                    "Envoy reports {state} (admin {} answered {})",
                    admin.url("/ready"),
                    reply.status
                ))
            }
        }
        Err(e) => Readiness::NotReady(format!("Envoy's admin interface does not answer: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked() {
        let t = Duration::from_secs(1);
        assert!(PlainClient::new("backend_url", "http://127.0.0.1:10080", t).is_ok());
        assert_eq!(
            PlainClient::new("backend_url", "http://127.0.0.1:10080/", t).expect("ok").base(),
            "http://127.0.0.1:10080"
        );
        for bad in ["https://127.0.0.1:10080", "127.0.0.1:10080", "http://127.0.0.1:1/api", "not a url"] {
            let err = PlainClient::new("backend_url", bad, t).expect_err(bad).to_string();
            assert!(err.starts_with("backend_url:"), "{err}");
        }
    }
}
