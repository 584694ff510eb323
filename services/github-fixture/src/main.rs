use std::process::ExitCode;

use clap::Parser;

/// A labelled test double for GitHub's REST API (`GET /user`, `GET /user/repos`). Tokens
/// `ghp_fixture_<login>` are valid for `<login>`; everything else gets 401 Bad credentials.
/// Every response carries `x-ztlab-fixture: github`.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8099")]
    listen: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    zt_service::telemetry::init("github-fixture");
    let run = async {
        let app = github_fixture::Application::build(&args.listen).await?;
        app.run_until_stopped(zt_service::shutdown_signal()).await
    };
    match run.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "stopped");
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
