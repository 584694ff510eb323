//! Connecting to the SPIFFE Workload API (the SPIRE agent's socket).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use spiffe::workload_api::error::WorkloadApiError;
use spiffe::x509_source::SvidPicker;
use spiffe::{SpiffeId, WorkloadApiClient, X509Source, X509Svid};
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
    let endpoint = checked_endpoint(endpoint)?;
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
            return Err(classify(endpoint, err));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Turns a Workload API error into the [`Error`] that says which usual cause applies.
fn classify(endpoint: String, err: WorkloadApiError) -> Error {
    match err {
        WorkloadApiError::NoIdentityIssued => Error::NoIdentity { endpoint, pid: std::process::id(), exe: this_exe() },
        WorkloadApiError::EmptyResponse => Error::AgentUnreachable { endpoint, reason: "no answer within 5 s".into() },
        other if other.to_string().contains("transport") || other.to_string().contains("connect") => {
            Error::AgentUnreachable { endpoint, reason: other.to_string() }
        }
        other => Error::WorkloadApi { endpoint, reason: other.to_string() },
    }
}

/// Normalizes `endpoint` and checks that a unix socket exists.
fn checked_endpoint(endpoint: &str) -> Result<String, Error> {
    let endpoint = normalize_endpoint(endpoint)?;
    if let Some(path) = socket_path(&endpoint)
        && !Path::new(path).exists()
    {
        return Err(Error::SocketMissing(path.to_owned()));
    }
    Ok(endpoint)
}

/// Every SVID the agent issues this workload, once (5 s timeout). `Ok(vec![])` when the agent
/// answers that it issued none.
async fn fetch_all(endpoint: &str) -> Result<Vec<X509Svid>, Error> {
    let attempt = async {
        let client = WorkloadApiClient::connect_to(endpoint).await?;
        client.fetch_all_x509_svids().await
    };
    match tokio::time::timeout(Duration::from_secs(5), attempt).await {
        Ok(Ok(svids)) => Ok(svids),
        Ok(Err(WorkloadApiError::NoIdentityIssued)) => Ok(Vec::new()),
        Ok(Err(e)) => Err(classify(endpoint.to_owned(), e)),
        Err(_) => Err(classify(endpoint.to_owned(), WorkloadApiError::EmptyResponse)),
    }
}

/// The SPIFFE IDs of every X.509-SVID the agent at `endpoint` issues this workload right now
/// (one per matching registration entry; empty when none matches). One call, no waiting.
pub async fn issued_ids(endpoint: &str) -> Result<Vec<SpiffeId>, Error> {
    let endpoint = checked_endpoint(endpoint)?;
    Ok(fetch_all(&endpoint).await?.iter().map(|s| s.spiffe_id().clone()).collect())
}

/// An [`SvidPicker`] that selects the SVID with one SPIFFE ID. When the agent stops issuing that
/// ID, the source has no identity (it never falls back to another SVID), so the workload cannot
/// present someone else's identity by accident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickById(pub SpiffeId);

impl PickById {
    /// The index of the SVID with this picker's SPIFFE ID, if any.
    pub fn position<S: AsRef<X509Svid>>(&self, svids: &[S]) -> Option<usize> {
        svids.iter().position(|s| s.as_ref().spiffe_id() == &self.0)
    }
}

impl SvidPicker for PickById {
    fn pick_svid(&self, svids: &[Arc<X509Svid>]) -> Option<usize> {
        self.position(svids)
    }
}

/// Like [`connect`], for a workload that is issued several SVIDs (several entries match its
/// selectors): waits up to `wait` until the agent issues an SVID with SPIFFE ID `id`, then
/// connects an [`X509Source`] that always presents that one ([`PickById`]), through rotation.
/// If `id` is not issued in time, the error names it and the IDs that were issued.
pub async fn connect_as(endpoint: &str, id: &SpiffeId, wait: Duration) -> Result<X509Source, Error> {
    let endpoint = checked_endpoint(endpoint)?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let last = fetch_all(&endpoint).await;
        if let Ok(svids) = &last
            && svids.iter().any(|s| s.spiffe_id() == id)
        {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let svids = last?;
            return Err(Error::IdNotIssued {
                endpoint,
                wanted: id.to_string(),
                issued: svids.iter().map(|s| s.spiffe_id().to_string()).collect(),
                waited: wait,
                pid: std::process::id(),
                exe: this_exe(),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    build_source(endpoint, Some(PickById(id.clone())), wait).await
}

async fn build_source(endpoint: String, picker: Option<PickById>, wait: Duration) -> Result<X509Source, Error> {
    let builder = X509Source::builder()
        .endpoint(&endpoint)
        .initial_sync_timeout(wait.max(Duration::from_secs(5)))
        .reconnect_backoff(Duration::from_millis(200), Duration::from_secs(5));
    let builder = match picker {
        Some(p) => builder.picker(p),
        None => builder,
    };
    builder.build().await.map_err(|e| Error::WorkloadApi { endpoint, reason: e.to_string() })
}

/// Connects an [`X509Source`] to the Workload API at `endpoint`, after checking (for up to
/// `wait`) that the agent issues this workload an SVID. The source then follows rotation by
/// itself for the life of the process.
pub async fn connect(endpoint: &str, wait: Duration) -> Result<X509Source, Error> {
    check_identity(endpoint, wait).await?;
    build_source(normalize_endpoint(endpoint)?, None, wait).await
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
    fetch_jwt_svid_as(endpoint, audience, None).await
}

/// Fetches a JWT-SVID for `audience`, for the SPIFFE ID `id` when the workload holds several.
pub async fn fetch_jwt_svid_as(
    endpoint: &str,
    audience: &str,
    id: Option<&spiffe::SpiffeId>,
) -> Result<spiffe::JwtSvid, Error> {
    let endpoint = normalize_endpoint(endpoint)?;
    let client = WorkloadApiClient::connect_to(&endpoint)
        .await
        .map_err(|e| Error::AgentUnreachable { endpoint: endpoint.clone(), reason: e.to_string() })?;
    client.fetch_jwt_svid(&[audience], id).await.map_err(|e| match e {
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

    /// A self-signed X.509-SVID for `id` (leaf only: the picker looks at the SPIFFE ID, not
    /// at the chain).
    fn svid(id: &str) -> Arc<X509Svid> {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.subject_alt_names = vec![rcgen::SanType::URI(id.try_into().expect("ia5"))];
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        let cert = params.self_signed(&key).expect("cert");
        Arc::new(X509Svid::parse_from_der(cert.der(), &key.serialize_der()).expect("valid X.509-SVID"))
    }

    fn id(s: &str) -> SpiffeId {
        SpiffeId::new(s).expect("id")
    }

    #[test]
    fn picker_selects_the_svid_with_the_wanted_id() {
        let svids: Vec<Arc<X509Svid>> =
            ["gpt4", "claude", "summarizer"].iter().map(|a| svid(&format!("spiffe://ztlab.test/agent/{a}"))).collect();
        for (i, a) in ["gpt4", "claude", "summarizer"].iter().enumerate() {
            let picker = PickById(id(&format!("spiffe://ztlab.test/agent/{a}")));
            assert_eq!(picker.pick_svid(&svids), Some(i), "{a}");
        }
        // Not issued, or the same path in another trust domain: nothing, never another SVID.
        for missing in ["spiffe://ztlab.test/agent/llama", "spiffe://other.test/agent/gpt4"] {
            assert_eq!(PickById(id(missing)).pick_svid(&svids), None, "{missing}");
        }
        assert_eq!(PickById(id("spiffe://ztlab.test/agent/gpt4")).pick_svid(&[]), None);
    }

    #[test]
    fn id_not_issued_names_wanted_and_issued_ids() {
        let err = Error::IdNotIssued {
            endpoint: "unix:///tmp/a.sock".into(),
            wanted: "spiffe://ztlab.test/agent/summarizer".into(),
            issued: vec!["spiffe://ztlab.test/agent/gpt4".into(), "spiffe://ztlab.test/agent/claude".into()],
            waited: Duration::from_secs(3),
            pid: 42,
            exe: "/lab/bin/agents".into(),
        };
        let msg = err.to_string();
        assert!(msg.contains("did not issue spiffe://ztlab.test/agent/summarizer"), "{msg}");
        assert!(msg.contains("it issued spiffe://ztlab.test/agent/gpt4, spiffe://ztlab.test/agent/claude"), "{msg}");
        assert!(msg.contains("unix:path:/lab/bin/agents"), "{msg}");
        let none = Error::IdNotIssued {
            endpoint: "unix:///tmp/a.sock".into(),
            wanted: "spiffe://ztlab.test/agent/gpt4".into(),
            issued: vec![],
            waited: Duration::from_secs(3),
            pid: 42,
            exe: "/lab/bin/agents".into(),
        };
        assert!(none.to_string().contains("it issued no X.509-SVID at all"), "{none}");
    }

    #[tokio::test]
    async fn connect_as_and_issued_ids_name_a_missing_socket() {
        let wanted = id("spiffe://ztlab.test/agent/gpt4");
        let err = connect_as("/nonexistent/ztlab/agent.sock", &wanted, Duration::from_millis(10))
            .await
            .expect_err("no socket");
        assert!(matches!(err, Error::SocketMissing(ref p) if p == "/nonexistent/ztlab/agent.sock"), "{err}");
        let err = issued_ids("/nonexistent/ztlab/agent.sock").await.expect_err("no socket");
        assert!(matches!(err, Error::SocketMissing(_)), "{err}");
        assert!(matches!(issued_ids("tmp/a.sock").await, Err(Error::InvalidEndpoint(_))));
    }

    #[tokio::test]
    async fn missing_socket_is_named() {
        let err =
            check_identity("/nonexistent/ztlab/agent.sock", Duration::from_millis(10)).await.expect_err("no socket");
        assert!(matches!(err, Error::SocketMissing(ref p) if p == "/nonexistent/ztlab/agent.sock"), "{err}");
        assert!(err.to_string().contains("is the agent running"));
    }
}
