//! `up`: the lab's plan ([`Lab::plan`], a list of [`Step`]s) walked in order. Most steps start a
//! component ([`Step::Start`], [`Component::start`]); the few that join components are steps of
//! their own: configuring OpenBao once it runs, handing over to the caller once entry-manager runs
//! (the catalogue), and configuring OpenBao's secrets once the OIDC Discovery Provider and the
//! app PostgreSQL run.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::app::{self as appchain, AppPaths};
use crate::component::Component;
use crate::lab::{APP_AUDIENCE, Lab, LabSpec, LabState, OPENBAO};
use crate::openbao::OpenBao;
use crate::ports::ensure_free;
use crate::{Error, Result};

/// One step of `up`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Start a component unless it runs, and wait until it is ready.
    Start(Component),
    /// Configure OpenBao as the OIDC provider of the lab's people (after OpenBao).
    ConfigureIdentity,
    /// Hand over to the caller ([`Hooks::catalogue`]): entry-manager and the site agents run, and
    /// what follows gets its entries from the workload catalogue applied through them.
    Catalogue,
    /// Configure OpenBao's jwt auth (keys from the OIDC Discovery Provider), its database engine
    /// (on the app PostgreSQL) and KV v2.
    ConfigureSecrets,
}

impl Step {
    /// What it does, in a few words (the component's name for a start).
    pub fn name(&self) -> String {
        match self {
            Step::Start(c) => c.name(),
            Step::ConfigureIdentity => "configure OpenBao's OIDC provider".into(),
            Step::Catalogue => "apply the workload catalogue".into(),
            Step::ConfigureSecrets => "configure OpenBao's jwt auth, database engine and KV v2".into(),
        }
    }
}

/// A future of a hook.
pub type HookFuture<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

/// What the caller of [`Lab::up_with`] does between components.
pub trait Hooks: Sync {
    /// At [`Step::Catalogue`]: entry-manager and the site agents are ready; create the entries of
    /// whatever follows (the CLI applies the workload catalogue and waits until it is SYNCED).
    fn catalogue<'a>(&'a self, lab: &'a Lab) -> HookFuture<'a>;
}

/// No hooks: the catalogue step does nothing (tests, `restart_stopped`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

impl Hooks for NoHooks {
    fn catalogue<'a>(&'a self, _lab: &'a Lab) -> HookFuture<'a> {
        Box::pin(async { Ok(()) })
    }
}

/// One attempt of `up`: its timeout, what it started (stopped again if it fails), and OpenBao's
/// root token while it configures (revoked at the end).
#[derive(Debug)]
pub(crate) struct UpRun {
    /// How long each component may take to become ready.
    pub(crate) timeout: Duration,
    /// The components this attempt started, in order.
    pub(crate) started: Vec<String>,
    bao_root: Option<String>,
}

impl Lab {
    /// Starts whatever of `spec` is not already running, in order, each with a readiness
    /// check. On failure, stops what this call started and returns the error.
    pub async fn up(spec: LabSpec, owned: bool) -> Result<Self> {
        Self::up_with(spec, owned, &NoHooks).await
    }

    /// [`Lab::up`], calling `hooks` at the steps that need the caller.
    pub async fn up_with(spec: LabSpec, owned: bool, hooks: &dyn Hooks) -> Result<Self> {
        spec.validate()?;
        let previous = Self::open(&spec.state_dir).map(|l| l.state.clone()).unwrap_or_default();
        let mut lab = Self { state: LabState { spec, ..previous }, owned: false };
        let mut run = lab.new_run();
        if let Err(e) = lab.walk(&mut run, hooks).await {
            for name in run.started.iter().rev() {
                lab.stop_component(name).await;
            }
            if !run.started.is_empty() {
                let _ = lab.save();
            }
            return Err(e);
        }
        lab.owned = owned;
        Ok(lab)
    }

    /// Starts again whatever of the spec is not running (after `stop_component`, say).
    pub async fn restart_stopped(&mut self) -> Result<()> {
        let mut run = self.new_run();
        let r = self.walk(&mut run, &NoHooks).await;
        if r.is_err() {
            let _ = self.save();
        }
        r
    }

    fn new_run(&self) -> UpRun {
        UpRun { timeout: Duration::from_secs(self.spec().ready_timeout_secs), started: Vec::new(), bao_root: None }
    }

    async fn walk(&mut self, run: &mut UpRun, hooks: &dyn Hooks) -> Result<()> {
        let result = self.walk_plan(run, hooks).await;
        // The root token is used only to configure, then revoked.
        if let (Some(root), Some(bao)) = (run.bao_root.take(), self.openbao_handle())
            && let Err(e) = bao.revoke_root(&root).await
        {
            tracing::warn!(error = %e, "could not revoke the OpenBao root token");
        }
        result
    }

    async fn walk_plan(&mut self, run: &mut UpRun, hooks: &dyn Hooks) -> Result<()> {
        let plan = self.plan();
        // Pre-flight: the pinned ports of every component that does not run must be free.
        for step in &plan {
            if let Step::Start(c) = step
                && !self.process(&c.name()).ok().flatten().is_some_and(crate::process::ProcessRecord::is_alive)
            {
                for (field, port) in c.pinned_ports(self.spec()) {
                    ensure_free(&field, port)?;
                }
            }
        }
        let dir = self.state_dir().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        for step in plan {
            match step {
                Step::Start(c) => c.start(self, run).await?,
                Step::ConfigureIdentity => self.configure_identity(run).await?,
                Step::Catalogue => {
                    // The hook reads the lab's record (where entry-manager listens).
                    self.save()?;
                    hooks.catalogue(self).await?;
                }
                Step::ConfigureSecrets => self.configure_secrets(run).await?,
            }
        }
        self.save()
    }

    fn running_openbao(&self) -> Result<OpenBao> {
        self.openbao_handle().ok_or_else(|| Error::config("openbao", "OpenBao has not been started"))
    }

    async fn bao_root(&self, bao: &OpenBao, run: &mut UpRun) -> Result<String> {
        if let Some(t) = &run.bao_root {
            return Ok(t.clone());
        }
        let t = bao.admin_token().await?;
        run.bao_root = Some(t.clone());
        Ok(t)
    }

    /// [`Step::ConfigureIdentity`], when its configuration changed since it was last applied.
    async fn configure_identity(&mut self, run: &mut UpRun) -> Result<()> {
        let bao = self.running_openbao()?;
        let cfg = crate::openbao::IdentityConfig::lab(self.lab_users()?);
        let digest = marker::digest(&format!("{cfg:?}"));
        if marker::read(&bao.dir, "identity").as_deref() != Some(digest.as_str()) {
            let root = self.bao_root(&bao, run).await?;
            bao.configure_identity(&root, &cfg).await?;
            marker::write(&bao.dir, "identity", &digest)?;
        }
        Ok(())
    }

    /// [`Step::ConfigureSecrets`], when its configuration changed since it was last applied, or
    /// the scoped tokens it writes are missing.
    async fn configure_secrets(&mut self, run: &mut UpRun) -> Result<()> {
        let app = self.spec().app.clone().ok_or_else(|| Error::config("app", "this lab runs no app chain"))?;
        let bao =
            self.openbao_handle().ok_or_else(|| Error::config("app", "the app chain needs OpenBao (set openbao)"))?;
        let cluster = AppPaths::new(self.state_dir()).pg_cluster(app.postgres_port);
        let mut cfg = crate::openbao::AppConfig {
            jwks_url: format!("http://127.0.0.1:{}/keys", app.oidc_port),
            role: "backend".into(),
            spiffe_id: format!("spiffe://{}{}", self.site_spec(&app.site)?.trust_domain, zt_identity::lab::BACKEND),
            audience: APP_AUDIENCE.into(),
            pg_socket_dir: cluster.socket_dir(),
            pg_port: app.postgres_port,
            admin_password: String::new(),
            db_ttl_secs: app.db_ttl_secs,
            db_max_ttl_secs: app.db_max_ttl_secs,
        };
        // The digest covers what `configure_app` does (its version), so that a lab configured by
        // an older version is configured again on its next `up`.
        let digest = marker::digest(&format!(
            "{}{}",
            crate::openbao::APP_CONFIG_VERSION,
            serde_json::to_string(&cfg).unwrap_or_default()
        ));
        let tokens_missing = !crate::openbao::lease_reader_file(&bao.dir).exists()
            || !crate::openbao::lease_revoker_file(&bao.dir).exists();
        if marker::read(&bao.dir, "app").as_deref() != Some(digest.as_str()) || tokens_missing {
            tracing::info!(component = OPENBAO, "configuring jwt auth, the database engine and KV v2");
            cfg.admin_password = appchain::bootstrap_app_db(&cluster).await?;
            let root = self.bao_root(&bao, run).await?;
            bao.configure_app(&root, &cfg).await?;
            marker::write(&bao.dir, "app", &digest)?;
        }
        Ok(())
    }
}

/// `<dir>/configured.json` records which configuration digests were applied.
mod marker {
    use std::path::Path;

    use crate::{Error, Result};

    /// A short digest of a configuration, to tell whether it changed since it was applied.
    pub(super) fn digest(text: &str) -> String {
        use sha2::Digest as _;
        let d = sha2::Sha256::digest(text.as_bytes());
        d.iter().take(16).map(|b| format!("{b:02x}")).collect()
    }

    pub(super) fn read(dir: &Path, key: &str) -> Option<String> {
        let text = std::fs::read_to_string(dir.join("configured.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v.get(key)?.as_str().map(str::to_owned)
    }

    pub(super) fn write(dir: &Path, key: &str, digest: &str) -> Result<()> {
        let file = dir.join("configured.json");
        let mut v: serde_json::Value = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_else(|| serde_json::json!({}));
        v[key] = serde_json::Value::String(digest.to_owned());
        let tmp = file.with_extension("json.tmp");
        std::fs::write(&tmp, v.to_string()).map_err(Error::io(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, &file).map_err(Error::io(format!("writing {}", file.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::{OpenBaoSpec, SiteSpec, WorkloadSpec};

    fn workload(name: &str, bootstrap_entry: bool) -> WorkloadSpec {
        WorkloadSpec { bootstrap_entry, ..WorkloadSpec::new(name, "a", "/ns/x/sa/w", "/bin/true".into()) }
    }

    /// The bootstrap workloads run before the catalogue step, the services after it; OpenBao
    /// is configured right after it starts.
    #[test]
    fn the_plan_puts_the_catalogue_between_entry_management_and_the_services() {
        let spec = LabSpec {
            sites: vec![SiteSpec::named("a")],
            mgmt_db: true,
            openbao: Some(OpenBaoSpec { port: 1, users: vec![] }),
            workloads: vec![workload("entry-manager", true), workload("opa", false), workload("site-agent-a", true)],
            ..LabSpec::default()
        };
        let lab = Lab { state: LabState { spec, ..LabState::default() }, owned: false };
        let names: Vec<String> = lab.plan().iter().map(Step::name).collect();
        assert_eq!(
            names,
            [
                "postgres-mgmt",
                "spire-server-a",
                "spire-agent-a",
                "openbao",
                "configure OpenBao's OIDC provider",
                "entry-manager",
                "site-agent-a",
                "apply the workload catalogue",
                "opa",
            ]
        );
        assert_eq!(lab.component_names(), names.iter().filter(|n| !n.contains(' ')).cloned().collect::<Vec<_>>());
    }
}
