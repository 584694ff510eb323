//! The opa service's client: decisions (OPA's Data API) and `GET /v1/peer`, over mTLS with this
//! workload's SVID, checking that the server is opa's SPIFFE ID.

use std::time::{Duration, Instant};

use axum::http::Method;
use serde::{Deserialize, Serialize};
use zt_tls::MtlsClient;
use zt_tls::client::{ClientOptions, Response};

use crate::{Config, Error};

/// Talks to the opa service.
#[derive(Debug, Clone)]
pub struct OpaClient {
    pub(crate) client: MtlsClient,
    pub(crate) base: String,
    pub(crate) decision_path: String,
}

/// What the document service asks opa about one request (the input of
/// `data.ztlab.documents.decision`; see `policies/rego/ztlab/documents.rego`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionInput {
    /// The caller's SPIFFE ID, from its peer certificate.
    pub caller_spiffe_id: String,
    /// The user, from a verified user token (`None`: no user).
    pub user: Option<String>,
    /// The agent, when the caller is an agent (`None`: not an agent).
    pub agent: Option<String>,
    /// The requested document.
    pub document: String,
}

/// opa's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Whether access is granted.
    pub allow: bool,
    /// Why.
    pub reason: String,
}

/// What opa said about us.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpaPeer {
    /// The SPIFFE ID opa authenticated.
    pub spiffe_id: String,
    /// The certificate opa saw.
    pub cert: zt_tls::CertInfo,
}

/// A non-2xx answer from opa as an error with opa's message.
fn refused(resp: &Response) -> Error {
    let msg = resp
        .json::<serde_json::Value>()
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&resp.body).into_owned());
    Error::Opa(format!("opa refused the call ({}): {msg}", resp.status))
}

impl OpaClient {
    /// Asks opa who we are. A refusal comes back as an error with opa's reason.
    pub async fn whoami(&self) -> Result<OpaPeer, Error> {
        let resp = self.client.get(&format!("{}/v1/peer", self.base)).await.map_err(|e| Error::Opa(e.to_string()))?;
        if !resp.status.is_success() {
            return Err(refused(&resp));
        }
        resp.json().map_err(|e| Error::Opa(format!("opa's answer to /v1/peer has the wrong shape: {e}")))
    }

    /// Asks opa for the document decision. Unreachable, a refusal, or an answer without a
    /// decision (the policy is not loaded) is [`Error::Opa`].
    pub async fn decide(&self, input: &DecisionInput) -> Result<Decision, Error> {
        let url = format!("{}/v1/data/{}", self.base, self.decision_path);
        let resp = self
            .client
            .request(Method::POST, &url, Some(&serde_json::json!({ "input": input })))
            .await
            .map_err(|e| Error::Opa(e.to_string()))?;
        if !resp.status.is_success() {
            return Err(refused(&resp));
        }
        let answer: serde_json::Value =
            resp.json().map_err(|e| Error::Opa(format!("opa's answer is not JSON: {e}")))?;
        let result = answer.get("result").ok_or_else(|| {
            Error::Opa(format!("opa has no decision at data/{} (is the policy loaded?)", self.decision_path))
        })?;
        serde_json::from_value(result.clone())
            .map_err(|e| Error::Opa(format!("opa's decision has the wrong shape ({e}): {result}")))
    }
}

/// Connects with this workload's SVID and asks opa for one decision.
pub async fn decide(config: &Config, input: &DecisionInput) -> anyhow::Result<Decision> {
    let source = config.workload.connect().await?;
    let opa = config.opa_client(&source, ClientOptions::default())?;
    Ok(opa.decide(input).await?)
}

/// The result of [`check_opa`].
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CheckReport {
    /// Requests sent.
    pub requests: u64,
    /// Requests that opa answered with our identity.
    pub ok: u64,
    /// Requests that failed.
    pub failed: u64,
    /// The first distinct errors, in order.
    pub errors: Vec<String>,
    /// The SPIFFE ID opa saw.
    pub spiffe_id_seen_by_opa: Option<String>,
    /// Distinct serial numbers of our SVID that opa saw, in order.
    pub serials_seen_by_opa: Vec<String>,
}

/// Calls opa every `interval` until `duration` has passed (at least once), each time over a new
/// mTLS connection so that every call uses the current SVID.
pub async fn check_opa(config: &Config, duration: Duration, interval: Duration) -> anyhow::Result<CheckReport> {
    let source = config.workload.connect().await?;
    let opa = config.opa_client(&source, ClientOptions { reuse_connections: false, ..ClientOptions::default() })?;
    let mut report = CheckReport::default();
    let start = Instant::now();
    loop {
        report.requests += 1;
        match opa.whoami().await {
            Ok(peer) => {
                report.ok += 1;
                report.spiffe_id_seen_by_opa = Some(peer.spiffe_id);
                if report.serials_seen_by_opa.last() != Some(&peer.cert.serial) {
                    report.serials_seen_by_opa.push(peer.cert.serial);
                }
            }
            Err(e) => {
                report.failed += 1;
                let msg = e.to_string();
                if report.errors.len() < 5 && !report.errors.contains(&msg) {
                    report.errors.push(msg);
                }
            }
        }
        if start.elapsed() >= duration {
            break;
        }
        tokio::time::sleep(interval).await;
    }
    Ok(report)
}
