//! The shape every ztlab service shares.
//!
//! - [`config::load`]: layered configuration: defaults, then a TOML file, then `ZT_`
//!   environment variables (`ZT_LISTEN_ADDR`, nested keys with `__`).
//! - [`telemetry::init`]: JSON logs with the component name on every line.
//! - [`shutdown_signal`]: resolves on SIGTERM or SIGINT, for graceful shutdown.
//! - [`ops`]: the plain-HTTP operations router: `/healthz` (this workload's SPIFFE ID and SVID
//!   expiry; 503 without a valid SVID) and `/metrics` (Prometheus).

pub mod config;
pub mod ops;
pub mod telemetry;

/// Resolves when the process receives SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            std::future::pending::<()>().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
    }
}

pub mod workload;
