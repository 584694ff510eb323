//! `ztlab kind`: the lab on its kind cluster. `./scripts/setup.sh --kind` creates the cluster
//! (`scripts/kind-cluster.sh`) and loads the images (`scripts/kind-images.sh`); these commands
//! put the lab on it and show how it is doing, through `zt_kind`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use zt_kind::manifests::Images;
use zt_kind::{Kind, KindPaths};
use zt_runtime::component::Health;

use crate::Output;
use crate::config::LabConfig;
use crate::table::Table;

/// `ztlab kind ...`.
#[derive(Debug, Subcommand)]
pub enum KindCmd {
    /// Put the lab's SPIRE sites on the kind cluster (server, agent with k8s_psat, SPIFFE CSI
    /// driver, node alias), or bring them up to date. Idempotent. Needs the cluster and images:
    /// ./scripts/setup.sh --kind does all of it.
    Up {
        /// Lab config (TOML); default: infrastructure/local/lab.toml as built in (the same file
        /// as the local runtime's).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// The lab's pods: component, pod, health, restarts. Exits 1 if any is not healthy.
    Status {
        /// Lab config (TOML); default: the built-in lab.toml.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Runs a `ztlab kind` command against the cluster recorded under `state_dir`.
pub async fn run(cmd: KindCmd, state_dir: &Path, out: Output) -> anyhow::Result<ExitCode> {
    let config = match &cmd {
        KindCmd::Up { config } | KindCmd::Status { config } => LabConfig::load(config.as_deref())?,
    };
    let plan = config.plan(Some(state_dir.to_owned()))?;
    let sites = plan.full.sites;
    let kind = Kind::connect(KindPaths::new(state_dir)).await?;
    match cmd {
        KindCmd::Up { .. } => {
            kind.up_sites(&sites, &plan.full.log_level, &Images::pinned()?, &mut |s| eprintln!("    {s}")).await?;
            eprintln!("the lab's SPIRE sites run on kind (ztlab kind status)");
            Ok(ExitCode::SUCCESS)
        }
        KindCmd::Status { .. } => {
            let status = kind.status(&sites).await?;
            match out {
                Output::Json => println!("{}", serde_json::to_string_pretty(&status)?),
                Output::Table => {
                    let mut t = Table::new(["COMPONENT", "POD", "HEALTH", "RESTARTS", "DETAIL"]);
                    for s in &status {
                        t.row(vec![
                            s.component.clone(),
                            format!("{}/{}", s.namespace, s.pod),
                            s.health.to_string(),
                            s.restarts.to_string(),
                            s.detail.clone(),
                        ]);
                    }
                    t.print();
                }
            }
            Ok(if !status.is_empty() && status.iter().all(|s| s.health == Health::Healthy) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
