//! The `document` service: serves documents over mTLS, each read decided by opa, for the
//! frontend (a user reading directly) and for AI agents acting for a user (delegation).
//!
//! - `GET /v1/documents/{id}` ([`api`]): the caller is the SPIFFE ID of its client certificate
//!   (native SDK, mTLS with this workload's SVID). Only `allowed_clients` get past the listener
//!   (default: the frontend and the agents `gpt4`, `claude`, `summarizer` of this trust domain;
//!   others get a 403 naming them, and callers of another trust domain fail the handshake). The
//!   user comes from `authorization: Bearer <token>`, verified against the backend's JWKS
//!   (`user_jwks_url`, issuer `user_token_issuer`) with `zt-usertoken`; the agent from the
//!   caller's ID (`spiffe://<td>/agent/<name>`). opa decides ([`OpaClient::decide`], OPA's Data
//!   API at `opa_decision_path`). Answers: 200 `{"id","title","department","body",
//!   "decision":{"allow":true,"reason"}}`; 403 `{"allow":false,"reason":<policy's reason>}`;
//!   401 `{"allow":false,"reason":"user token rejected: …"}`; 400 for a malformed document ID;
//!   503 naming opa when opa gives no decision (or naming the JWKS when tokens cannot be
//!   checked). Each decision is one JSON log line: caller, user, agent, doc, allow, reason,
//!   status (never the token).
//! - `GET /v1/opa/peer`: asks opa who we are (rotation checks).
//! - Commands: `check-opa` calls opa repeatedly and reports what opa saw; `decide` asks opa for
//!   one decision with this workload's SVID.
//!
//! Module map: [`api`] (router, handler logic, the one error-to-HTTP mapping), [`opa`] (opa's
//! client), [`catalogue`] (the documents; departments from `policies/rego/data.json`). Shape:
//! [`Config`] (layered: defaults, TOML file, `ZT_*`), [`Application::build`] binds (port 0 works
//! for tests) and waits for the SVID, [`Application::run_until_stopped`] serves until shutdown.

pub mod api;
pub mod catalogue;
pub mod opa;

use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zt_identity::{Rule, lab};
use zt_service::config::ConfigError;
use zt_service::workload::{Listeners, WorkloadSettings};
use zt_tls::client::ClientOptions;
use zt_tls::{MtlsClient, MtlsServer, X509Source};

pub use catalogue::{Catalogue, Document};
pub use opa::{CheckReport, Decision, DecisionInput, OpaClient, OpaPeer, check_opa, decide};

/// The agents the document service admits by default (`spiffe://<td>/agent/<name>`).
pub const AGENTS: [&str; 3] = ["gpt4", "claude", "summarizer"];

/// Errors of the document service. [`api`] maps each to an HTTP status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The document ID in the path is not a valid ID.
    #[error("invalid document ID {0:?}: use 1 to 64 of A-Z a-z 0-9 . _ - (like DOC-001)")]
    InvalidDocumentId(String),
    /// The user token does not verify (malformed, expired, forged, wrong issuer, unknown key).
    #[error("user token rejected: {0}")]
    TokenRejected(String),
    /// The user token could not be checked (the backend's JWKS is unavailable).
    #[error("cannot verify the user token: {0}")]
    TokenUnverifiable(String),
    /// The policy denied the read; the policy's reason.
    #[error("denied by policy: {0}")]
    Denied(String),
    /// No user token: every read is for a user, so one is required. The reason names the agent
    /// when an agent called without one.
    #[error("{0}")]
    UserRequired(String),
    /// The document does not exist (answered only to an authenticated caller and user, before
    /// any policy decision).
    #[error("document {0} does not exist")]
    NotFound(String),
    /// opa gave no decision: unreachable, refused the call, or answered without one.
    #[error("no decision from the policy service (opa): {0}")]
    Opa(String),
    /// The documents could not be loaded.
    #[error("document catalogue: {0}")]
    Catalogue(String),
}

/// Configuration: defaults, then the TOML file, then `ZT_*` variables.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Workload API socket, trust domain, ops listener.
    #[serde(flatten)]
    pub workload: WorkloadSettings,
    /// The mTLS listener (`ZT_LISTEN_ADDR`).
    pub listen_addr: String,
    /// The opa service's URL (`ZT_OPA_URL`).
    pub opa_url: String,
    /// The SPIFFE ID opa must present. Empty means opa of this trust domain.
    pub opa_id: String,
    /// SPIFFE IDs allowed to call. Empty means the frontend and the agents gpt4, claude and
    /// summarizer of this trust domain.
    pub allowed_clients: Vec<String>,
    /// The Data API path of the document decision on opa.
    pub opa_decision_path: String,
    /// The backend's JWKS, which verifies user tokens (`ZT_USER_JWKS_URL`).
    pub user_jwks_url: String,
    /// The issuer user tokens must carry (`ZT_USER_TOKEN_ISSUER`).
    pub user_token_issuer: String,
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
            user_jwks_url: "http://127.0.0.1:9090/.well-known/jwks.json".into(),
            user_token_issuer: "ztlab-backend".into(),
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

    /// The rule for callers: `allowed_clients`, or by default the frontend and the agents.
    pub fn client_rule(&self) -> anyhow::Result<Rule> {
        let td = self.workload.trust_domain()?;
        if self.allowed_clients.is_empty() {
            let mut ids = vec![lab::id(td.as_str(), lab::FRONTEND)?.to_string()];
            for agent in AGENTS {
                ids.push(lab::id(td.as_str(), &format!("/agent/{agent}"))?.to_string());
            }
            return Ok(Rule::allow_list("allowed_clients", ids)?);
        }
        Ok(Rule::allow_list("allowed_clients", &self.allowed_clients)?)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !self.opa_url.starts_with("https://") {
            return Err(ConfigError::field("opa_url", format!("{:?} is not an https:// URL", self.opa_url)));
        }
        if !self.user_jwks_url.starts_with("http://") && !self.user_jwks_url.starts_with("https://") {
            let msg = format!("{:?} is not an http:// or https:// URL", self.user_jwks_url);
            return Err(ConfigError::field("user_jwks_url", msg));
        }
        if self.user_token_issuer.trim().is_empty() {
            return Err(ConfigError::field("user_token_issuer", "must not be empty"));
        }
        Ok(())
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

    /// The handler context: trust domain, user-token verifier, documents.
    pub fn context(&self) -> anyhow::Result<api::Context> {
        Ok(api::Context {
            trust_domain: self.workload.trust_domain()?,
            verifier: zt_usertoken::Verifier::new(&self.user_jwks_url, &self.user_token_issuer),
            catalogue: Catalogue::lab()?,
        })
    }
}

/// A built, bound, not yet serving document service.
#[derive(Debug)]
pub struct Application {
    listeners: Listeners,
    server: MtlsServer,
    source: X509Source,
    state: api::AppState,
}

impl Application {
    /// Validates the config, binds the listeners and waits for this workload's SVID.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        let rule = config.client_rule()?;
        let td = config.workload.trust_domain()?;
        let context = config.context()?;
        let listeners = Listeners::bind("listen_addr", &config.listen_addr, &config.workload.ops_addr).await?;
        let source = config.workload.connect().await?;
        tracing::info!(allowed_clients = %rule, user_jwks_url = %config.user_jwks_url, "callers");
        let server = MtlsServer::new(&source, &td, Arc::new(rule))?;
        let opa = config.opa_client(&source, ClientOptions::default())?;
        Ok(Self { listeners, server, source, state: api::AppState { context, opa } })
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
        self.listeners.serve(self.server, api::router(self.state), ops, shutdown).await
    }
}
