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
    zt_service::main("site-agent", args.config.as_deref(), |config: site_agent::Config| async move {
        site_agent::Agent::build(config).await?.run_until_stopped(zt_service::shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
    .await
}
