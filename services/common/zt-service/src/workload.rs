//! What every native-SDK workload has: a Workload API socket, a trust domain, listeners, and a
//! way to run until told to stop.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use zt_identity::TrustDomain;
use zt_tls::{MtlsServer, X509Source};

use crate::config::ConfigError;

/// Settings shared by every workload that gets its SVID from the Workload API. Flatten it into
/// a service's config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkloadSettings {
    /// The SPIRE agent's Workload API socket (`unix:///…` or an absolute path). Empty means the
    /// standard `SPIFFE_ENDPOINT_SOCKET` variable.
    pub spiffe_endpoint_socket: String,
    /// This workload's trust domain.
    pub trust_domain: String,
    /// How long to wait at start-up for the agent to issue an SVID.
    pub svid_wait_secs: u64,
    /// The plain-HTTP ops listener (`/healthz`, `/metrics`).
    pub ops_addr: String,
}

impl Default for WorkloadSettings {
    fn default() -> Self {
        Self {
            spiffe_endpoint_socket: String::new(),
            trust_domain: "ztlab.test".into(),
            svid_wait_secs: 30,
            ops_addr: "127.0.0.1:0".into(),
        }
    }
}

impl WorkloadSettings {
    /// The Workload API endpoint: the setting, else `SPIFFE_ENDPOINT_SOCKET`.
    pub fn endpoint(&self) -> Result<String, ConfigError> {
        if !self.spiffe_endpoint_socket.is_empty() {
            return Ok(self.spiffe_endpoint_socket.clone());
        }
        std::env::var("SPIFFE_ENDPOINT_SOCKET").map_err(|_| {
            ConfigError::field(
                "spiffe_endpoint_socket",
                "not set: set ZT_SPIFFE_ENDPOINT_SOCKET or SPIFFE_ENDPOINT_SOCKET to the SPIRE agent's socket",
            )
        })
    }

    /// The trust domain, validated.
    pub fn trust_domain(&self) -> Result<TrustDomain, ConfigError> {
        zt_identity::parse_trust_domain("trust_domain", &self.trust_domain)
            .map_err(|e| ConfigError::field("trust_domain", e))
    }

    /// Connects to the Workload API and waits for this workload's SVID.
    pub async fn connect(&self) -> anyhow::Result<X509Source> {
        let endpoint = self.endpoint()?;
        Ok(zt_tls::source::connect(&endpoint, Duration::from_secs(self.svid_wait_secs)).await?)
    }
}

/// Binds `addr`, naming the setting in the error (for example when the port is taken).
pub async fn bind(field: &str, addr: &str) -> anyhow::Result<TcpListener> {
    let parsed: SocketAddr =
        addr.parse().map_err(|e| ConfigError::field(field, format!("{addr:?} is not host:port ({e})")))?;
    TcpListener::bind(parsed).await.with_context(|| format!("{field}: cannot listen on {addr}"))
}

/// A workload's mTLS listener and ops listener, bound and ready to serve.
#[derive(Debug)]
pub struct Listeners {
    /// The mTLS application listener.
    pub app: TcpListener,
    /// The plain ops listener.
    pub ops: TcpListener,
}

impl Listeners {
    /// Binds both.
    pub async fn bind(app_field: &str, app_addr: &str, ops_addr: &str) -> anyhow::Result<Self> {
        Ok(Self { app: bind(app_field, app_addr).await?, ops: bind("ops_addr", ops_addr).await? })
    }

    /// The application listener's address.
    pub fn app_addr(&self) -> SocketAddr {
        self.app.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The ops listener's address.
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves `app` over mTLS and `ops` in plain HTTP until `shutdown` resolves.
    pub async fn serve<F>(self, server: MtlsServer, app: Router, ops: Router, shutdown: F) -> anyhow::Result<()>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let stop = crate::Stop::on(shutdown);
        tracing::info!(app = %self.app_addr(), ops = %self.ops_addr(), "serving");
        let ops_stop = stop.wait();
        let ops_task = tokio::spawn(async move { axum::serve(self.ops, ops).with_graceful_shutdown(ops_stop).await });
        server.serve(self.app, app, stop.wait()).await?;
        ops_task.await??;
        tracing::info!("stopped");
        Ok(())
    }
}
