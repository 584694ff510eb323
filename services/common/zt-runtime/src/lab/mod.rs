//! The lab as a whole: sites (SPIRE server + agent) and workloads, started in order with
//! readiness checks, recorded in `<state_dir>/lab.json`, and stopped by pid.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::app as appchain;
use crate::process::ProcessRecord;
use crate::spire::{self, Registration, SitePaths};
use crate::{Error, Result};

mod spec;
mod up;

pub use spec::*;
pub(crate) use up::UpRun;
pub use up::{HookFuture, Hooks, NoHooks, Step};

/// A running (or partly running) lab. When `owned` (tests), dropping it stops every process it
/// records; the CLI detaches instead and stops by pid in `ztlab down`.
#[derive(Debug)]
pub struct Lab {
    pub(crate) state: LabState,
    pub(crate) owned: bool,
}

impl Lab {
    fn state_file(state_dir: &Path) -> PathBuf {
        state_dir.join("lab.json")
    }

    /// Opens the lab recorded in `state_dir` without starting anything.
    pub fn open(state_dir: &Path) -> Result<Self> {
        let file = Self::state_file(state_dir);
        let text = std::fs::read_to_string(&file)
            .map_err(Error::io(format!("reading {} (has `ztlab up` run?)", file.display())))?;
        let state =
            serde_json::from_str(&text).map_err(|e| Error::config(file.display().to_string(), e.to_string()))?;
        Ok(Self { state, owned: false })
    }

    /// Copies `program` to `<state>/bin/<name>` (its `unix:path` selector) unless an identical
    /// copy is there. Returns the copy's path.
    pub fn install_binary(&self, name: &str, program: &Path) -> Result<PathBuf> {
        let dir = self.state.spec.state_dir.join("bin");
        std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        let dest = dir.join(name);
        if !same_file(program, &dest) {
            let tmp = dir.join(format!(".{name}.tmp"));
            let _ = std::fs::remove_file(&tmp);
            // A hard link where possible (Envoy is 100 MB), else a copy; either way its own path.
            if std::fs::hard_link(program, &tmp).is_err() {
                std::fs::copy(program, &tmp).map_err(Error::io(format!("copying {}", program.display())))?;
            }
            std::fs::rename(&tmp, &dest).map_err(Error::io(format!("installing {}", dest.display())))?;
        }
        Ok(dest)
    }

    /// The bootstrap registration of workload `w` run from `exe` (its `unix:path` selector),
    /// under entry ID `bootstrap.<name>` ([`Lab::register`]).
    pub fn registration(&self, w: &WorkloadSpec, exe: &Path) -> Result<Registration> {
        let s = self.site_spec(&w.site)?;
        Ok(Registration {
            entry_id: format!("bootstrap.{}", w.name),
            spiffe_id: format!("spiffe://{}{}", s.trust_domain, w.spiffe_path),
            parent_id: s.node_alias(),
            selectors: vec![format!("unix:path:{}", exe.display())],
            x509_svid_ttl: w.x509_svid_ttl_secs,
            jwt_svid_ttl: 0,
            dns_names: w.dns_names.clone(),
        })
    }

    /// Registers `exe` (by `unix:path`) as `spiffe://<site td><spiffe_path>` at `site`, with the
    /// SPIRE CLI, under entry ID `bootstrap.<name>`. Idempotent.
    pub async fn register(
        &self,
        site: &str,
        name: &str,
        spiffe_path: &str,
        exe: &Path,
        x509_ttl: u64,
    ) -> Result<Registration> {
        let w = WorkloadSpec {
            x509_svid_ttl_secs: x509_ttl,
            ..WorkloadSpec::new(name, site, spiffe_path, exe.to_path_buf())
        };
        let r = self.registration(&w, exe)?;
        spire::create_entry(&self.site_paths(site)?, &r).await?;
        Ok(r)
    }

    /// The `mgmt` PostgreSQL cluster of this lab.
    pub fn mgmt_cluster(&self) -> crate::postgres::Cluster {
        crate::postgres::Cluster::new(&self.state.spec.state_dir.join("pg-mgmt"), 5432)
    }

    /// The lab users' passwords, generating missing ones (kept 0600 in the state dir).
    pub fn lab_users(&self) -> Result<Vec<crate::openbao::UserSpec>> {
        use std::os::unix::fs::OpenOptionsExt;
        let Some(bao) = &self.state.spec.openbao else { return Ok(vec![]) };
        let file = self.state.spec.state_dir.join("openbao/users.json");
        let mut saved: BTreeMap<String, String> =
            std::fs::read_to_string(&file).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
        let mut changed = false;
        for (name, _) in &bao.users {
            saved.entry(name.clone()).or_insert_with(|| {
                changed = true;
                uuid::Uuid::new_v4().simple().to_string()
            });
        }
        if changed {
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
            }
            let text = serde_json::to_string_pretty(&saved).map_err(|e| Error::config("users.json", e.to_string()))?;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&file)
                .map_err(Error::io(format!("writing {}", file.display())))?;
            std::io::Write::write_all(&mut f, text.as_bytes())
                .map_err(Error::io(format!("writing {}", file.display())))?;
        }
        Ok(bao
            .users
            .iter()
            .map(|(name, groups)| crate::openbao::UserSpec {
                username: name.clone(),
                password: saved[name].clone(),
                groups: groups.clone(),
            })
            .collect())
    }

    /// OpenBao's address, when the lab runs it.
    pub fn openbao_addr(&self) -> Option<String> {
        self.state.spec.openbao.as_ref().map(|b| format!("http://127.0.0.1:{}", b.port))
    }

    /// An OIDC identity token for a lab user (userpass login, then `identity/oidc/token`).
    pub async fn user_token(&self, username: &str) -> Result<String> {
        let bao =
            self.state.spec.openbao.as_ref().ok_or_else(|| Error::config("openbao", "this lab runs no OpenBao"))?;
        let user = self.lab_users()?.into_iter().find(|u| u.username == username).ok_or_else(|| {
            Error::config(
                "user",
                format!(
                    "no lab user {username:?} (known: {})",
                    bao.users.iter().map(|u| u.0.as_str()).collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        let rec = self
            .state
            .workloads
            .get(OPENBAO)
            .cloned()
            .ok_or_else(|| Error::config("openbao", "OpenBao has not been started"))?;
        let handle = crate::openbao::OpenBao {
            addr: format!("http://127.0.0.1:{}", bao.port),
            port: bao.port,
            dir: self.state.spec.state_dir.join("openbao"),
            record: rec,
        };
        handle.user_token(&user.username, &user.password, crate::openbao::DEFAULT_ROLE).await
    }

    /// The handle of the lab's OpenBao, if it was started.
    pub fn openbao_handle(&self) -> Option<crate::openbao::OpenBao> {
        let bao = self.state.spec.openbao.as_ref()?;
        let record = self.state.workloads.get(OPENBAO)?.clone();
        Some(crate::openbao::OpenBao {
            addr: format!("http://127.0.0.1:{}", bao.port),
            port: bao.port,
            dir: self.state.spec.state_dir.join("openbao"),
            record,
        })
    }

    pub(crate) fn site_mut(&mut self, name: &str) -> &mut SiteState {
        self.state.sites.entry(name.to_owned()).or_insert_with(|| SiteState {
            server_port: 0,
            server_health_port: 0,
            agent_health_port: 0,
            server: None,
            agent: None,
        })
    }

    /// The spec of site `name`.
    pub fn site_spec(&self, name: &str) -> Result<&SiteSpec> {
        self.state.spec.sites.iter().find(|s| s.name == name).ok_or_else(|| Error::UnknownComponent {
            name: format!("site {name}"),
            known: self.state.spec.sites.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "),
        })
    }

    /// The file layout of site `name`.
    pub fn site_paths(&self, name: &str) -> Result<SitePaths> {
        self.site_spec(name)?;
        Ok(SitePaths::new(&self.state.spec.state_dir, name))
    }

    /// The Workload API socket of site `name`.
    pub fn workload_socket(&self, name: &str) -> Result<PathBuf> {
        Ok(self.site_paths(name)?.workload_socket())
    }

    /// The running state of site `name`.
    pub fn site_state(&self, name: &str) -> Result<&SiteState> {
        self.site_spec(name)?;
        self.state.sites.get(name).ok_or_else(|| Error::config("sites", format!("site {name} has not been started")))
    }

    /// The state dir.
    pub fn state_dir(&self) -> &Path {
        &self.state.spec.state_dir
    }

    /// The spec.
    pub fn spec(&self) -> &LabSpec {
        &self.state.spec
    }

    pub(crate) fn log_path_for(&self, component: &str) -> PathBuf {
        self.state.spec.state_dir.join("logs").join(format!("{component}.log"))
    }

    /// Every component name, in start order.
    pub fn component_names(&self) -> Vec<String> {
        self.components().iter().map(crate::component::Component::name).collect()
    }

    fn check_component(&self, name: &str) -> Result<()> {
        if self.component_names().iter().any(|n| n == name) {
            Ok(())
        } else {
            Err(Error::UnknownComponent { name: name.to_owned(), known: self.component_names().join(", ") })
        }
    }

    /// The log file of a component.
    pub fn log_path(&self, name: &str) -> Result<PathBuf> {
        self.check_component(name)?;
        Ok(self.log_path_for(name))
    }

    /// The process record of a component, if it was started.
    pub fn process(&self, name: &str) -> Result<Option<&ProcessRecord>> {
        self.check_component(name)?;
        Ok(match crate::component::Component::spire_site(name) {
            Some((true, site)) => self.state.sites.get(site).and_then(|s| s.server.as_ref()),
            Some((false, site)) => self.state.sites.get(site).and_then(|s| s.agent.as_ref()),
            None => self.state.workloads.get(name),
        })
    }

    /// The signal that stops `name` quickly: SIGINT for PostgreSQL (its fast shutdown; SIGTERM
    /// waits for every client to disconnect), SIGTERM for the rest.
    fn stop_signal(name: &str) -> nix::sys::signal::Signal {
        if name == MGMT_DB || name == appchain::POSTGRES_APP {
            nix::sys::signal::Signal::SIGINT
        } else {
            nix::sys::signal::Signal::SIGTERM
        }
    }

    /// Stops one component by pid (its stop signal, then SIGKILL after 10 s).
    pub async fn stop_component(&mut self, name: &str) {
        if let Ok(Some(rec)) = self.process(name) {
            tracing::info!(component = name, pid = rec.pid, "stopping");
            rec.stop_with(Self::stop_signal(name), STOP_GRACE).await;
        }
    }

    /// Kills one component with SIGKILL (a crash, for failure tests).
    pub async fn kill_component(&mut self, name: &str) -> Result<()> {
        if let Some(rec) = self.process(name)? {
            rec.kill_hard().await;
        }
        Ok(())
    }

    /// Stops everything, in reverse start order, and records it.
    pub async fn down(&mut self) -> Result<()> {
        for name in self.component_names().iter().rev() {
            self.stop_component(name).await;
        }
        self.forget_processes()
    }

    /// [`Lab::down`] for code that cannot await (a `Drop`, a plain `#[test]`): the same stops, on
    /// this thread. Never call it from async code.
    pub fn down_blocking(&mut self) -> Result<()> {
        for name in self.component_names().iter().rev() {
            if let Ok(Some(rec)) = self.process(name) {
                tracing::info!(component = name.as_str(), pid = rec.pid, "stopping");
                rec.stop_blocking(Self::stop_signal(name), STOP_GRACE);
            }
        }
        self.forget_processes()
    }

    /// Records that nothing runs any more.
    fn forget_processes(&mut self) -> Result<()> {
        for s in self.state.sites.values_mut() {
            s.server = None;
            s.agent = None;
        }
        self.state.workloads.clear();
        self.save()
    }

    /// Writes `lab.json` (atomically: temp file, then rename).
    pub fn save(&self) -> Result<()> {
        let file = Self::state_file(&self.state.spec.state_dir);
        let tmp = file.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(&self.state).map_err(|e| Error::config("lab.json", e.to_string()))?;
        std::fs::write(&tmp, text).map_err(Error::io(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, &file).map_err(Error::io(format!("writing {}", file.display())))
    }

    /// Keeps the processes running when this handle is dropped (the CLI's `up`).
    pub fn detach(mut self) {
        self.owned = false;
    }
}

/// How long a component may take to stop before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The audience of the backend's JWT-SVID for OpenBao.
pub const APP_AUDIENCE: &str = "openbao";

/// Whether two files have the same content (the same inode, or equal bytes).
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) if x.dev() == y.dev() && x.ino() == y.ino() => true,
        (Ok(x), Ok(y)) => x.len() == y.len() && std::fs::read(a).ok() == std::fs::read(b).ok(),
        _ => false,
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.owned {
            let _ = self.down_blocking();
        }
    }
}

/// Waits until `GET /healthz` on `ops_port` answers 200, failing early if the process exits.
pub async fn wait_healthz(component: &str, rec: &ProcessRecord, ops_port: u16, timeout: Duration) -> Result<()> {
    crate::wait::wait_ready(component, rec, timeout, move || async move {
        // A service with dependencies (the backend's database pool) says so on /readyz; the
        // others have only /healthz (SVID present and valid).
        match crate::health::http_get(ops_port, "/readyz").await {
            Some((200, _)) => Ok(()),
            Some((404, _)) | None => match crate::health::http_get(ops_port, "/healthz").await {
                Some((200, _)) => Ok(()),
                _ => Err("its /healthz never answered 200".to_owned()),
            },
            Some((code, body)) => Err(format!("/readyz answered {code}: {}", body.trim())),
        }
    })
    .await
}
