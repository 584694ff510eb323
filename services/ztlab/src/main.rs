//! `ztlab`: bring the local lab up and down, and see how it is doing.
//!
//! The work is done by `zt-runtime`, which the tests use too; this binary only parses
//! arguments, builds the lab spec from `infrastructure/local/lab.toml` (compiled in, or
//! `--config`), and prints.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};
use zt_runtime::lab::{ComponentStatus, Lab, LabSpec, SiteSpec, WorkloadSpec, default_state_dir};

const DEFAULT_CONFIG: &str = include_str!("../../../infrastructure/local/lab.toml");

/// ztlab: a zero-trust lab on real SPIRE.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// The lab's state dir (configs, data, sockets, logs). Default: $ZT_STATE_DIR, else
    /// ~/.local/state/ztlab.
    #[arg(long, global = true, env = "ZT_STATE_DIR")]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start whatever of the lab is not running (SPIRE sites, then services). Idempotent.
    Up {
        /// Lab config (TOML); default: infrastructure/local/lab.toml as built in.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Stop every process the lab started, by pid.
    Down {
        /// Also delete the state dir (SPIRE data, keys, logs).
        #[arg(long)]
        purge: bool,
    },
    /// Show each component: pid, health, SPIFFE ID, SVID expiry. Exits 1 if any is not healthy.
    Status {
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Print a component's log.
    Logs {
        /// Component name, as `ztlab status` lists it.
        component: String,
        /// Lines from the end.
        #[arg(long, short = 'n', default_value_t = 100)]
        lines: usize,
        /// Keep printing as the log grows (Ctrl-C to stop).
        #[arg(long, short)]
        follow: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

/// The lab config file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct LabConfig {
    state_dir: Option<PathBuf>,
    #[serde(default = "info")]
    log_level: String,
    #[serde(default = "sixty")]
    ready_timeout_secs: u64,
    sites: Vec<SiteSpec>,
    services: BTreeMap<String, ServicePorts>,
}

fn info() -> String {
    "INFO".into()
}
fn sixty() -> u64 {
    60
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct ServicePorts {
    listen: u16,
    ops: u16,
}

/// The services `ztlab up` runs, in start order: (name, SPIFFE path, site).
const SERVICES: &[(&str, &str, &str)] = &[("opa", "/ns/demo/sa/opa", "a"), ("document", "/ns/demo/sa/document", "a")];

impl LabConfig {
    fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let (text, name) = match path {
            Some(p) => (
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
                p.display().to_string(),
            ),
            None => (DEFAULT_CONFIG.to_owned(), "built-in lab.toml".into()),
        };
        toml::from_str(&text).with_context(|| format!("invalid lab config {name}"))
    }

    fn spec(&self, state_dir: Option<PathBuf>) -> anyhow::Result<LabSpec> {
        let bin_dir = std::env::current_exe()?.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut workloads = Vec::new();
        for (name, path, site) in SERVICES {
            let ports = self
                .services
                .get(*name)
                .with_context(|| format!("invalid lab config: services.{name}: missing (listen and ops ports)"))?;
            let mut env = BTreeMap::from([("ZT_LISTEN_ADDR".to_owned(), format!("127.0.0.1:{}", ports.listen))]);
            if *name == "document" {
                let opa = self.services.get("opa").context("invalid lab config: services.opa: missing")?;
                env.insert("ZT_OPA_URL".into(), format!("https://127.0.0.1:{}", opa.listen));
            }
            workloads.push(WorkloadSpec {
                name: (*name).into(),
                site: (*site).into(),
                spiffe_path: (*path).into(),
                program: bin_dir.join(name),
                args: vec![],
                env,
                ops_port: ports.ops,
                ports: BTreeMap::from([("listen".to_owned(), ports.listen)]),
                x509_svid_ttl_secs: 0,
                bootstrap_entry: true,
                dns_names: vec![],
                config: None,
            });
        }
        if let Some(extra) = self.services.keys().find(|k| !SERVICES.iter().any(|(n, _, _)| n == k)) {
            anyhow::bail!("invalid lab config: services.{extra}: unknown service (known: opa, document)");
        }
        Ok(LabSpec {
            state_dir: state_dir.or_else(|| self.state_dir.clone()).unwrap_or_else(default_state_dir),
            log_level: self.log_level.clone(),
            ready_timeout_secs: self.ready_timeout_secs,
            sites: self.sites.clone(),
            workloads,
            mgmt_db: false,
        })
    }
}

fn state_dir(cli: Option<PathBuf>) -> PathBuf {
    cli.unwrap_or_else(default_state_dir)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .without_time()
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Up { config } => {
            let spec = LabConfig::load(config.as_deref())?.spec(cli.state_dir)?;
            let lab = Lab::up(spec, false).await?;
            let status = lab.status().await;
            print_table(&status);
            eprintln!("lab state: {}  (logs: ztlab logs <component>; stop: ztlab down)", lab.state_dir().display());
            lab.detach();
            Ok(ExitCode::SUCCESS)
        }
        Command::Down { purge } => {
            let dir = state_dir(cli.state_dir);
            match Lab::open(&dir) {
                Ok(mut lab) => {
                    lab.down()?;
                    eprintln!("stopped every process the lab started");
                }
                Err(_) => eprintln!("no lab recorded in {}; nothing to stop", dir.display()),
            }
            if purge && dir.exists() {
                std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
                eprintln!("removed {}", dir.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { output } => {
            let lab = Lab::open(&state_dir(cli.state_dir))?;
            let status = lab.status().await;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&status)?),
                Output::Table => print_table(&status),
            }
            Ok(if status.iter().all(|s| s.health == "healthy") { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Logs { component, lines, follow } => {
            let lab = Lab::open(&state_dir(cli.state_dir))?;
            let path = lab.log_path(&component)?;
            print_log(&path, lines, follow).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_table(status: &[ComponentStatus]) {
    let rows: Vec<[String; 6]> = status
        .iter()
        .map(|s| {
            [
                s.name.clone(),
                s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                s.health.clone(),
                s.spiffe_id.clone().unwrap_or_else(|| "-".into()),
                match (&s.svid_expires_at, s.svid_seconds_left) {
                    (Some(at), Some(left)) => format!("{at} ({left}s)"),
                    _ => "-".into(),
                },
                s.detail.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let header = ["COMPONENT", "PID", "HEALTH", "SPIFFE ID", "SVID EXPIRES", "DETAIL"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = std::io::stdout().lock();
    for r in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = r.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
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
            () = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
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
    use super::*;

    #[test]
    fn built_in_config_parses_and_names_both_sites() {
        let cfg = LabConfig::load(None).expect("built-in config");
        let names: Vec<&str> = cfg.sites.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(cfg.sites.iter().all(|s| s.trust_domain == "ztlab.test" && s.shared_root));
        let spec = cfg.spec(Some("/tmp/ztlab-test".into())).expect("spec");
        assert_eq!(spec.workloads.len(), 2);
        assert_eq!(spec.workloads[1].env["ZT_OPA_URL"], "https://127.0.0.1:8181");
    }

    #[test]
    fn unknown_fields_and_services_are_named() {
        let err = toml::from_str::<LabConfig>("sites = []\nservices = {}\nbogus = 1\n").expect_err("unknown field");
        assert!(err.to_string().contains("bogus"), "{err}");
        let cfg: LabConfig = toml::from_str(
            "sites = []\n[services.opa]\nlisten = 1\nops = 2\n[services.document]\nlisten = 3\nops = 4\n[services.redis]\nlisten = 5\nops = 6\n",
        )
        .expect("parses");
        let err = cfg.spec(None).expect_err("unknown service");
        assert!(err.to_string().contains("services.redis"), "{err}");
    }
}
