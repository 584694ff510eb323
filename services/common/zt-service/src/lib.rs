//! The shape every ztlab service shares.
//!
//! - [`config::load`]: layered configuration: defaults, then a TOML file, then `ZT_`
//!   environment variables (`ZT_LISTEN_ADDR`, nested keys with `__`).
//! - [`telemetry::init`]: flat JSON logs with the component name on every line.
//! - [`request`]: request spans (`trace_id`, `actor`) for every request a service serves.
//! - [`shutdown_signal`]: resolves on SIGTERM or SIGINT, for graceful shutdown.
//! - [`ops`]: the plain-HTTP operations router: `/healthz` (this workload's SPIFFE ID and SVID
//!   expiry; 503 without a valid SVID) and `/metrics` (Prometheus).

pub mod config;
pub mod ops;
pub mod request;
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

/// One shutdown signal, fanned out to every listener of a service.
#[derive(Debug, Clone)]
pub struct Stop(tokio::sync::watch::Receiver<bool>);

impl Stop {
    /// Fires when `signal` resolves.
    pub fn on<F>(signal: F) -> Self
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            signal.await;
            let _ = tx.send(true);
        });
        Self(rx)
    }

    /// A future that resolves once the signal has fired.
    pub fn wait(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }
}

/// The `main` of a ztlab service: installs the crypto provider and JSON logs, loads `C` from
/// `config` (then `ZT_*`), runs `service` and exits with its code; an error becomes a log line,
/// a message on stderr and exit code 2.
pub async fn main<C, F, Fut>(
    component: &'static str,
    config: Option<&std::path::Path>,
    service: F,
) -> std::process::ExitCode
where
    C: serde::Serialize + serde::de::DeserializeOwned + Default,
    F: FnOnce(C) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<std::process::ExitCode>>,
{
    zt_tls::install_crypto_provider();
    telemetry::init(component);
    let run = async {
        let cfg: C = config::load(config)?;
        service(cfg).await
    };
    match run.await {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "stopped");
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// The `--config` option every ztlab service takes (flatten it into the service's arguments).
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArg {
    /// TOML config file; `ZT_*` environment variables override it.
    #[arg(long, env = "ZT_CONFIG", global = true)]
    pub config: Option<std::path::PathBuf>,
}
