//! A small JSON-over-HTTP helper on `zt_tls::client::WebClient` (OpenBao, GitHub), with
//! request headers. Credential headers are marked sensitive and never logged.

use std::time::Duration;

use bytes::Bytes;
use hyper::header::HeaderMap;
use hyper::{Method, StatusCode};
use zt_tls::client::{ClientError, WebClient};

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

/// Sends one request ([`zt_tls::client::web_send`]). `json` is sent as the body with
/// `content-type: application/json`.
pub(crate) async fn send(
    client: &WebClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    json: Option<&serde_json::Value>,
    timeout: Duration,
) -> Result<Reply, Failure> {
    match zt_tls::client::web_send(client, method, url, headers, json, timeout).await {
        Ok(r) => Ok(Reply { status: r.status, headers: r.headers, body: r.body }),
        Err(ClientError::InvalidHeader(name)) => Err(Failure::Request(format!("header {name}"))),
        Err(ClientError::InvalidUrl(_)) => Err(Failure::Request(format!("URL {url:?}"))),
        Err(ClientError::Timeout { .. }) => Err(Failure::Timeout),
        Err(ClientError::Connect { reason, .. } | ClientError::Tls { reason, .. }) => Err(Failure::Connect(reason)),
        Err(other) => Err(Failure::Connect(other.to_string())),
    }
}
