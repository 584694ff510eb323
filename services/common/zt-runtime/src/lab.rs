//! The lab as a whole: sites (SPIRE server + agent) and workloads, started in order with
//! readiness checks, recorded in `<state_dir>/lab.json`, and stopped by pid.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::app::{self as appchain, AppPaths, AppSpec};
use crate::binaries::Tool;
use crate::ports::{ensure_free, free_port, is_free};
use crate::process::{Launch, ProcessRecord};
use crate::spire::{self, Registration, SiteConfigValues, SitePaths};
use crate::{Error, Result};

/// What to run: sites and workloads. Unknown fields in a config file are errors.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LabSpec {
    /// Where everything the lab writes goes (configs, data, sockets, logs, `lab.json`).
    pub state_dir: PathBuf,
    /// SPIRE log level.
    pub log_level: String,
    /// Seconds each component gets to become ready.
    pub ready_timeout_secs: u64,
    /// The SPIRE sites.
    pub sites: Vec<SiteSpec>,
    /// The workloads (ztlab services), started after the sites, in order.
    pub workloads: Vec<WorkloadSpec>,
    /// Start the `mgmt` PostgreSQL (unix socket only) before anything else.
    pub mgmt_db: bool,
    /// Start OpenBao (after the sites, before the workloads) as the lab's OIDC provider.
    pub openbao: Option<OpenBaoSpec>,
    /// The app chain's infrastructure (needs `openbao`): spiffe-helpers, app PostgreSQL, OIDC
    /// Discovery Provider, Envoys. See [`crate::app`].
    pub app: Option<AppSpec>,
}

/// OpenBao in the lab: the OIDC identity provider for people (userpass users in groups).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OpenBaoSpec {
    /// Its API port on 127.0.0.1.
    pub port: u16,
    /// Users as (name, groups); passwords are generated once and kept in
    /// `<state>/openbao/users.json` (mode 0600).
    pub users: Vec<(String, Vec<String>)>,
}

/// The component name of OpenBao.
pub const OPENBAO: &str = "openbao";

impl Default for LabSpec {
    fn default() -> Self {
        Self {
            state_dir: default_state_dir(),
            log_level: "INFO".into(),
            ready_timeout_secs: 60,
            sites: vec![SiteSpec::named("a"), SiteSpec::named("b")],
            workloads: vec![],
            mgmt_db: false,
            openbao: None,
            app: None,
        }
    }
}

/// `$ZT_STATE_DIR`; else `/var/lib/ztlab` as root (PostgreSQL runs as the `postgres` user,
/// which cannot enter `/root`); else `$XDG_STATE_HOME/ztlab` or `~/.local/state/ztlab`.
pub fn default_state_dir() -> PathBuf {
    if let Ok(d) = std::env::var("ZT_STATE_DIR") {
        return PathBuf::from(d);
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/ztlab");
    }
    let base = std::env::var("XDG_STATE_HOME").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".local/state")
    });
    base.join("ztlab")
}

/// One SPIRE site: a server and an agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SiteSpec {
    /// Site name: lower-case letters, digits and `-`.
    pub name: String,
    /// The site's trust domain.
    pub trust_domain: String,
    /// Chain the site's CA to the lab's shared root, so that SVIDs verify across the sites of
    /// one trust domain. Off: the site has its own self-signed root.
    pub shared_root: bool,
    /// Pin the SPIRE server port (else a free port is chosen).
    pub server_port: Option<u16>,
    /// Default X.509-SVID TTL, seconds.
    pub x509_svid_ttl_secs: u64,
    /// Default JWT-SVID TTL, seconds.
    pub jwt_svid_ttl_secs: u64,
    /// Path of the agent's stable alias SPIFFE ID; workload entries use it as their parent.
    pub node_alias_path: String,
}

impl Default for SiteSpec {
    fn default() -> Self {
        Self {
            name: "a".into(),
            trust_domain: "ztlab.test".into(),
            shared_root: true,
            server_port: None,
            x509_svid_ttl_secs: 300,
            jwt_svid_ttl_secs: 300,
            node_alias_path: "/ztlab/nodes/local".into(),
        }
    }
}

impl SiteSpec {
    /// A site with default settings.
    pub fn named(name: &str) -> Self {
        Self { name: name.into(), ..Self::default() }
    }

    /// The agent's alias SPIFFE ID.
    pub fn node_alias(&self) -> String {
        format!("spiffe://{}{}", self.trust_domain, self.node_alias_path)
    }
}

/// The component name of the `mgmt` PostgreSQL.
pub const MGMT_DB: &str = "postgres-mgmt";
/// The database entry-manager uses in it.
pub const MGMT_DATABASE: &str = "ztlab_mgmt";

/// A ztlab service started as a workload of one site.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// Component name; also the name of its binary copy (`<state>/bin/<name>`), which is its
    /// `unix:path` selector.
    pub name: String,
    /// The site whose agent serves it.
    pub site: String,
    /// SPIFFE ID path, for example `/ns/demo/sa/opa`.
    pub spiffe_path: String,
    /// The binary to copy and run.
    pub program: PathBuf,
    /// Arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment (`ZT_*` settings). `SPIFFE_ENDPOINT_SOCKET`, `ZT_TRUST_DOMAIN` and
    /// `ZT_OPS_ADDR` are set by the lab.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The ops port (`/healthz`), used for readiness and status.
    pub ops_port: u16,
    /// Ports this workload listens on, by setting name; checked free before start.
    #[serde(default)]
    pub ports: BTreeMap<String, u16>,
    /// X.509-SVID TTL for its entry, seconds (0: the site default).
    #[serde(default)]
    pub x509_svid_ttl_secs: u64,
    /// Register it with the SPIRE CLI (entry `bootstrap.<name>`). Off: its entry comes from the
    /// central entry-management API (the lab catalogue), and it only waits for its SVID.
    #[serde(default = "yes")]
    pub bootstrap_entry: bool,
    /// DNS names for its bootstrap entry (the first becomes the SVID's CN).
    #[serde(default)]
    pub dns_names: Vec<String>,
    /// A TOML config file to write to `<state>/config/<name>.toml` and pass as `ZT_CONFIG`.
    #[serde(default)]
    pub config: Option<String>,
}

fn yes() -> bool {
    true
}

/// A site as it runs: chosen ports and processes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SiteState {
    /// SPIRE server port.
    pub server_port: u16,
    /// Server `/ready` port.
    pub server_health_port: u16,
    /// Agent `/ready` port.
    pub agent_health_port: u16,
    /// The server process.
    pub server: Option<ProcessRecord>,
    /// The agent process.
    pub agent: Option<ProcessRecord>,
}

/// What `lab.json` holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LabState {
    /// The spec last brought up.
    pub spec: LabSpec,
    /// Sites by name.
    pub sites: BTreeMap<String, SiteState>,
    /// Workload processes by name.
    pub workloads: BTreeMap<String, ProcessRecord>,
}

/// One line of `ztlab status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ComponentStatus {
    /// Component name.
    pub name: String,
    /// What it is.
    pub kind: crate::component::Kind,
    /// Its site.
    pub site: String,
    /// Pid, if running.
    pub pid: Option<u32>,
    /// How it is doing.
    pub health: crate::component::Health,
    /// Its SPIFFE ID.
    pub spiffe_id: Option<String>,
    /// When its SVID expires (RFC 3339), for workloads.
    pub svid_expires_at: Option<String>,
    /// Seconds left on its SVID.
    pub svid_seconds_left: Option<i64>,
    /// Its SVID's serial number, lower-case hex without colons
    /// ([`crate::app::normalize_serial`]): from `/healthz` for the ztlab services, from the PEM
    /// file for spiffe-helpers, from the admin `/certs` for Envoys (their SVIDs come over SDS).
    #[serde(default)]
    pub svid_serial: Option<String>,
    /// A detail, such as why it is unhealthy.
    pub detail: Option<String>,
}

/// A running (or partly running) lab. When `owned` (tests), dropping it stops every process it
/// records; the CLI detaches instead and stops by pid in `ztlab down`.
#[derive(Debug)]
pub struct Lab {
    state: LabState,
    owned: bool,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

impl LabSpec {
    /// Checks the spec without touching anything.
    pub fn validate(&self) -> Result<()> {
        if self.sites.is_empty() {
            return Err(Error::config("sites", "at least one site is needed"));
        }
        let sock = SitePaths::new(&self.state_dir, "xxxxxxxx").workload_socket();
        if sock.as_os_str().len() > 100 {
            return Err(Error::config(
                "state_dir",
                format!(
                    "{} is too long: unix socket paths under it would exceed the 108-byte limit",
                    self.state_dir.display()
                ),
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, s) in self.sites.iter().enumerate() {
            let f = format!("sites[{i}]");
            if !valid_name(&s.name) {
                return Err(Error::config(format!("{f}.name"), format!("{:?}: use 1-32 of a-z, 0-9 and -", s.name)));
            }
            if !names.insert(s.name.clone()) {
                return Err(Error::config(format!("{f}.name"), format!("site {:?} is listed twice", s.name)));
            }
            zt_identity::parse_trust_domain(&format!("{f}.trust_domain"), &s.trust_domain)
                .map_err(|e| Error::config(format!("{f}.trust_domain"), e.to_string()))?;
            zt_identity::parse_id(&format!("{f}.node_alias_path"), &s.node_alias())
                .map_err(|e| Error::config(format!("{f}.node_alias_path"), e.to_string()))?;
            if s.x509_svid_ttl_secs < 10 || s.jwt_svid_ttl_secs < 10 {
                return Err(Error::config(format!("{f}.x509_svid_ttl_secs"), "SVID TTLs must be at least 10 s"));
            }
        }
        let mut wnames = std::collections::BTreeSet::new();
        for (i, w) in self.workloads.iter().enumerate() {
            let f = format!("workloads[{i}]");
            if !valid_name(&w.name) || w.name.starts_with("spire-") {
                return Err(Error::config(
                    format!("{f}.name"),
                    format!("{:?}: use 1-32 of a-z, 0-9 and -, not starting with spire-", w.name),
                ));
            }
            if !wnames.insert(w.name.clone()) {
                return Err(Error::config(format!("{f}.name"), format!("workload {:?} is listed twice", w.name)));
            }
            let site = self
                .sites
                .iter()
                .find(|s| s.name == w.site)
                .ok_or_else(|| Error::config(format!("{f}.site"), format!("no site named {:?}", w.site)))?;
            zt_identity::parse_id(
                &format!("{f}.spiffe_path"),
                &format!("spiffe://{}{}", site.trust_domain, w.spiffe_path),
            )
            .map_err(|e| Error::config(format!("{f}.spiffe_path"), e.to_string()))?;
            if !w.program.is_file() {
                return Err(Error::config(
                    format!("{f}.program"),
                    format!("{} does not exist (build it with cargo build --workspace)", w.program.display()),
                ));
            }
        }
        Ok(())
    }
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

    /// Starts whatever of `spec` is not already running, in order, each with a readiness
    /// check. On failure, stops what this call started and returns the error.
    pub async fn up(spec: LabSpec, owned: bool) -> Result<Self> {
        spec.validate()?;
        let previous = Self::open(&spec.state_dir).map(|l| l.state.clone()).unwrap_or_default();
        let mut lab = Self { state: LabState { spec: spec.clone(), ..previous }, owned: false };
        let mut started = Vec::new();
        let result = lab.bring_up(&mut started).await;
        if let Err(e) = result {
            for name in started.iter().rev() {
                lab.stop_component(name).await;
            }
            if !started.is_empty() {
                let _ = lab.save();
            }
            return Err(e);
        }
        lab.owned = owned;
        Ok(lab)
    }

    async fn bring_up(&mut self, started: &mut Vec<String>) -> Result<()> {
        let mut bao_root = None;
        let result = self.bring_up_all(started, &mut bao_root).await;
        // The root token is used only to configure, then revoked.
        if let (Some(root), Some(bao)) = (bao_root, self.openbao_handle())
            && let Err(e) = bao.revoke_root(&root).await
        {
            tracing::warn!(error = %e, "could not revoke the OpenBao root token");
        }
        result
    }

    async fn bring_up_all(&mut self, started: &mut Vec<String>, bao_root: &mut Option<String>) -> Result<()> {
        let spec = self.state.spec.clone();
        let timeout = Duration::from_secs(spec.ready_timeout_secs);
        // Pre-flight: pinned ports of everything that is not running must be free.
        for (i, s) in spec.sites.iter().enumerate() {
            let running =
                self.state.sites.get(&s.name).and_then(|st| st.server.as_ref()).is_some_and(ProcessRecord::is_alive);
            if let (Some(p), false) = (s.server_port, running) {
                ensure_free(&format!("sites[{i}].server_port"), p)?;
            }
        }
        if let Some(bao) = &spec.openbao
            && !self.state.workloads.get(OPENBAO).is_some_and(ProcessRecord::is_alive)
        {
            ensure_free("openbao.port", bao.port)?;
        }
        if let Some(app) = &spec.app {
            for (field, name, port) in [
                ("app.postgres_port", appchain::POSTGRES_APP, app.postgres_port),
                ("app.oidc_port", appchain::OIDC, app.oidc_port),
                ("app.backend_envoy.listen", appchain::ENVOY_BACKEND_NAME, app.backend_envoy.listen),
                ("app.backend_envoy.admin", appchain::ENVOY_BACKEND_NAME, app.backend_envoy.admin),
                ("app.frontend_envoy.listen", appchain::ENVOY_FRONTEND_NAME, app.frontend_envoy.listen),
                ("app.frontend_envoy.admin", appchain::ENVOY_FRONTEND_NAME, app.frontend_envoy.admin),
            ] {
                if !self.state.workloads.get(name).is_some_and(ProcessRecord::is_alive) {
                    ensure_free(field, port)?;
                }
            }
        }
        for (i, w) in spec.workloads.iter().enumerate() {
            if self.state.workloads.get(&w.name).is_some_and(ProcessRecord::is_alive) {
                continue;
            }
            ensure_free(&format!("workloads[{i}].ops_port ({})", w.name), w.ops_port)?;
            for (k, p) in &w.ports {
                ensure_free(&format!("workloads[{i}].ports.{k} ({})", w.name), *p)?;
            }
        }
        std::fs::create_dir_all(&spec.state_dir)
            .map_err(Error::io(format!("creating {}", spec.state_dir.display())))?;
        let root = if spec.sites.iter().any(|s| s.shared_root) {
            Some(spire::ensure_root_ca(&spec.state_dir.join("ca"))?)
        } else {
            None
        };
        if spec.mgmt_db {
            self.bring_up_mgmt_db(timeout, started).await?;
        }
        for s in &spec.sites {
            self.bring_up_site(s, root.clone(), timeout, started).await?;
        }
        if let Some(bao) = &spec.openbao {
            self.bring_up_openbao(bao, started, bao_root).await?;
        }
        if let Some(app) = &spec.app {
            self.bring_up_app_infra(app, timeout, started, bao_root).await?;
        }
        for w in &spec.workloads {
            self.bring_up_workload(w, timeout, started).await?;
        }
        if let Some(app) = &spec.app {
            self.bring_up_envoys(app, timeout, started).await?;
        }
        self.save()
    }

    async fn bring_up_site(
        &mut self,
        s: &SiteSpec,
        root: Option<(PathBuf, PathBuf)>,
        timeout: Duration,
        started: &mut Vec<String>,
    ) -> Result<()> {
        let paths = SitePaths::new(&self.state.spec.state_dir, &s.name);
        let prev = self.state.sites.get(&s.name).cloned();
        let server_alive = prev.as_ref().and_then(|p| p.server.as_ref()).is_some_and(ProcessRecord::is_alive);
        let agent_alive = prev.as_ref().and_then(|p| p.agent.as_ref()).is_some_and(ProcessRecord::is_alive);
        // Keep earlier ports across restarts when they are still free.
        let keep = |old: Option<u16>, running: bool| -> Result<u16> {
            match old {
                Some(p) if running || is_free(p) => Ok(p),
                _ => free_port(),
            }
        };
        let server_port = match s.server_port {
            Some(p) => p,
            None => keep(prev.as_ref().map(|p| p.server_port), server_alive)?,
        };
        let st = SiteState {
            server_port,
            server_health_port: keep(prev.as_ref().map(|p| p.server_health_port), server_alive)?,
            agent_health_port: keep(prev.as_ref().map(|p| p.agent_health_port), agent_alive)?,
            server: prev.as_ref().and_then(|p| p.server.clone()).filter(ProcessRecord::is_alive),
            agent: prev.as_ref().and_then(|p| p.agent.clone()).filter(ProcessRecord::is_alive),
        };
        self.state.sites.insert(s.name.clone(), st.clone());
        let values = SiteConfigValues {
            trust_domain: s.trust_domain.clone(),
            server_port: st.server_port,
            server_health_port: st.server_health_port,
            agent_health_port: st.agent_health_port,
            x509_svid_ttl: Duration::from_secs(s.x509_svid_ttl_secs),
            jwt_svid_ttl: Duration::from_secs(s.jwt_svid_ttl_secs),
            upstream: if s.shared_root { root } else { None },
            log_level: self.state.spec.log_level.clone(),
        };
        let server_name = format!("spire-server-{}", s.name);
        let agent_name = format!("spire-agent-{}", s.name);
        if !server_alive || !agent_alive {
            spire::write_configs(&paths, &values)?;
        }
        if !server_alive {
            tracing::info!(component = %server_name, "starting");
            let rec = spire::spawn_server(&paths, self.log_path_for(&server_name))?;
            self.site_mut(&s.name).server = Some(rec.clone());
            started.push(server_name.clone());
            self.save()?;
            spire::wait_ready(&server_name, &rec, st.server_health_port, timeout).await?;
        }
        spire::export_bundle(&paths).await?;
        if !agent_alive {
            let token = if spire::agent_attested(&paths) {
                None
            } else {
                Some(spire::join_token(&paths, &s.node_alias()).await?)
            };
            tracing::info!(component = %agent_name, "starting");
            let rec = spire::spawn_agent(&paths, token.as_deref(), self.log_path_for(&agent_name))?;
            self.site_mut(&s.name).agent = Some(rec.clone());
            started.push(agent_name.clone());
            self.save()?;
            spire::wait_ready(&agent_name, &rec, st.agent_health_port, timeout).await?;
        }
        Ok(())
    }

    async fn bring_up_workload(
        &mut self,
        w: &WorkloadSpec,
        timeout: Duration,
        started: &mut Vec<String>,
    ) -> Result<()> {
        let config_file = self.state.spec.state_dir.join("config").join(format!("{}.toml", w.name));
        if let Some(rec) = self.state.workloads.get(&w.name).filter(|r| r.is_alive()).cloned() {
            let exe_changed = !same_file(&w.program, &self.state.spec.state_dir.join("bin").join(&w.name));
            let config_changed =
                w.config.as_ref().is_some_and(|c| std::fs::read_to_string(&config_file).ok().as_ref() != Some(c));
            if !exe_changed && !config_changed {
                return Ok(());
            }
            // Running an older build or config: restart it so that `up` converges.
            tracing::info!(component = %w.name, exe_changed, config_changed, "restarting");
            rec.stop(Duration::from_secs(10)).await;
        }
        let exe = self.install_binary(&w.name, &w.program)?;
        if w.bootstrap_entry {
            let r = self.registration(&w.site, &w.name, &w.spiffe_path, &exe, w.x509_svid_ttl_secs, &w.dns_names)?;
            spire::create_entry(&self.site_paths(&w.site)?, &r).await?;
        }
        let site = self.site_spec(&w.site)?.clone();
        let mut env: Vec<(String, String)> = vec![
            ("SPIFFE_ENDPOINT_SOCKET".into(), format!("unix://{}", self.workload_socket(&w.site)?.display())),
            ("ZT_TRUST_DOMAIN".into(), site.trust_domain.clone()),
            ("ZT_OPS_ADDR".into(), format!("127.0.0.1:{}", w.ops_port)),
        ];
        if let Some(text) = &w.config {
            let dir = self.state.spec.state_dir.join("config");
            std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
            let file = dir.join(format!("{}.toml", w.name));
            std::fs::write(&file, text).map_err(Error::io(format!("writing {}", file.display())))?;
            env.push(("ZT_CONFIG".into(), file.display().to_string()));
        }
        env.extend(w.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        tracing::info!(component = %w.name, "starting");
        let rec = crate::process::spawn(&Launch {
            program: exe,
            args: w.args.clone(),
            env,
            cwd: Some(self.state.spec.state_dir.clone()),
            log: self.log_path_for(&w.name),
            user: None,
        })?;
        self.state.workloads.insert(w.name.clone(), rec.clone());
        started.push(w.name.clone());
        self.save()?;
        wait_healthz(&w.name, &rec, w.ops_port, timeout).await
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

    /// The bootstrap registration of `exe` (by `unix:path`) as `spiffe://<site td><spiffe_path>`
    /// at `site`, under entry ID `bootstrap.<name>`.
    pub fn registration(
        &self,
        site: &str,
        name: &str,
        spiffe_path: &str,
        exe: &Path,
        x509_ttl: u64,
        dns_names: &[String],
    ) -> Result<Registration> {
        let s = self.site_spec(site)?;
        Ok(Registration {
            entry_id: format!("bootstrap.{name}"),
            spiffe_id: format!("spiffe://{}{}", s.trust_domain, spiffe_path),
            parent_id: s.node_alias(),
            selectors: vec![format!("unix:path:{}", exe.display())],
            x509_svid_ttl: x509_ttl,
            jwt_svid_ttl: 0,
            dns_names: dns_names.to_vec(),
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
        let r = self.registration(site, name, spiffe_path, exe, x509_ttl, &[])?;
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

    async fn bring_up_openbao(
        &mut self,
        spec: &OpenBaoSpec,
        started: &mut Vec<String>,
        bao_root: &mut Option<String>,
    ) -> Result<()> {
        let dir = self.state.spec.state_dir.join("openbao");
        let bao = match self.openbao_handle() {
            Some(b) if b.record.is_alive() => b,
            _ => {
                tracing::info!(component = OPENBAO, "starting");
                let bao = crate::openbao::start(&dir, spec.port, self.log_path_for(OPENBAO)).await?;
                self.state.workloads.insert(OPENBAO.to_owned(), bao.record.clone());
                started.push(OPENBAO.to_owned());
                self.save()?;
                bao
            }
        };
        let cfg = crate::openbao::IdentityConfig::lab(self.lab_users()?);
        let digest = config_digest(&format!("{cfg:?}"));
        if read_marker(&dir, "identity").as_deref() != Some(digest.as_str()) {
            let root = self.bao_root(&bao, bao_root).await?;
            bao.configure_identity(&root, &cfg).await?;
            write_marker(&dir, "identity", &digest)?;
        }
        Ok(())
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

    async fn bao_root(&self, bao: &crate::openbao::OpenBao, cached: &mut Option<String>) -> Result<String> {
        if let Some(t) = cached {
            return Ok(t.clone());
        }
        let t = bao.admin_token().await?;
        *cached = Some(t.clone());
        Ok(t)
    }

    /// Starts one app-chain process unless it runs; `start` spawns it and `ready` waits for it.
    async fn ensure_process<F, R>(&mut self, name: &str, started: &mut Vec<String>, start: F, ready: R) -> Result<bool>
    where
        F: FnOnce(&Self) -> Result<ProcessRecord>,
        R: AsyncFnOnce(&ProcessRecord) -> Result<()>,
    {
        if self.state.workloads.get(name).is_some_and(ProcessRecord::is_alive) {
            return Ok(false);
        }
        tracing::info!(component = name, "starting");
        let rec = start(self)?;
        self.state.workloads.insert(name.to_owned(), rec.clone());
        started.push(name.to_owned());
        self.save()?;
        ready(&rec).await?;
        Ok(true)
    }

    async fn bring_up_app_infra(
        &mut self,
        app: &AppSpec,
        timeout: Duration,
        started: &mut Vec<String>,
        bao_root: &mut Option<String>,
    ) -> Result<()> {
        let paths = AppPaths::new(&self.state.spec.state_dir);
        let site = self.site_spec(&app.site)?.clone();
        let socket = self.workload_socket(&app.site)?;
        let pg_user = crate::postgres::server_user()?;
        let cluster = paths.pg_cluster(app.postgres_port);
        let pg_certs = paths.pg_cert_dir();
        let log_dir = self.state.spec.state_dir.join("logs");
        std::fs::create_dir_all(&log_dir).map_err(Error::io(format!("creating {}", log_dir.display())))?;
        // 1. PostgreSQL's spiffe-helper, as the server's user (PostgreSQL insists on owning its key).
        cluster.init(&log_dir.join("postgres-app-initdb.log")).await?;
        let helper = Tool::SpiffeHelper.require()?;
        let exe = self.install_binary(appchain::HELPER_POSTGRES, &helper)?;
        if pg_user.is_some() {
            // The helper runs as the server's user: it must reach the agent socket and its binary.
            crate::postgres::allow_traverse(&socket)?;
            crate::postgres::allow_traverse(&exe)?;
        }
        std::fs::create_dir_all(&pg_certs).map_err(Error::io(format!("creating {}", pg_certs.display())))?;
        if let Some((uid, gid)) = pg_user {
            let _ = nix::unistd::chown(
                &pg_certs,
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            );
        }
        // spiffe-helper reads a file holding only a pid (postmaster.pid has several lines).
        let pid_file = cluster.dir.join("postgres.pid");
        let conf = appchain::write_helper_config(
            &paths,
            appchain::HELPER_POSTGRES,
            &socket,
            &pg_certs,
            Some(&pid_file),
            free_port()?,
        )?;
        let log = self.log_path_for(appchain::HELPER_POSTGRES);
        let certs = pg_certs.clone();
        self.ensure_process(
            appchain::HELPER_POSTGRES,
            started,
            |_| appchain::spawn_helper(&exe, &conf, log, pg_user),
            async |rec| appchain::wait_svid_files(appchain::HELPER_POSTGRES, rec, &certs, timeout).await,
        )
        .await?;
        // 2. The app PostgreSQL.
        let hba = appchain::init_app_postgres(&cluster, &log_dir.join("postgres-app-initdb.log")).await?;
        // PostgreSQL reads its certificate and key once at start; if spiffe-helper is rewriting
        // them at that moment (cert and key from two SVIDs), it exits. Try again, up to 3 times.
        for attempt in 1..=3 {
            let log = self.log_path_for(appchain::POSTGRES_APP);
            let c2 = cluster.clone();
            let pid_for_helper = pid_file.clone();
            let result = self
                .ensure_process(
                    appchain::POSTGRES_APP,
                    started,
                    |_| {
                        let rec = appchain::spawn_app_postgres(&cluster, &pg_certs, &hba, log)?;
                        std::fs::write(&pid_for_helper, format!("{}\n", rec.pid))
                            .map_err(Error::io(format!("writing {}", pid_for_helper.display())))?;
                        Ok(rec)
                    },
                    async |rec| c2.wait_ready(appchain::POSTGRES_APP, rec, timeout).await,
                )
                .await;
            match result {
                Ok(_) => break,
                Err(e)
                    if attempt < 3
                        && !self.state.workloads.get(appchain::POSTGRES_APP).is_some_and(ProcessRecord::is_alive) =>
                {
                    let tail = crate::process::tail(&self.log_path_for(appchain::POSTGRES_APP), 5);
                    tracing::warn!(error = %e, attempt, log = %tail, "postgres-app exited while starting; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e),
            }
        }
        // 3. The OIDC Discovery Provider, reading keys from the site's SPIRE server.
        let conf = appchain::write_oidc_config(
            &paths,
            app.oidc_port,
            free_port()?,
            &self.site_paths(&app.site)?.admin_socket(),
        )?;
        let log = self.log_path_for(appchain::OIDC);
        self.ensure_process(
            appchain::OIDC,
            started,
            |_| appchain::spawn_oidc(&conf, log),
            async |rec| appchain::wait_oidc(rec, app.oidc_port, timeout).await,
        )
        .await?;
        // 4. OpenBao: jwt auth, database engine, KV v2.
        let bao =
            self.openbao_handle().ok_or_else(|| Error::config("app", "the app chain needs OpenBao (set openbao)"))?;
        let mut cfg = crate::openbao::AppConfig {
            jwks_url: format!("http://127.0.0.1:{}/keys", app.oidc_port),
            role: "backend".into(),
            spiffe_id: format!("spiffe://{}{}", site.trust_domain, zt_identity::lab::BACKEND),
            audience: APP_AUDIENCE.into(),
            pg_socket_dir: cluster.socket_dir(),
            pg_port: app.postgres_port,
            admin_password: String::new(),
            db_ttl_secs: app.db_ttl_secs,
            db_max_ttl_secs: app.db_max_ttl_secs,
        };
        let bao_dir = self.state.spec.state_dir.join("openbao");
        // The digest covers what `configure_app` does (its version), so that a lab configured by
        // an older version is configured again on its next `up`.
        let digest = config_digest(&format!(
            "{}{}",
            crate::openbao::APP_CONFIG_VERSION,
            serde_json::to_string(&cfg).unwrap_or_default()
        ));
        let tokens_missing = !crate::openbao::lease_reader_file(&bao_dir).exists()
            || !crate::openbao::lease_revoker_file(&bao_dir).exists();
        if read_marker(&bao_dir, "app").as_deref() != Some(digest.as_str()) || tokens_missing {
            tracing::info!(component = OPENBAO, "configuring jwt auth, the database engine and KV v2");
            cfg.admin_password = appchain::bootstrap_app_db(&cluster).await?;
            let root = self.bao_root(&bao, bao_root).await?;
            bao.configure_app(&root, &cfg).await?;
            write_marker(&bao_dir, "app", &digest)?;
        }
        // 5. The GitHub fixture and the backend's spiffe-helper.
        if let Some(fx) = &app.github_fixture {
            let log = self.log_path_for(appchain::GITHUB_FIXTURE);
            let port = fx.port;
            self.ensure_process(
                appchain::GITHUB_FIXTURE,
                started,
                |_| {
                    crate::process::spawn(&Launch {
                        program: fx.program.clone(),
                        args: vec!["--listen".into(), format!("127.0.0.1:{port}")],
                        log,
                        ..Launch::default()
                    })
                },
                async |rec| {
                    // Any HTTP answer will do: without a token, GitHub (and the fixture) say 401.
                    appchain::wait_http(appchain::GITHUB_FIXTURE, rec, port, "/user", timeout, |_, _| true).await
                },
            )
            .await?;
        }
        let backend_certs = paths.backend_cert_dir();
        std::fs::create_dir_all(&backend_certs).map_err(Error::io(format!("creating {}", backend_certs.display())))?;
        let exe = self.install_binary(appchain::HELPER_BACKEND, &helper)?;
        let conf = appchain::write_helper_config(
            &paths,
            appchain::HELPER_BACKEND,
            &socket,
            &backend_certs,
            None,
            free_port()?,
        )?;
        let log = self.log_path_for(appchain::HELPER_BACKEND);
        self.ensure_process(
            appchain::HELPER_BACKEND,
            started,
            |_| appchain::spawn_helper(&exe, &conf, log, None),
            async |rec| appchain::wait_svid_files(appchain::HELPER_BACKEND, rec, &backend_certs, timeout).await,
        )
        .await?;
        Ok(())
    }

    async fn bring_up_envoys(&mut self, app: &AppSpec, timeout: Duration, started: &mut Vec<String>) -> Result<()> {
        let paths = AppPaths::new(&self.state.spec.state_dir);
        let site = self.site_spec(&app.site)?.clone();
        let td = site.trust_domain.clone();
        let socket = self.workload_socket(&app.site)?;
        let envoy = appchain::envoy_binary()?;
        if appchain::current_rbac(&paths).is_none() {
            appchain::write_rbac(&paths, &td, appchain::RbacMode::AllowFrontend)?;
        }
        let id = |path: &str| format!("spiffe://{td}{path}");
        for (name, ports, upstream, own, peer) in [
            (appchain::ENVOY_BACKEND_NAME, app.backend_envoy, app.backend_port, zt_identity::lab::BACKEND, ""),
            (
                appchain::ENVOY_FRONTEND_NAME,
                app.frontend_envoy,
                app.backend_envoy.listen,
                zt_identity::lab::FRONTEND,
                zt_identity::lab::BACKEND,
            ),
        ] {
            let values = appchain::EnvoyValues {
                ports,
                upstream_port: upstream,
                spiffe_id: id(own),
                peer_spiffe_id: if peer.is_empty() { String::new() } else { id(peer) },
                trust_domain: td.clone(),
                agent_socket: socket.clone(),
            };
            if self.state.workloads.get(name).is_some_and(ProcessRecord::is_alive) {
                continue;
            }
            let config = appchain::write_envoy_config(&paths, name, &values)?;
            let exe = self.install_binary(name, &envoy)?;
            let log = self.log_path_for(name);
            self.ensure_process(
                name,
                started,
                |_| appchain::spawn_envoy(&exe, &config, log),
                async |rec| appchain::wait_envoy(name, rec, ports.admin, timeout).await,
            )
            .await?;
        }
        Ok(())
    }

    async fn bring_up_mgmt_db(&mut self, timeout: Duration, started: &mut Vec<String>) -> Result<()> {
        let name = MGMT_DB;
        if self.state.workloads.get(name).is_some_and(ProcessRecord::is_alive) {
            return Ok(());
        }
        let cluster = self.mgmt_cluster();
        let log = self.log_path_for(name);
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        }
        cluster.init(&self.state.spec.state_dir.join("logs/postgres-mgmt-initdb.log")).await?;
        tracing::info!(component = name, "starting");
        let rec = cluster.spawn(log, &[])?;
        self.state.workloads.insert(name.to_owned(), rec.clone());
        started.push(name.to_owned());
        self.save()?;
        cluster.wait_ready(name, &rec, timeout).await?;
        cluster.ensure_database(MGMT_DATABASE).await
    }

    fn site_mut(&mut self, name: &str) -> &mut SiteState {
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

    fn log_path_for(&self, component: &str) -> PathBuf {
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
        if let Some(site) = name.strip_prefix("spire-server-") {
            return Ok(self.state.sites.get(site).and_then(|s| s.server.as_ref()));
        }
        if let Some(site) = name.strip_prefix("spire-agent-") {
            return Ok(self.state.sites.get(site).and_then(|s| s.agent.as_ref()));
        }
        Ok(self.state.workloads.get(name))
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

    /// Starts again whatever of the spec is not running (after `stop_component`, say).
    pub async fn restart_stopped(&mut self) -> Result<()> {
        let mut started = Vec::new();
        let r = self.bring_up(&mut started).await;
        if r.is_err() {
            let _ = self.save();
        }
        r
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

/// A short digest of a configuration, to tell whether it changed since it was applied.
fn config_digest(text: &str) -> String {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(text.as_bytes());
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// `<dir>/configured.json` records which configuration digests were applied.
fn read_marker(dir: &Path, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("configured.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get(key)?.as_str().map(str::to_owned)
}

fn write_marker(dir: &Path, key: &str, digest: &str) -> Result<()> {
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

/// Whether two files have the same content (the same inode, or equal bytes).
fn same_file(a: &Path, b: &Path) -> bool {
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
