use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The ztlab backend: users, orders and GitHub, over PostgreSQL (spiffe-helper TLS, OpenBao
/// dynamic credentials) and OpenBao KV.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    config: zt_service::ConfigArg,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve (the default).
    Serve,
    /// Print the effective configuration as TOML and exit.
    PrintConfig,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config_path = args.config.config.clone();
    zt_service::main("backend", config_path.as_deref(), move |config: backend::Config| run(args, config)).await
}

async fn run(args: Args, config: backend::Config) -> anyhow::Result<ExitCode> {
    match args.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = backend::Application::build(config).await?;
            app.run_until_stopped(zt_service::shutdown_signal()).await?;
        }
        Command::PrintConfig => println!("{}", toml::to_string(&config)?),
    }
    Ok(ExitCode::SUCCESS)
}
