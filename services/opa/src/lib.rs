//! The `opa` policy service: OPA's Data API over mTLS, evaluated in Rust with regorus.
//!
//! - `POST /v1/data/<path>` with `{"input": ...}` answers `{"result": ...}` (or `{}` when the
//!   path is undefined), like OPA, so that a real OPA server could replace it. `GET` evaluates
//!   without input. The lab's decision is `data.ztlab.documents.decision`
//!   (`policies/rego/ztlab/documents.rego`).
//! - Policies (`*.rego`, without `*_test.rego`) and data (`*.json`) come from `policy_dir` and
//!   reload when their files change; a set that does not compile is refused and the previous
//!   one keeps serving ([`store`]).
//! - Every decision is one JSON line on stderr: caller SPIFFE ID, path, input, result, reason.
//! - It serves over mTLS with its own SVID and accepts only the document service's SPIFFE ID
//!   (configurable as an allow-list). `GET /v1/peer` answers with the caller's identity as it
//!   saw it.
//!
//! Shape: [`Config`] (layered), [`Application::build`] binds (port 0 works for tests), loads the
//! policies and connects to the Workload API, [`Application::run_until_stopped`] serves until
//! shutdown.

pub mod api;
pub mod policy;
pub mod scenarios;
pub mod store;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use serde::{Deserialize, Serialize};
use zt_identity::{Rule, lab};
use zt_service::config::ConfigError;
use zt_service::workload::{Listeners, WorkloadSettings};
use zt_tls::{MtlsServer, X509Source};

pub use api::{ApiError, ApiState, DecisionLog};
pub use policy::{DataPath, Policy, PolicyError};
pub use store::{PolicyStore, ReloadOutcome};

/// The policy directory of the source tree this binary was built from (the fallback for a
/// relative `policy_dir` that does not exist under the working directory).
const SOURCE_ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

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
    /// The folder of Rego policies and JSON data (`ZT_POLICY_DIR`). A relative path is looked
    /// up under the working directory, then under the source tree the binary was built from.
    pub policy_dir: String,
    /// How often to look for changed policy files, in milliseconds; 0 turns reloading off.
    pub reload_interval_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            workload: WorkloadSettings::default(),
            listen_addr: "127.0.0.1:8181".into(),
            allowed_clients: vec![],
            policy_dir: "policies/rego".into(),
            reload_interval_ms: 1000,
        }
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

    /// The policy directory, resolved (see [`Config::policy_dir`]).
    pub fn resolve_policy_dir(&self) -> Result<PathBuf, ConfigError> {
        if self.policy_dir.is_empty() {
            return Err(ConfigError::field("policy_dir", "is empty"));
        }
        let dir = Path::new(&self.policy_dir);
        if dir.is_dir() {
            return Ok(dir.to_path_buf());
        }
        if dir.is_relative() {
            let built = Path::new(SOURCE_ROOT).join(dir);
            if built.is_dir() {
                return Ok(built);
            }
            return Err(ConfigError::field(
                "policy_dir",
                format!(
                    "{} is not a folder (looked under {} and {}); set ZT_POLICY_DIR",
                    self.policy_dir,
                    std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default(),
                    Path::new(SOURCE_ROOT).display()
                ),
            ));
        }
        Err(ConfigError::field("policy_dir", format!("{} is not a folder; set ZT_POLICY_DIR", self.policy_dir)))
    }
}

/// A built, bound, not yet serving opa service.
#[derive(Debug)]
pub struct Application {
    listeners: Listeners,
    server: MtlsServer,
    source: X509Source,
    store: Arc<PolicyStore>,
    reload_interval: Option<Duration>,
}

impl Application {
    /// Validates the config, loads the policies, binds the listeners and waits for this
    /// workload's SVID.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let rule = config.client_rule()?;
        let td = config.workload.trust_domain()?;
        let dir = config.resolve_policy_dir()?;
        let store = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || PolicyStore::open(&dir)).await?
        }
        .with_context(|| format!("policy_dir: cannot load the policies in {}", dir.display()))?;
        tracing::info!(dir = %dir.display(), files = ?store.current().files(), "policies loaded");
        let listeners = Listeners::bind("listen_addr", &config.listen_addr, &config.workload.ops_addr).await?;
        let source = config.workload.connect().await?;
        let server = MtlsServer::new(&source, &td, Arc::new(rule))?;
        let reload_interval = (config.reload_interval_ms > 0).then(|| Duration::from_millis(config.reload_interval_ms));
        Ok(Self { listeners, server, source, store: Arc::new(store), reload_interval })
    }

    /// The mTLS address.
    pub fn addr(&self) -> SocketAddr {
        self.listeners.app_addr()
    }

    /// The policies it serves.
    pub fn store(&self) -> Arc<PolicyStore> {
        self.store.clone()
    }

    /// Serves until `shutdown` resolves.
    pub async fn run_until_stopped<F>(self, shutdown: F) -> anyhow::Result<()>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let ops = zt_service::ops::router("opa", self.source.clone(), zt_service::ops::install_metrics());
        let _svid = zt_tls::source::watch_svid(&self.source);
        let watcher = self.reload_interval.map(|every| self.store.watch(every));
        let app = router(ApiState { store: self.store, log: DecisionLog::Stderr });
        let served = self.listeners.serve(self.server, app, ops, shutdown).await;
        if let Some(w) = watcher {
            w.abort();
        }
        served
    }
}

/// The mTLS routes (see [`api::router`]).
pub fn router(state: ApiState) -> Router {
    api::router(state)
}
