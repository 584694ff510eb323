//! The `opa` policy service (skeleton).
//!
//! It serves over mTLS with its own SVID and accepts only the document service's SPIFFE ID
//! (configurable as an allow-list). Today it answers `GET /v1/peer` with the caller's
//! identity as it saw it; the Rego decision API comes with the delegation work.
//!
//! Shape: [`Config`] (layered), [`Application::build`] binds (port 0 works for tests) and
//! connects to the Workload API, [`Application::run_until_stopped`] serves until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use zt_identity::{Rule, lab};
use zt_service::workload::{Listeners, WorkloadSettings};
use zt_tls::{MtlsServer, PeerIdentity, X509Source};

/// Configuration: defaults, then the TOML file, then `ZT_*` variables.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Workload API socket, trust domain, ops listener.
    #[serde(flatten)]
    pub workload: WorkloadSettings,
    /// The mTLS listener.
    pub listen_addr: String,
    /// SPIFFE IDs allowed to call. Empty means the document service of this trust domain.
    pub allowed_clients: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self { workload: WorkloadSettings::default(), listen_addr: "127.0.0.1:8181".into(), allowed_clients: vec![] }
    }
}

impl Config {
    /// The authorization rule for callers.
    pub fn client_rule(&self) -> anyhow::Result<Rule> {
        let td = self.workload.trust_domain()?;
        if self.allowed_clients.is_empty() {
            return Ok(Rule::Exact(lab::id(td.as_str(), lab::DOCUMENT)?));
        }
        Ok(Rule::allow_list("allowed_clients", &self.allowed_clients)?)
    }
}

/// A built, bound, not yet serving opa service.
#[derive(Debug)]
pub struct Application {
    listeners: Listeners,
    server: MtlsServer,
    source: X509Source,
}

impl Application {
    /// Validates the config, binds the listeners and waits for this workload's SVID.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let rule = config.client_rule()?;
        let td = config.workload.trust_domain()?;
        let listeners = Listeners::bind("listen_addr", &config.listen_addr, &config.workload.ops_addr).await?;
        let source = config.workload.connect().await?;
        let server = MtlsServer::new(&source, &td, Arc::new(rule))?;
        Ok(Self { listeners, server, source })
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
        let ops = zt_service::ops::router("opa", self.source.clone(), zt_service::ops::install_metrics());
        let _svid = zt_tls::source::watch_svid(&self.source);
        self.listeners.serve(self.server, router(), ops, shutdown).await
    }
}

/// The mTLS routes.
pub fn router() -> Router {
    Router::new().route("/v1/peer", get(peer))
}

/// Who called, as this service authenticated them.
async fn peer(peer: PeerIdentity) -> Json<PeerIdentity> {
    Json(peer)
}
