use std::path::PathBuf;

use clap::Parser;

/// The ztlab opa policy service.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// TOML config file; `ZT_*` environment variables override it.
    #[arg(long, env = "ZT_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "opa stopped");
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    zt_tls::install_crypto_provider();
    zt_service::telemetry::init("opa");
    let config: opa::Config = zt_service::config::load(args.config.as_deref())?;
    let app = opa::Application::build(config).await?;
    app.run_until_stopped(zt_service::shutdown_signal()).await
}
