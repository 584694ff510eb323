use std::io::Read as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The ztlab agent runtime: hosts the agents gpt4, claude and summarizer, each with its own
/// SPIFFE ID.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    config: zt_service::ConfigArg,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Hold every agent's SVID and serve /healthz (the default).
    Serve,
    /// Call the document service once as one agent, over mTLS with that agent's SVID, and print
    /// the status and body as JSON. Exits 0 on a 2xx answer, 1 on another answer, 2 when no
    /// answer could be had.
    Act {
        /// The agent: gpt4, claude or summarizer.
        #[arg(long)]
        agent: String,
        /// The user's token (a JWT from the backend), sent as `authorization: Bearer`; `-`
        /// reads it from stdin. Omit to act without a user.
        #[arg(long)]
        user_token: Option<String>,
        /// The document, e.g. DOC-001.
        #[arg(long)]
        doc: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config_path = args.config.config.clone();
    zt_service::main("agents", config_path.as_deref(), move |config: agents::Config| run(args, config)).await
}

async fn run(args: Args, config: agents::Config) -> anyhow::Result<ExitCode> {
    match args.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = agents::Application::build(config).await?;
            app.run_until_stopped(zt_service::shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Act { agent, user_token, doc } => {
            let token = match user_token.as_deref() {
                Some("-") => {
                    let mut t = String::new();
                    std::io::stdin().read_to_string(&mut t)?;
                    let t = t.trim().to_owned();
                    anyhow::ensure!(!t.is_empty(), "--user-token -: stdin was empty");
                    Some(t)
                }
                Some(t) => Some(t.to_owned()),
                None => None,
            };
            let outcome = agents::act(&config, &agent, token.as_deref(), &doc).await?;
            println!("{}", serde_json::to_string(&outcome)?);
            Ok(if (200..300).contains(&outcome.status) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}
