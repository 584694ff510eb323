use clap::Parser;

/// The ztlab opa policy service.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    config: zt_service::ConfigArg,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    zt_service::main("opa", args.config.config.as_deref(), |config: opa::Config| async move {
        opa::Application::build(config).await?.run_until_stopped(zt_service::shutdown_signal()).await?;
        Ok(std::process::ExitCode::SUCCESS)
    })
    .await
}
