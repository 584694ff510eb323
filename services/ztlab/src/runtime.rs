//! The lab-level commands (`ztlab up`, `down`, `status`, `logs`) behind one trait, [`Runtime`],
//! so that a second runtime (Kubernetes) provides the same operations. [`LocalRuntime`], the
//! lab as local processes through `zt_runtime::lab::Lab`, is the one implementation today.
//!
//! A runtime does not print: `up` reports its progress through a callback, and the CLI renders
//! what the operations return. The scenario runner's seam to a lab is the same idea one level
//! down ([`crate::demo::target::Target`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use zt_entry_api::pb;
use zt_runtime::lab::{ComponentStatus, HookFuture, Hooks, Lab};

use crate::api;
use crate::config::Plan;

/// Progress lines of a long operation (`==> services`, …).
pub type Progress<'a> = &'a (dyn Fn(String) + Sync);

/// What `up` returns: each component's status after it.
pub type Up = anyhow::Result<Vec<ComponentStatus>>;

/// The workload catalogue's entries, and where they came from (for messages).
#[derive(Debug, Clone)]
pub struct CatalogueEntries {
    /// `built-in catalogue`, or the file.
    pub name: String,
    /// The entries, each with the field it came from.
    pub entries: Vec<(String, pb::EntrySpec)>,
}

/// What `down` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownReport {
    /// Whether a lab was recorded (and its processes stopped).
    pub stopped: bool,
    /// The state that was deleted (`--purge`).
    pub purged: Option<PathBuf>,
}

/// The operations on a whole lab.
#[async_trait::async_trait]
pub trait Runtime: Send + Sync {
    /// Starts whatever of `plan` is not running, in order, each with a readiness check; applies
    /// the workload catalogue through entry-manager once it runs and waits until its entries
    /// are SYNCED, before what needs them. Idempotent. On failure, what this call started is
    /// stopped again.
    async fn up(&self, plan: &Plan, catalogue: &CatalogueEntries, progress: Progress<'_>) -> Up;

    /// Stops every component the lab started; with `purge`, also deletes its state.
    async fn down(&self, purge: bool) -> anyhow::Result<DownReport>;

    /// Each component's status, in start order.
    async fn status(&self) -> anyhow::Result<Vec<ComponentStatus>>;

    /// Where the log of `component` is.
    fn log_path(&self, component: &str) -> anyhow::Result<PathBuf>;
}

/// The local runtime: the lab's processes on this machine, recorded in a state dir.
#[derive(Debug, Clone)]
pub struct LocalRuntime {
    state_dir: PathBuf,
    conn: api::Conn,
}

impl LocalRuntime {
    /// The lab in `state_dir`, reaching entry-manager as `conn` says.
    pub fn new(state_dir: &Path, conn: api::Conn) -> Self {
        Self { state_dir: state_dir.to_path_buf(), conn }
    }

    /// The state dir.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }
}

/// `up`'s catalogue step: apply the entries through entry-manager, wait until they are SYNCED.
struct ApplyCatalogue<'a> {
    conn: &'a api::Conn,
    catalogue: &'a CatalogueEntries,
    progress: Progress<'a>,
}

impl ApplyCatalogue<'_> {
    async fn run(&self, lab: &Lab) -> anyhow::Result<()> {
        let name = &self.catalogue.name;
        (self.progress)(format!("==> applying the workload catalogue through entry-manager ({name})"));
        let client = self.conn.client(lab.state_dir())?;
        let applied = api::apply(&client, &self.catalogue.entries).await?;
        (self.progress)(format!(
            "    {} created, {} updated, {} unchanged",
            applied.created, applied.updated, applied.unchanged
        ));
        api::wait_synced(&client, &applied.ids, Duration::from_secs(60)).await?;
        (self.progress)("==> services".to_owned());
        Ok(())
    }
}

impl Hooks for ApplyCatalogue<'_> {
    fn catalogue<'a>(&'a self, lab: &'a Lab) -> HookFuture<'a> {
        Box::pin(async move { self.run(lab).await.map_err(|e| zt_runtime::Error::Hook(e.into())) })
    }
}

#[async_trait::async_trait]
impl Runtime for LocalRuntime {
    async fn up(&self, plan: &Plan, catalogue: &CatalogueEntries, progress: Progress<'_>) -> Up {
        progress("==> infrastructure and entry management".to_owned());
        let hooks = ApplyCatalogue { conn: &self.conn, catalogue, progress };
        let lab = Lab::up_with(plan.full.clone(), false, &hooks).await?;
        let status = lab.status().await;
        lab.detach();
        Ok(status)
    }

    async fn down(&self, purge: bool) -> anyhow::Result<DownReport> {
        let stopped = match Lab::open(&self.state_dir) {
            Ok(mut lab) => {
                lab.down().await?;
                true
            }
            Err(_) => false,
        };
        let mut purged = None;
        if purge && self.state_dir.exists() {
            std::fs::remove_dir_all(&self.state_dir)
                .with_context(|| format!("removing {}", self.state_dir.display()))?;
            purged = Some(self.state_dir.clone());
        }
        Ok(DownReport { stopped, purged })
    }

    async fn status(&self) -> anyhow::Result<Vec<ComponentStatus>> {
        Ok(Lab::open(&self.state_dir)?.status().await)
    }

    fn log_path(&self, component: &str) -> anyhow::Result<PathBuf> {
        Ok(Lab::open(&self.state_dir)?.log_path(component)?)
    }
}
