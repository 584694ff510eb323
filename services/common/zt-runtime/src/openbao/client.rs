//! OpenBao's HTTP API on loopback for the lab: vaultrs where it has the call, plain JSON
//! requests where it has not.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::*;
use crate::{Error, Result};

/// The `errors` of an OpenBao error answer, on one line.
pub(super) fn api_errors(body: &Value) -> String {
    match body["errors"].as_array() {
        Some(errors) if !errors.is_empty() => errors
            .iter()
            .map(|e| {
                let s = e.as_str().map_or_else(|| e.to_string(), str::to_owned);
                // "1 error occurred:\n\t* permission denied\n\n" → "permission denied"
                let lines: Vec<&str> = s
                    .lines()
                    .map(|l| l.trim().trim_start_matches("* "))
                    .filter(|l| !l.is_empty() && !l.ends_with("error occurred:") && !l.ends_with("errors occurred:"))
                    .collect();
                lines.join("; ")
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ if body.is_null() => "(empty body)".to_owned(),
        _ => body.to_string(),
    }
}

/// What vaultrs said, in the words [`Client::call`] uses: `HTTP <status>: <OpenBao's errors>`,
/// or why there was no answer.
fn vault_message(e: vaultrs::error::ClientError) -> String {
    use rustify::errors::ClientError as Rest;
    use vaultrs::error::ClientError as Vault;
    match e {
        Vault::APIError { code, errors } => format!("HTTP {code}: {}", api_errors(&json!({ "errors": errors }))),
        Vault::RestClientError { source: Rest::ServerResponseError { code, content } } => {
            let body = content
                .as_deref()
                .map(|c| serde_json::from_str(c).unwrap_or_else(|_| Value::String(c.to_owned())))
                .unwrap_or(Value::Null);
            format!("HTTP {code}: {}", api_errors(&body))
        }
        other => {
            let mut parts = vec![other.to_string()];
            let mut cur = std::error::Error::source(&other);
            while let Some(e) = cur {
                parts.push(e.to_string());
                cur = e.source();
            }
            format!("no answer: {}", parts.join(": "))
        }
    }
}

/// An answer: its HTTP status and JSON body.
pub(super) type Answer = (u16, Value);

/// OpenBao's API on loopback: JSON in, status and JSON out.
pub(super) struct Client<'a> {
    pub(super) port: u16,
    /// Talk over this unix socket (the admin listener) instead of TCP.
    pub(super) socket: Option<PathBuf>,
    pub(super) record: &'a ProcessRecord,
}

impl Client<'_> {
    /// One request; the status and the JSON body (`null` when empty). Errors only when nothing
    /// (or garbage) answered.
    pub async fn send(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Result<Answer> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let command = format!("OpenBao {method} {url}");
        let Ok(method) = reqwest::Method::from_bytes(method.as_bytes()) else {
            return Err(self.failed(command, "not an HTTP method".into()));
        };
        let http = match &self.socket {
            Some(socket) => zt_tls::client::unix_socket_client(socket),
            None => zt_tls::client::web_client(),
        };
        let headers: Vec<(&str, &str)> = token.map(|t| vec![("x-vault-token", t)]).unwrap_or_default();
        let resp = match zt_tls::client::web_send(&http, method, &url, &headers, body, REQUEST_TIMEOUT).await {
            Ok(resp) => resp,
            Err(zt_tls::ClientError::Timeout { .. }) => {
                return Err(self.failed(command, format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())));
            }
            Err(e) => return Err(self.failed(command, format!("no answer: {e}"))),
        };
        let text = String::from_utf8_lossy(&resp.body);
        let text = text.trim();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
        };
        Ok((resp.status.as_u16(), value))
    }

    /// `op` on a vaultrs client with `token` (none: unauthenticated), within the request
    /// timeout; `method` and `path` name the call in errors, as [`Client::call`] does.
    pub async fn vault<T, F, Fut>(&self, method: &str, path: &str, token: Option<&str>, op: F) -> Result<T>
    where
        F: FnOnce(vaultrs::client::VaultClient) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, vaultrs::error::ClientError>>,
    {
        let command = format!("OpenBao {method} http://127.0.0.1:{}{path}", self.port);
        let http = zt_tls::client::web_client();
        let addr = format!("http://127.0.0.1:{}", self.port);
        let client = zt_tls::client::vault_client(&http, &addr, token.unwrap_or_default())
            .map_err(|e| self.failed(command.clone(), e.to_string()))?;
        match tokio::time::timeout(REQUEST_TIMEOUT, op(client)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.failed(command, vault_message(e))),
            Err(_) => Err(self.failed(command, format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()))),
        }
    }

    /// The ACL policy `name` = `rules` (vaultrs writes it at `sys/policy/<name>`).
    pub async fn set_policy(&self, token: &str, name: &str, rules: &str) -> Result<()> {
        self.vault("PUT", &format!("/v1/sys/policy/{name}"), Some(token), |v| async move {
            vaultrs::sys::policy::set(&v, name, rules).await
        })
        .await
    }

    /// [`Client::send`], and any status but 2xx is an error with OpenBao's messages.
    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Result<Value> {
        let (status, value) = self.send(method, path, token, body).await?;
        if (200..300).contains(&status) { Ok(value) } else { Err(self.api_error(method, path, status, &value)) }
    }

    pub fn api_error(&self, method: &str, path: &str, status: u16, body: &Value) -> Error {
        self.failed(
            format!("OpenBao {method} http://127.0.0.1:{}{path}", self.port),
            format!("HTTP {status}: {}", api_errors(body)),
        )
    }

    pub fn failed(&self, command: String, message: String) -> Error {
        Error::Command { command, message: format!("{message}\n  log: {}", self.record.log.display()) }
    }
}
