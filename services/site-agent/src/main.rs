use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// The ztlab site agent: keeps one SPIRE server in sync with entry-manager.
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
    zt_service::telemetry::init("site-agent");
    let run = async {
        let config: site_agent::Config = zt_service::config::load(args.config.as_deref())?;
        let agent = site_agent::Agent::build(config).await?;
        agent.run_until_stopped(zt_service::shutdown_signal()).await
    };
    match run.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(component = "site-agent", error = %format!("{e:#}"), "stopped");
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
