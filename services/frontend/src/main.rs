use clap::Parser;

/// The ztlab frontend: the presenter's web UI.
///
/// Serves on `listen_addr` (plain HTTP): `GET /` (the demo page), `POST /api/run-demo` (one
/// request to the backend's `/api/demo` through the frontend's Envoy, reported hop by hop),
/// `GET /readyz` (its Envoy's admin `/ready` is LIVE), `GET /dashboard` with `GET /events` (the
/// lab's components, live), `GET /entries` and `GET /sites` with `GET /events/entries` (entry-manager's
/// entries and site health, live, read-only), `GET /scenarios[/{id}]`, and pass-throughs to the backend:
/// `POST /api/login`, `GET /api/orders`, `PUT /api/github/token`, `GET /api/github/repos`.
/// `/healthz` and `/metrics` are on `ops_addr`.
///
/// Settings (TOML file, then environment): ZT_LISTEN_ADDR (127.0.0.1:8080), ZT_BACKEND_URL
/// (the Envoy outbound listener, http://127.0.0.1:10080), ZT_ENVOY_ADMIN_URL
/// (http://127.0.0.1:15080), ZT_REQUEST_TIMEOUT (5s), ZT_DOCUMENT_URL, ZT_STATE_DIR (.),
/// ZT_ENTRY_MANAGER_URL (entry-manager's mTLS listener, https://127.0.0.1:8444), ZT_OPS_ADDR,
/// ZT_TRUST_DOMAIN, ZT_SPIFFE_ENDPOINT_SOCKET (or SPIFFE_ENDPOINT_SOCKET), ZT_SVID_WAIT_SECS.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    #[command(flatten)]
    config: zt_service::ConfigArg,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    zt_service::main("frontend", args.config.config.as_deref(), |config: frontend::Config| async move {
        frontend::Application::build(config).await?.run_until_stopped(zt_service::shutdown_signal()).await?;
        Ok(std::process::ExitCode::SUCCESS)
    })
    .await
}
