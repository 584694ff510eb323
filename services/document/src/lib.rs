//! The `document` service (skeleton).
//!
//! It serves over mTLS with its own SVID and calls the `opa` service over mTLS, checking that
//! the server is opa's SPIFFE ID. Today it exposes `GET /v1/opa/peer` (ask opa who we are) and
//! the `check-opa` command, which calls opa repeatedly and reports what opa saw (used by the
//! rotation and failure tests). [`OpaClient::decide`] asks opa for a document decision
//! (`POST /v1/data/ztlab/documents/decision`, OPA's Data API), and the `decide` command makes
//! one such call with this workload's SVID. Serving documents comes with the delegation work.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use zt_identity::{Rule, lab};
use zt_service::workload::{Listeners, WorkloadSettings};
use zt_tls::client::ClientOptions;
use zt_tls::{MtlsClient, MtlsServer, X509Source};

/// Configuration: defaults, then the TOML file, then `ZT_*` variables.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Workload API socket, trust domain, ops listener.
    #[serde(flatten)]
    pub workload: WorkloadSettings,
    /// The mTLS listener.
    pub listen_addr: String,
    /// The opa service's URL.
    pub opa_url: String,
    /// The SPIFFE ID opa must present. Empty means opa of this trust domain.
    pub opa_id: String,
    /// SPIFFE IDs allowed to call. Empty means the frontend of this trust domain.
    pub allowed_clients: Vec<String>,
    /// The Data API path of the document decision on opa.
    pub opa_decision_path: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            workload: WorkloadSettings::default(),
            listen_addr: "127.0.0.1:8085".into(),
            opa_url: "https://127.0.0.1:8181".into(),
            opa_id: String::new(),
            allowed_clients: vec![],
            opa_decision_path: "ztlab/documents/decision".into(),
        }
    }
}

impl Config {
    fn opa_rule(&self) -> anyhow::Result<Rule> {
        let td = self.workload.trust_domain()?;
        if self.opa_id.is_empty() {
            return Ok(Rule::Exact(lab::id(td.as_str(), lab::OPA)?));
        }
        Ok(Rule::Exact(zt_identity::parse_id("opa_id", &self.opa_id)?))
    }

    fn client_rule(&self) -> anyhow::Result<Rule> {
        let td = self.workload.trust_domain()?;
        if self.allowed_clients.is_empty() {
            return Ok(Rule::Exact(lab::id(td.as_str(), lab::FRONTEND)?));
        }
        Ok(Rule::allow_list("allowed_clients", &self.allowed_clients)?)
    }

    /// An mTLS client for opa built from `source`.
    pub fn opa_client(&self, source: &X509Source, options: ClientOptions) -> anyhow::Result<OpaClient> {
        let td = self.workload.trust_domain()?;
        let client = MtlsClient::new(source, &td, Arc::new(self.opa_rule()?), options)?;
        Ok(OpaClient {
            client,
            base: self.opa_url.trim_end_matches('/').to_owned(),
            decision_path: self.opa_decision_path.trim_matches('/').to_owned(),
        })
    }
}

/// Talks to the opa service.
#[derive(Debug, Clone)]
pub struct OpaClient {
    client: MtlsClient,
    base: String,
    decision_path: String,
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
fn refused(resp: &zt_tls::client::Response) -> anyhow::Error {
    let msg = resp
        .json::<serde_json::Value>()
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&resp.body).into_owned());
    anyhow::anyhow!("opa refused the call ({}): {msg}", resp.status)
}

impl OpaClient {
    /// Asks opa who we are. A refusal comes back as an error with opa's reason.
    pub async fn whoami(&self) -> anyhow::Result<OpaPeer> {
        let resp = self.client.get(&format!("{}/v1/peer", self.base)).await?;
        if !resp.status.is_success() {
            return Err(refused(&resp));
        }
        Ok(resp.json()?)
    }

    /// Asks opa for the document decision. A refusal, or an answer without a decision (the
    /// policy is not loaded), is an error.
    pub async fn decide(&self, input: &DecisionInput) -> anyhow::Result<Decision> {
        let url = format!("{}/v1/data/{}", self.base, self.decision_path);
        let resp = self.client.request(Method::POST, &url, Some(&serde_json::json!({ "input": input }))).await?;
        if !resp.status.is_success() {
            return Err(refused(&resp));
        }
        let answer: serde_json::Value = resp.json().context("opa's answer is not JSON")?;
        let result = answer
            .get("result")
            .with_context(|| format!("opa has no decision at data/{} (is the policy loaded?)", self.decision_path))?;
        serde_json::from_value(result.clone()).with_context(|| format!("opa's decision has the wrong shape: {result}"))
    }
}

/// Connects with this workload's SVID and asks opa for one decision.
pub async fn decide(config: &Config, input: &DecisionInput) -> anyhow::Result<Decision> {
    let source = config.workload.connect().await?;
    let opa = config.opa_client(&source, ClientOptions::default())?;
    opa.decide(input).await
}

/// A built, bound, not yet serving document service.
#[derive(Debug)]
pub struct Application {
    listeners: Listeners,
    server: MtlsServer,
    source: X509Source,
    opa: OpaClient,
}

impl Application {
    /// Validates the config, binds the listeners and waits for this workload's SVID.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let rule = config.client_rule()?;
        let td = config.workload.trust_domain()?;
        let listeners = Listeners::bind("listen_addr", &config.listen_addr, &config.workload.ops_addr).await?;
        let source = config.workload.connect().await?;
        let server = MtlsServer::new(&source, &td, Arc::new(rule))?;
        let opa = config.opa_client(&source, ClientOptions::default())?;
        Ok(Self { listeners, server, source, opa })
    }

    /// The mTLS address.
    pub fn addr(&self) -> SocketAddr {
        self.listeners.app_addr()
    }

    /// Serves until `shutdown` resolves.
    pub async fn run_until_stopped<F>(self, shutdown: F) -> anyhow::Result<()>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let ops = zt_service::ops::router("document", self.source.clone(), zt_service::ops::install_metrics());
        let _svid = zt_tls::source::watch_svid(&self.source);
        let app = Router::new().route("/v1/opa/peer", get(opa_peer)).with_state(self.opa);
        self.listeners.serve(self.server, app, ops, shutdown).await
    }
}

async fn opa_peer(State(opa): State<OpaClient>) -> Result<Json<OpaPeer>, (StatusCode, Json<serde_json::Value>)> {
    opa.whoami().await.map(Json).map_err(|e| {
        (StatusCode::BAD_GATEWAY, Json(serde_json::json!({"error": "opa_unavailable", "message": format!("{e:#}")})))
    })
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
                let msg = format!("{e:#}");
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
