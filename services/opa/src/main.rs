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
    zt_service::main("opa", args.config.as_deref(), |config: opa::Config| async move {
        opa::Application::build(config).await?.run_until_stopped(zt_service::shutdown_signal()).await?;
        Ok(std::process::ExitCode::SUCCESS)
    })
    .await
}
