//! A small JSON-over-HTTP helper on `zt_tls::client::WebClient` (OpenBao, GitHub), with
//! request headers. Credential headers are marked sensitive and never logged.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use zt_tls::client::WebClient;

/// An HTTP answer.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Reply {
    /// The body as JSON (`Null` when empty or not JSON).
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The request could not be built (bad URL or header).
    Request(String),
    /// No connection, or it broke.
    Connect(String),
    /// No answer in time.
    Timeout,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Request(m) => write!(f, "invalid request: {m}"),
            Self::Connect(m) => write!(f, "{m}"),
            Self::Timeout => write!(f, "no answer in time"),
        }
    }
}

fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let msg = e.to_string();
        if !parts.iter().any(|p| p.contains(&msg)) {
            parts.push(msg);
        }
        cur = e.source();
    }
    parts.join(": ")
}

/// Sends one request. `json` is sent as the body with `content-type: application/json`.
pub(crate) async fn send(
    client: &WebClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    json: Option<&serde_json::Value>,
    timeout: Duration,
) -> Result<Reply, Failure> {
    let mut req = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| Failure::Request(format!("header {name}")))?;
        // The value is not echoed: it may be a credential.
        let mut value =
            HeaderValue::from_str(value).map_err(|_| Failure::Request(format!("value of header {name}")))?;
        value.set_sensitive(matches!(name.as_str(), "authorization" | "x-vault-token"));
        req = req.header(name, value);
    }
    let body = match json {
        Some(v) => {
            req = req.header("content-type", "application/json");
            Bytes::from(v.to_string())
        }
        None => Bytes::new(),
    };
    let req = req.body(Full::new(body)).map_err(|_| Failure::Request(format!("URL {url:?}")))?;
    let exchange = async {
        let resp = client.request(req).await.map_err(|e| Failure::Connect(chain(&e)))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.map_err(|e| Failure::Connect(chain(&e)))?.to_bytes();
        Ok(Reply { status, headers, body })
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| Failure::Timeout)?
}
