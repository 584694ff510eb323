use std::process::ExitCode;

use clap::Parser;

/// The ztlab entry manager: central SPIRE workload-entry management.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    config: zt_service::ConfigArg,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    zt_service::main("entry-manager", args.config.config.as_deref(), |config: entry_manager::Config| async move {
        entry_manager::Application::build(config).await?.run_until_stopped(zt_service::shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
    .await
}
