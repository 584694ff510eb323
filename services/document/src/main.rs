use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// The ztlab document service: documents over mTLS, each read decided by opa.
///
/// `serve` (the default) answers `GET /v1/documents/{id}` on `listen_addr` over mTLS. Callers
/// are the SPIFFE IDs in `allowed_clients` (default: the frontend and the agents gpt4, claude and
/// summarizer of this trust domain); the user comes from `authorization: Bearer <token>`,
/// verified against the backend's JWKS; the agent from the caller's SPIFFE ID. Answers: 200 with
/// the document and opa's decision, 403 with the policy's reason, 401 for a rejected user token,
/// 503 when opa (or the JWKS) is unavailable. `/healthz` and `/metrics` are on `ops_addr`.
///
/// Settings (TOML file, then environment): ZT_LISTEN_ADDR (127.0.0.1:8085), ZT_OPA_URL
/// (https://127.0.0.1:8181), ZT_OPA_ID, ZT_ALLOWED_CLIENTS, ZT_OPA_DECISION_PATH,
/// ZT_USER_JWKS_URL (http://127.0.0.1:9090/.well-known/jwks.json), ZT_USER_TOKEN_ISSUER
/// (ztlab-backend), ZT_OPS_ADDR, ZT_TRUST_DOMAIN, ZT_SPIFFE_ENDPOINT_SOCKET (or
/// SPIFFE_ENDPOINT_SOCKET), ZT_SVID_WAIT_SECS.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    #[command(flatten)]
    config: zt_service::ConfigArg,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve documents over mTLS (the default).
    Serve,
    /// Call opa repeatedly with this workload's SVID and print a JSON report of what opa saw.
    /// Exits 1 if any call failed.
    CheckOpa {
        /// How long to keep calling, e.g. `30s`.
        #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Pause between calls, e.g. `100ms`.
        #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
        interval: Duration,
    },
    /// Ask opa for one document decision with this workload's SVID and print it as JSON
    /// (`{"allow": ..., "reason": ...}`). Exits 0 with a decision (granted or not), 1 if opa
    /// refused the call or gave no decision.
    Decide {
        /// The user (omit for none).
        #[arg(long)]
        user: Option<String>,
        /// The agent acting for the user (omit for none).
        #[arg(long)]
        agent: Option<String>,
        /// The document.
        #[arg(long)]
        doc: String,
        /// The caller's SPIFFE ID. Default: the agent's (`spiffe://<td>/agent/<agent>`) with
        /// --agent, else the frontend's.
        #[arg(long)]
        caller: Option<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config_path = args.config.config.clone();
    zt_service::main("document", config_path.as_deref(), move |config: document::Config| run(args, config)).await
}

async fn run(args: Args, config: document::Config) -> anyhow::Result<ExitCode> {
    match args.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = document::Application::build(config).await?;
            app.run_until_stopped(zt_service::shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckOpa { duration, interval } => {
            let report = document::check_opa(&config, duration, interval).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(if report.failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Decide { user, agent, doc, caller } => {
            let td = config.workload.trust_domain()?;
            let caller_spiffe_id = caller.unwrap_or_else(|| match &agent {
                Some(a) => format!("spiffe://{td}/agent/{a}"),
                None => format!("spiffe://{td}{}", zt_identity::lab::FRONTEND),
            });
            let input = document::DecisionInput { caller_spiffe_id, user, agent, document: doc };
            match document::decide(&config, &input).await {
                Ok(decision) => {
                    println!("{}", serde_json::to_string(&decision)?);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
