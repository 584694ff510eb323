use std::process::ExitCode;

use clap::Parser;

/// The ztlab site agent: keeps one SPIRE server in sync with entry-manager.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    config: zt_service::ConfigArg,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    zt_service::main("site-agent", args.config.config.as_deref(), |config: site_agent::Config| async move {
        site_agent::Agent::build(config).await?.run_until_stopped(zt_service::shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
    .await
}
