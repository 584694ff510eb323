//! Structured JSON logs.

/// Installs a JSON log subscriber on stderr. The filter comes from `RUST_LOG` (default `info`).
/// Every line carries `component`.
pub fn init(component: &'static str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_writer(std::io::stderr)
        .try_init();
    tracing::info!(component, version = env!("CARGO_PKG_VERSION"), "starting");
}
