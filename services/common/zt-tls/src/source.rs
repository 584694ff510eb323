//! Connecting to the SPIFFE Workload API (the SPIRE agent's socket).

use std::path::Path;
use std::time::Duration;

use spiffe::workload_api::error::WorkloadApiError;
use spiffe::{WorkloadApiClient, X509Source};
use tokio::sync::watch;

use crate::{CertInfo, Error};

/// Turns a socket path or URI into the URI form the `spiffe` crate wants.
pub fn normalize_endpoint(endpoint: &str) -> Result<String, Error> {
    let endpoint = endpoint.trim();
    if let Some(path) = endpoint.strip_prefix("unix://") {
        if path.starts_with('/') {
            return Ok(endpoint.to_owned());
        }
    } else if let Some(path) = endpoint.strip_prefix("unix:") {
        if path.starts_with('/') {
            return Ok(format!("unix://{path}"));
        }
    } else if endpoint.starts_with("tcp://") {
        return Ok(endpoint.to_owned());
    } else if endpoint.starts_with('/') {
        return Ok(format!("unix://{endpoint}"));
    }
    Err(Error::InvalidEndpoint(endpoint.to_owned()))
}

fn socket_path(endpoint: &str) -> Option<&str> {
    endpoint.strip_prefix("unix://")
}

fn this_exe() -> String {
    std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "?".into())
}

/// Fetches this workload's X.509-SVID once, waiting up to `wait` for the agent to issue one.
/// Errors say which of the usual causes applies.
pub async fn check_identity(endpoint: &str, wait: Duration) -> Result<spiffe::X509Svid, Error> {
    let endpoint = normalize_endpoint(endpoint)?;
    if let Some(path) = socket_path(&endpoint)
        && !Path::new(path).exists()
    {
        return Err(Error::SocketMissing(path.to_owned()));
    }
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let attempt = async {
            let client = WorkloadApiClient::connect_to(&endpoint).await?;
            client.fetch_x509_svid().await
        };
        let err = match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Ok(svid)) => return Ok(svid),
            Ok(Err(e)) => e,
            Err(_) => WorkloadApiError::EmptyResponse,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(match err {
                WorkloadApiError::NoIdentityIssued => {
                    Error::NoIdentity { endpoint, pid: std::process::id(), exe: this_exe() }
                }
                WorkloadApiError::EmptyResponse => {
                    Error::AgentUnreachable { endpoint, reason: "no answer within 5 s".into() }
                }
                other if other.to_string().contains("transport") || other.to_string().contains("connect") => {
                    Error::AgentUnreachable { endpoint, reason: other.to_string() }
                }
                other => Error::WorkloadApi { endpoint, reason: other.to_string() },
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Connects an [`X509Source`] to the Workload API at `endpoint`, after checking (for up to
/// `wait`) that the agent issues this workload an SVID. The source then follows rotation by
/// itself for the life of the process.
pub async fn connect(endpoint: &str, wait: Duration) -> Result<X509Source, Error> {
    check_identity(endpoint, wait).await?;
    let endpoint = normalize_endpoint(endpoint)?;
    X509Source::builder()
        .endpoint(&endpoint)
        .initial_sync_timeout(wait.max(Duration::from_secs(5)))
        .reconnect_backoff(Duration::from_millis(200), Duration::from_secs(5))
        .build()
        .await
        .map_err(|e| Error::WorkloadApi { endpoint, reason: e.to_string() })
}

/// This workload's current SVID, if it has one.
pub fn current_svid(source: &X509Source) -> Option<CertInfo> {
    let svid = source.try_svid()?;
    let leaf = svid.cert_chain().first()?;
    CertInfo::from_der(leaf.as_bytes()).ok()
}

/// Publishes the current SVID on a `watch` channel, updated on every rotation. The task ends
/// when the source closes or every receiver is dropped.
pub fn watch_svid(source: &X509Source) -> watch::Receiver<Option<CertInfo>> {
    let (tx, rx) = watch::channel(current_svid(source));
    let source = source.clone();
    tokio::spawn(async move {
        let mut updates = source.updated();
        loop {
            if updates.changed().await.is_err() {
                break;
            }
            let info = current_svid(&source);
            if let Some(i) = &info {
                tracing::info!(spiffe_id = %i.spiffe_id, serial = %i.serial, expires_at = %i.expires_at, "SVID rotated");
            }
            if tx.send(info).is_err() {
                break;
            }
        }
    });
    rx
}

/// Fetches a JWT-SVID for `audience` from the Workload API.
pub async fn fetch_jwt_svid(endpoint: &str, audience: &str) -> Result<spiffe::JwtSvid, Error> {
    let endpoint = normalize_endpoint(endpoint)?;
    let client = WorkloadApiClient::connect_to(&endpoint)
        .await
        .map_err(|e| Error::AgentUnreachable { endpoint: endpoint.clone(), reason: e.to_string() })?;
    client.fetch_jwt_svid(&[audience], None).await.map_err(|e| match e {
        WorkloadApiError::NoIdentityIssued => {
            Error::NoIdentity { endpoint: endpoint.clone(), pid: std::process::id(), exe: this_exe() }
        }
        other => Error::WorkloadApi { endpoint: endpoint.clone(), reason: other.to_string() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_normalize() {
        assert_eq!(normalize_endpoint("/tmp/a.sock").expect("ok"), "unix:///tmp/a.sock");
        assert_eq!(normalize_endpoint("unix:/tmp/a.sock").expect("ok"), "unix:///tmp/a.sock");
        assert_eq!(normalize_endpoint("unix:///tmp/a.sock").expect("ok"), "unix:///tmp/a.sock");
        assert_eq!(normalize_endpoint("tcp://127.0.0.1:1").expect("ok"), "tcp://127.0.0.1:1");
        assert!(matches!(normalize_endpoint("tmp/a.sock"), Err(Error::InvalidEndpoint(_))));
        assert!(matches!(normalize_endpoint("http://x"), Err(Error::InvalidEndpoint(_))));
    }

    #[tokio::test]
    async fn missing_socket_is_named() {
        let err =
            check_identity("/nonexistent/ztlab/agent.sock", Duration::from_millis(10)).await.expect_err("no socket");
        assert!(matches!(err, Error::SocketMissing(ref p) if p == "/nonexistent/ztlab/agent.sock"), "{err}");
        assert!(err.to_string().contains("is the agent running"));
    }
}
