//! `ztlab`: bring the local lab up and down, see how it is doing, and manage SPIRE entries
//! through the central entry-management API.
//!
//! The processes are run by `zt-runtime`, which the tests use too; this binary parses
//! arguments, turns `infrastructure/local/lab.toml` (built in, or `--config`) into the runtime's
//! spec, applies the workload catalogue through entry-manager, and prints.
//!
//! The commands live in the `ztlab` library (its module map: `src/lib.rs`); this binary parses
//! the arguments and calls into it.

use std::io::{IsTerminal as _, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use zt_runtime::lab::{ComponentStatus, Lab, default_state_dir};

use ztlab::config::{Catalogue, DEFAULT_CATALOGUE, LabConfig};
use ztlab::runtime::{CatalogueEntries, LocalRuntime, Runtime as _};
use ztlab::table::Table;
use ztlab::{Output, api, demo};

/// ztlab: a zero-trust lab on real SPIRE.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// The lab's state dir (configs, data, sockets, logs). Default: $ZT_STATE_DIR, else
    /// /var/lib/ztlab as root, else ~/.local/state/ztlab.
    #[arg(long, global = true, env = "ZT_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Output format.
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(flatten)]
    conn: api::Conn,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start whatever of the lab is not running: mgmt PostgreSQL, SPIRE sites, entry-manager and
    /// site agents; apply the workload catalogue through the API; then the services. Idempotent.
    Up {
        /// Lab config (TOML); default: infrastructure/local/lab.toml as built in.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Workload catalogue (TOML); default: infrastructure/catalogue/workloads.toml as built in.
        #[arg(long)]
        catalogue: Option<PathBuf>,
    },
    /// Stop every process the lab started, by pid.
    Down {
        /// Also delete the state dir (SPIRE data, keys, logs).
        #[arg(long)]
        purge: bool,
    },
    /// Show each component: pid, health, SPIFFE ID, SVID expiry. Exits 1 if any is not healthy.
    Status,
    /// Print a component's log.
    Logs {
        /// Component name, as `ztlab status` lists it.
        component: String,
        /// Lines from the end.
        #[arg(long, short = 'n', default_value_t = 100, allow_negative_numbers = true)]
        lines: usize,
        /// Keep printing as the log grows (Ctrl-C to stop).
        #[arg(long, short)]
        follow: bool,
    },
    /// The lab on its kind cluster (./scripts/setup.sh --kind; docs/kind.md).
    #[command(subcommand)]
    Kind(ztlab::kind::KindCmd),
    /// Registration entries, through the central API.
    #[command(subcommand)]
    Entries(api::EntriesCmd),
    /// SPIRE sites and their sync health.
    #[command(subcommand)]
    Sites(api::SitesCmd),
    /// The audit trail.
    #[command(subcommand)]
    Audit(api::AuditCmd),
    /// API keys for CI (Admin).
    #[command(subcommand)]
    Keys(api::KeysCmd),
    /// Sync status and control.
    #[command(subcommand)]
    Sync(api::SyncCmd),
    /// Who the API thinks you are.
    Whoami,
    /// Policies the lab enforces.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Log a lab user in through OpenBao (OIDC) and print the token, for
    /// `export ZT_TOKEN=$(ztlab login operator)`.
    Login {
        /// admin, operator, developer or viewer.
        user: String,
    },
    /// The demo scenarios (demo/scenarios.toml): list, show, and run them against the lab.
    Demo(demo::DemoArgs),
}

#[derive(Debug, Subcommand)]
enum PolicyCmd {
    /// The backend Envoy's RBAC policy (policies/envoy/): swap it, or show the installed one.
    /// Envoy applies a swap within a second or two, with no restart of Envoy or the apps.
    Rbac {
        /// allow-frontend (only the frontend's SPIFFE ID may call the backend), deny-frontend
        /// (nobody may), or show.
        #[arg(value_parser = rbac_choices())]
        mode: String,
    },
}

/// The `policy rbac` argument: a mode by its one name, or `show`.
fn rbac_choices() -> clap::builder::PossibleValuesParser {
    let modes = zt_runtime::app::RbacMode::ALL.map(zt_runtime::app::RbacMode::as_str);
    clap::builder::PossibleValuesParser::new(modes.into_iter().chain(["show"]))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    zt_tls::install_crypto_provider();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .without_time()
        .with_target(false)
        .with_ansi(ztlab::colour(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR")))
        .with_writer(std::io::stderr)
        .try_init();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            ExitCode::from(2)
        }
    }
}

/// An error and its causes on one line, each said once. Many errors already include their
/// cause in their own text (zt-runtime's I/O errors, the time crate's parse errors) and also
/// return it as their source, so anyhow's `{:#}` would print it twice.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let said = cause.to_string();
        if said.is_empty() || text.contains(&said) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&said);
    }
    text
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let state_dir = cli.state_dir.clone().unwrap_or_else(default_state_dir);
    let out = cli.output;
    match cli.command {
        Command::Up { config, catalogue } => {
            up(cli.state_dir, config.as_deref(), catalogue.as_deref(), &cli.conn).await
        }
        Command::Down { purge } => {
            let report = LocalRuntime::new(&state_dir, cli.conn.clone()).down(purge).await?;
            if report.stopped {
                eprintln!("stopped every process the lab started");
            } else {
                eprintln!("no lab recorded in {}; nothing to stop", state_dir.display());
            }
            if let Some(dir) = report.purged {
                eprintln!("removed {}", dir.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Kind(cmd) => ztlab::kind::run(cmd, &state_dir, out).await,
        Command::Status => {
            let status = LocalRuntime::new(&state_dir, cli.conn.clone()).status().await?;
            match out {
                Output::Json => println!("{}", serde_json::to_string_pretty(&status)?),
                Output::Table => print_status(&status),
            }
            Ok(if status.iter().all(|s| s.health == zt_runtime::component::Health::Healthy) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Logs { component, lines, follow } => {
            let path = LocalRuntime::new(&state_dir, cli.conn.clone()).log_path(&component)?;
            print_log(&path, lines, follow).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Entries(cmd) => {
            cmd.check()?;
            let client = cli.conn.client(&state_dir)?;
            let spec = Lab::open(&state_dir).map(|l| l.spec().clone()).unwrap_or_default();
            api::entries(&client, out, cmd, &spec).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sites(cmd) => {
            api::sites(&cli.conn.client(&state_dir)?, out, cmd).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(cmd) => {
            api::audit(&cli.conn.client(&state_dir)?, out, cmd).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys(cmd) => {
            api::keys(&cli.conn.client(&state_dir)?, out, cmd).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sync(cmd) => {
            api::sync(&cli.conn.client(&state_dir)?, cmd).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Login { user } => {
            let lab = Lab::open(&state_dir)?;
            println!("{}", lab.user_token(&user).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy(PolicyCmd::Rbac { mode }) => {
            let lab = Lab::open(&state_dir)?;
            let app = lab.spec().app.clone().context("this lab runs no app chain (no [app] in its config)")?;
            let td = lab.site_spec(&app.site)?.trust_domain.clone();
            let paths = zt_runtime::app::AppPaths::new(lab.state_dir());
            if mode == "show" {
                match zt_runtime::app::current_rbac(&paths) {
                    Some(m) => println!("{m}  ({})", paths.rbac_file().display()),
                    None => println!("none installed ({})", paths.rbac_file().display()),
                }
                return Ok(ExitCode::SUCCESS);
            }
            let m: zt_runtime::app::RbacMode = mode.parse()?;
            let (file, load) =
                zt_runtime::app::install_rbac(&paths, &td, m, app.backend_envoy.admin, Duration::from_secs(5)).await?;
            eprintln!("installed {m} in {} ({})", file.display(), demo::rbac_load_text(load));
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => demo::run(&state_dir, out, args).await,
        Command::Whoami => {
            api::whoami(&cli.conn.client(&state_dir)?, out).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `ztlab up`: infrastructure and entry management, then the catalogue through the API, then
/// the services (whose entries the catalogue created), through the runtime.
async fn up(
    state_dir: Option<PathBuf>,
    config: Option<&Path>,
    catalogue: Option<&Path>,
    conn: &api::Conn,
) -> anyhow::Result<ExitCode> {
    let plan = LabConfig::load(config)?.plan(state_dir)?;
    let (text, name) = match catalogue {
        Some(p) => {
            (std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?, p.display().to_string())
        }
        None => (DEFAULT_CATALOGUE.to_owned(), "built-in catalogue".to_owned()),
    };
    let entries = Catalogue::parse(&text, &name)?.entries(&plan.full)?;
    let runtime = LocalRuntime::new(&plan.full.state_dir, conn.clone());
    let catalogue = CatalogueEntries { name, entries };
    let status = runtime.up(&plan, &catalogue, &|line| eprintln!("{line}")).await?;
    print_status(&status);
    eprintln!(
        "lab state: {}  (logs: ztlab logs <component>; entries: ztlab entries list; stop: ztlab down)",
        runtime.state_dir().display()
    );
    Ok(ExitCode::SUCCESS)
}

fn print_status(status: &[ComponentStatus]) {
    let mut t = Table::new(["COMPONENT", "PID", "HEALTH", "SPIFFE ID", "SVID EXPIRES", "DETAIL"]);
    for s in status {
        t.row(vec![
            s.name.clone(),
            s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            s.health.to_string(),
            s.spiffe_id.clone().unwrap_or_else(|| "-".into()),
            match (&s.svid_expires_at, s.svid_seconds_left) {
                (Some(at), Some(left)) => format!("{at} ({left}s)"),
                _ => "-".into(),
            },
            s.detail.clone().unwrap_or_default(),
        ]);
    }
    t.print();
}

async fn print_log(path: &Path, lines: usize, follow: bool) -> anyhow::Result<()> {
    let mut file = std::fs::File::open(path).with_context(|| format!("no log yet at {}", path.display()))?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let all: Vec<&str> = text.lines().collect();
    let mut out = std::io::stdout().lock();
    for l in &all[all.len().saturating_sub(lines)..] {
        writeln!(out, "{l}")?;
    }
    drop(out);
    if !follow {
        return Ok(());
    }
    let mut pos = file.seek(SeekFrom::End(0))?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        let len = std::fs::metadata(path)?.len();
        if len > pos {
            file.seek(SeekFrom::Start(pos))?;
            let mut buf = String::new();
            file.read_to_string(&mut buf)?;
            print!("{buf}");
            pos = len;
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    const NODE: &str = "spiffe://ztlab.test/ztlab/nodes/local";

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ztlab").chain(args.iter().copied()))
    }

    /// Every option and argument of every command says what it is in `--help`.
    #[test]
    fn every_option_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id != "help" && id != "version" && arg.get_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        walk(&cmd, "ztlab", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }

    /// What `entries create` of an entry under `parent` with `extra` says is wrong with it.
    fn spec_error(parent: &str, extra: &[&str]) -> String {
        let mut args = vec!["entries", "create", "--spiffe-id", "spiffe://ztlab.test/ns/dev/sa/api", "--site", "a"];
        args.extend_from_slice(&["--parent-id", parent]);
        args.extend_from_slice(extra);
        let cli = parse(&args).expect("parses");
        let Command::Entries(api::EntriesCmd::Create { spec, .. }) = cli.command else { panic!("create") };
        error_text(&spec.to_spec().expect_err("invalid"))
    }

    /// Negative numbers are values, so that validation names the field, not clap's "unexpected
    /// argument"; an entry that is its own parent, or repeats a selector, is refused before
    /// anything is sent.
    #[test]
    fn bad_entries_are_refused_naming_the_field() {
        let err = spec_error(NODE, &["--selector", "unix:uid:1", "--x509-svid-ttl", "-5"]);
        assert!(err.starts_with("entry.x509_svid_ttl: -5 s is out of range"), "{err}");
        let err = spec_error(NODE, &["--selector", "unix:uid:1", "--jwt-svid-ttl", "-1"]);
        assert!(err.starts_with("entry.jwt_svid_ttl: -1 s"), "{err}");
        let err =
            spec_error(NODE, &["--selector", "unix:uid:1", "--selector", "unix:gid:2", "--selector", "unix:uid:1"]);
        assert_eq!(err, "entry.selectors[2]: duplicate of selectors[0]");
        let err = spec_error(NODE, &["--selector", "nocolon"]);
        assert!(err.starts_with("entry.selectors[0]: "), "{err}");
        let err = spec_error("spiffe://ztlab.test/ns/dev/sa/api", &["--selector", "unix:uid:1"]);
        assert!(err.starts_with("entry.parent_id: ") && err.contains("own parent"), "{err}");
        let cli = parse(&["entries", "update", "x", "--revision", "-1"]);
        assert!(cli.is_err_and(|e| !e.to_string().contains("unexpected argument")));
    }

    /// `--limit` means the same for every list: at most N rows, 0 for all; impossible values
    /// are refused naming `--limit`.
    #[test]
    fn limits_are_one_rule() {
        let limit = |args: &[&str]| match parse(args).expect("parses").command {
            Command::Entries(api::EntriesCmd::List { limit, .. }) => limit,
            Command::Audit(api::AuditCmd::List { limit, .. }) => limit,
            _ => panic!("a list"),
        };
        assert_eq!(limit(&["audit", "list", "--limit", "5000"]), 5000);
        assert_eq!(limit(&["audit", "list", "--limit", "0"]), 0);
        assert_eq!(limit(&["entries", "list", "--limit", "0"]), 0);
        assert_eq!(limit(&["entries", "list"]), 0);
        assert_eq!(limit(&["audit", "list"]), 50);
        for list in ["entries", "audit"] {
            for bad in ["-1", "many"] {
                let err = parse(&[list, "list", "--limit", bad]).expect_err(bad).to_string();
                assert!(err.contains("--limit"), "{err}");
                assert!(!err.contains("unexpected argument"), "{err}");
            }
        }
    }

    /// Each cause is said once, also when an error's text already includes its source.
    #[test]
    fn errors_say_each_cause_once() {
        let io = zt_runtime::Error::Io {
            context: "reading /x/lab.json".into(),
            source: std::io::Error::from_raw_os_error(2),
        };
        let e = anyhow::Error::from(io).context("opening the lab");
        let text = error_text(&e);
        assert_eq!(text.matches("(os error 2)").count(), 1, "{text}");
        assert!(text.starts_with("opening the lab: reading /x/lab.json: "), "{text}");

        let parsed =
            time::OffsetDateTime::parse("20x6-01-01T00:00:00Z", &time::format_description::well_known::Rfc3339);
        let e = anyhow::Error::from(parsed.expect_err("bad year")).context("--since");
        let text = error_text(&e);
        assert_eq!(text.matches("could not be parsed").count(), 1, "{text}");
        assert_eq!(format!("{e:#}").matches("could not be parsed").count(), 2, "what anyhow alone prints");

        // Different causes are all kept, in order.
        let e = anyhow::anyhow!("root cause").context("middle").context("top");
        assert_eq!(error_text(&e), "top: middle: root cause");
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        use ztlab::colour;
        assert!(colour(true, None));
        assert!(colour(true, Some("".into())));
        assert!(!colour(true, Some("1".into())));
        assert!(!colour(false, None));
        assert!(!colour(false, Some("1".into())));
    }
}
