use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// The ztlab entry manager: central SPIRE workload-entry management.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// TOML config file; `ZT_*` environment variables override it.
    #[arg(long, env = "ZT_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    zt_tls::install_crypto_provider();
    zt_service::telemetry::init("entry-manager");
    let run = async {
        let config: entry_manager::Config = zt_service::config::load(args.config.as_deref())?;
        let app = entry_manager::Application::build(config).await?;
        app.run_until_stopped(zt_service::shutdown_signal()).await
    };
    match run.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(component = "entry-manager", error = %format!("{e:#}"), "stopped");
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
