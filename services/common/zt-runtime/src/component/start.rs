//! How each component starts and says it is ready: [`Component::start`], which `up` calls for
//! every [`Step::Start`](crate::lab::Step::Start) of the plan, and the ports each one pins
//! ([`Component::pinned_ports`]), which `up` checks before anything starts.
//!
//! A component that runs already is left alone (a ztlab service whose binary or config changed
//! is restarted, so that `up` converges). Whatever a start spawns is recorded in `lab.json` and
//! in the attempt's [`UpRun`] at once, so that a failed `up` stops exactly what it started.

use std::path::PathBuf;
use std::time::Duration;

use crate::app::{self as appchain, AppPaths, AppSpec};
use crate::binaries::Tool;
use crate::component::Component;
use crate::lab::{Lab, LabSpec, MGMT_DATABASE, SiteState, UpRun, WorkloadSpec};
use crate::ports::{free_port, is_free};
use crate::process::{Launch, ProcessRecord};
use crate::spire::{self, SiteConfigValues};
use crate::{Error, Result};

impl Component {
    /// Starts this component unless it runs, and waits until it is ready.
    pub(crate) async fn start(&self, lab: &mut Lab, run: &mut UpRun) -> Result<()> {
        match self {
            Component::MgmtDb => start_mgmt_db(lab, run).await,
            Component::SpireServer(site) => start_spire_server(lab, site, run).await,
            Component::SpireAgent(site) => start_spire_agent(lab, site, run).await,
            Component::OpenBao => start_openbao(lab, run).await,
            Component::AppInfra(name) => {
                let app = lab.app_spec()?;
                match *name {
                    appchain::HELPER_POSTGRES => start_postgres_helper(lab, &app, run).await,
                    appchain::POSTGRES_APP => start_app_postgres(lab, &app, run).await,
                    appchain::OIDC => start_oidc(lab, &app, run).await,
                    appchain::GITHUB_FIXTURE => start_github_fixture(lab, &app, run).await,
                    _ => start_backend_helper(lab, &app, run).await,
                }
            }
            Component::Workload(name) => {
                let w = lab.spec().workloads.iter().find(|w| &w.name == name).cloned();
                let w = w.ok_or_else(|| Error::config("workloads", format!("no workload named {name:?}")))?;
                start_workload(lab, &w, run).await
            }
            Component::Envoy(name) => start_envoy(lab, name, run).await,
        }
    }

    /// The ports of this component that the spec pins, as (field, port): checked free before
    /// anything starts, unless the component runs already.
    pub(crate) fn pinned_ports(&self, spec: &LabSpec) -> Vec<(String, u16)> {
        let app = spec.app.as_ref();
        let mut out = Vec::new();
        match self {
            Component::SpireServer(site) => {
                if let Some((i, s)) = spec.sites.iter().enumerate().find(|(_, s)| &s.name == site) {
                    out.extend(s.server_port.map(|p| (format!("sites[{i}].server_port"), p)));
                }
            }
            Component::OpenBao => out.extend(spec.openbao.as_ref().map(|b| ("openbao.port".to_owned(), b.port))),
            Component::AppInfra(appchain::POSTGRES_APP) => {
                out.extend(app.map(|a| ("app.postgres_port".to_owned(), a.postgres_port)));
            }
            Component::AppInfra(appchain::OIDC) => out.extend(app.map(|a| ("app.oidc_port".to_owned(), a.oidc_port))),
            Component::Envoy(name) => {
                if let Some(a) = app {
                    let (field, ports) = if *name == appchain::ENVOY_BACKEND_NAME {
                        ("backend_envoy", a.backend_envoy)
                    } else {
                        ("frontend_envoy", a.frontend_envoy)
                    };
                    out.push((format!("app.{field}.listen"), ports.listen));
                    out.push((format!("app.{field}.admin"), ports.admin));
                }
            }
            Component::Workload(name) => {
                if let Some((i, w)) = spec.workloads.iter().enumerate().find(|(_, w)| &w.name == name) {
                    out.push((format!("workloads[{i}].ops_port ({})", w.name), w.ops_port));
                    out.extend(w.ports.iter().map(|(k, p)| (format!("workloads[{i}].ports.{k} ({})", w.name), *p)));
                }
            }
            Component::MgmtDb | Component::SpireAgent(_) | Component::AppInfra(_) => {}
        }
        out
    }
}

impl Lab {
    /// The app chain's spec (the plan lists app components only when there is one).
    fn app_spec(&self) -> Result<AppSpec> {
        self.spec().app.clone().ok_or_else(|| Error::config("app", "this lab runs no app chain"))
    }

    /// Whether the process of component `name` (not a SPIRE one) runs.
    pub(crate) fn runs(&self, name: &str) -> bool {
        self.state.workloads.get(name).is_some_and(ProcessRecord::is_alive)
    }

    /// Records a process this attempt started, before waiting for it, so that a failure stops it.
    fn record_started(&mut self, name: &str, rec: ProcessRecord, run: &mut UpRun) -> Result<()> {
        match Component::spire_site(name) {
            Some((true, site)) => self.site_mut(site).server = Some(rec),
            Some((false, site)) => self.site_mut(site).agent = Some(rec),
            None => {
                self.state.workloads.insert(name.to_owned(), rec);
            }
        }
        run.started.push(name.to_owned());
        self.save()
    }

    /// Starts process `name` unless it runs: `spawn` starts it, `ready` waits for it.
    async fn ensure_process<F, R>(&mut self, name: &str, run: &mut UpRun, spawn: F, ready: R) -> Result<()>
    where
        F: FnOnce() -> Result<ProcessRecord>,
        R: AsyncFnOnce(&ProcessRecord) -> Result<()>,
    {
        if self.runs(name) {
            return Ok(());
        }
        tracing::info!(component = name, "starting");
        let rec = spawn()?;
        self.record_started(name, rec.clone(), run)?;
        ready(&rec).await
    }

    fn logs_dir(&self) -> Result<PathBuf> {
        let dir = self.state_dir().join("logs");
        std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        Ok(dir)
    }
}

async fn start_mgmt_db(lab: &mut Lab, run: &mut UpRun) -> Result<()> {
    let name = crate::lab::MGMT_DB;
    if lab.runs(name) {
        return Ok(());
    }
    let cluster = lab.mgmt_cluster();
    let initdb_log = lab.logs_dir()?.join("postgres-mgmt-initdb.log");
    cluster.init(&initdb_log).await?;
    let log = lab.log_path_for(name);
    let timeout = run.timeout;
    lab.ensure_process(name, run, || cluster.spawn(log, &[]), async |rec| cluster.wait_ready(name, rec, timeout).await)
        .await?;
    cluster.ensure_database(MGMT_DATABASE).await
}

/// A site's server: chooses the site's ports (kept across restarts while free), writes the
/// server and agent configs, starts the server and exports its bundle.
async fn start_spire_server(lab: &mut Lab, site: &str, run: &mut UpRun) -> Result<()> {
    let s = lab.site_spec(site)?.clone();
    let paths = lab.site_paths(site)?;
    let prev = lab.state.sites.get(site).cloned();
    let server_alive = prev.as_ref().and_then(|p| p.server.as_ref()).is_some_and(ProcessRecord::is_alive);
    let agent_alive = prev.as_ref().and_then(|p| p.agent.as_ref()).is_some_and(ProcessRecord::is_alive);
    let keep = |old: Option<u16>, running: bool| -> Result<u16> {
        match old {
            Some(p) if running || is_free(p) => Ok(p),
            _ => free_port(),
        }
    };
    let st = SiteState {
        server_port: match s.server_port {
            Some(p) => p,
            None => keep(prev.as_ref().map(|p| p.server_port), server_alive)?,
        },
        server_health_port: keep(prev.as_ref().map(|p| p.server_health_port), server_alive)?,
        agent_health_port: keep(prev.as_ref().map(|p| p.agent_health_port), agent_alive)?,
        server: prev.as_ref().and_then(|p| p.server.clone()).filter(ProcessRecord::is_alive),
        agent: prev.as_ref().and_then(|p| p.agent.clone()).filter(ProcessRecord::is_alive),
    };
    lab.state.sites.insert(site.to_owned(), st.clone());
    if !server_alive || !agent_alive {
        let upstream = if s.shared_root { Some(spire::ensure_root_ca(&lab.state_dir().join("ca"))?) } else { None };
        spire::write_configs(
            &paths,
            &SiteConfigValues {
                trust_domain: s.trust_domain.clone(),
                server_port: st.server_port,
                server_health_port: st.server_health_port,
                agent_health_port: st.agent_health_port,
                x509_svid_ttl: Duration::from_secs(s.x509_svid_ttl_secs),
                jwt_svid_ttl: Duration::from_secs(s.jwt_svid_ttl_secs),
                upstream,
                log_level: lab.spec().log_level.clone(),
            },
        )?;
    }
    if !server_alive {
        let name = Component::SpireServer(site.to_owned()).name();
        tracing::info!(component = %name, "starting");
        let rec = spire::spawn_server(&paths, lab.log_path_for(&name))?;
        lab.record_started(&name, rec.clone(), run)?;
        spire::wait_ready(&name, &rec, st.server_health_port, run.timeout).await?;
    }
    spire::export_bundle(&paths).await
}

/// A site's agent: attests with a join token (once; afterwards with its stored SVID).
async fn start_spire_agent(lab: &mut Lab, site: &str, run: &mut UpRun) -> Result<()> {
    let st = lab.site_state(site)?.clone();
    if st.agent.as_ref().is_some_and(ProcessRecord::is_alive) {
        return Ok(());
    }
    let paths = lab.site_paths(site)?;
    let token = if spire::agent_attested(&paths) {
        None
    } else {
        Some(spire::join_token(&paths, &lab.site_spec(site)?.node_alias()).await?)
    };
    let name = Component::SpireAgent(site.to_owned()).name();
    tracing::info!(component = %name, "starting");
    let rec = spire::spawn_agent(&paths, token.as_deref(), lab.log_path_for(&name))?;
    lab.record_started(&name, rec.clone(), run)?;
    spire::wait_ready(&name, &rec, st.agent_health_port, run.timeout).await
}

/// OpenBao: started, initialised once and unsealed by [`crate::openbao::start`].
async fn start_openbao(lab: &mut Lab, run: &mut UpRun) -> Result<()> {
    let name = crate::lab::OPENBAO;
    if lab.runs(name) {
        return Ok(());
    }
    let port = lab.spec().openbao.as_ref().map(|b| b.port).unwrap_or_default();
    tracing::info!(component = name, "starting");
    let bao = crate::openbao::start(&lab.state_dir().join("openbao"), port, lab.log_path_for(name)).await?;
    lab.record_started(name, bao.record, run)
}

/// PostgreSQL's spiffe-helper, as the server's user (PostgreSQL insists on owning its key).
async fn start_postgres_helper(lab: &mut Lab, app: &AppSpec, run: &mut UpRun) -> Result<()> {
    let name = appchain::HELPER_POSTGRES;
    let paths = AppPaths::new(lab.state_dir());
    let socket = lab.workload_socket(&app.site)?;
    let pg_user = crate::postgres::server_user()?;
    let cluster = paths.pg_cluster(app.postgres_port);
    let pg_certs = paths.pg_cert_dir();
    cluster.init(&lab.logs_dir()?.join("postgres-app-initdb.log")).await?;
    if lab.runs(name) {
        return Ok(());
    }
    let exe = lab.install_binary(name, &Tool::SpiffeHelper.require()?)?;
    if pg_user.is_some() {
        // The helper runs as the server's user: it must reach the agent socket and its binary.
        crate::postgres::allow_traverse(&socket)?;
        crate::postgres::allow_traverse(&exe)?;
    }
    std::fs::create_dir_all(&pg_certs).map_err(Error::io(format!("creating {}", pg_certs.display())))?;
    if let Some((uid, gid)) = pg_user {
        let _ =
            nix::unistd::chown(&pg_certs, Some(nix::unistd::Uid::from_raw(uid)), Some(nix::unistd::Gid::from_raw(gid)));
    }
    // spiffe-helper reads a file holding only a pid (postmaster.pid has several lines).
    let pid_file = appchain::app_postgres_pid_file(&cluster);
    let helper = Helper { name, exe, socket, certs: pg_certs, signal_pid_file: Some(pid_file), user: pg_user };
    helper.start(lab, run).await
}

/// The app PostgreSQL, with the SVID its helper wrote.
async fn start_app_postgres(lab: &mut Lab, app: &AppSpec, run: &mut UpRun) -> Result<()> {
    let name = appchain::POSTGRES_APP;
    let paths = AppPaths::new(lab.state_dir());
    let cluster = paths.pg_cluster(app.postgres_port);
    let pg_certs = paths.pg_cert_dir();
    let pid_file = appchain::app_postgres_pid_file(&cluster);
    let hba = appchain::init_app_postgres(&cluster, &lab.logs_dir()?.join("postgres-app-initdb.log")).await?;
    // PostgreSQL reads its certificate and key once at start; if spiffe-helper is rewriting
    // them at that moment (cert and key from two SVIDs), it exits. Try again, up to 3 times.
    for attempt in 1..=3 {
        let log = lab.log_path_for(name);
        let timeout = run.timeout;
        let result = lab
            .ensure_process(
                name,
                run,
                || {
                    let rec = appchain::spawn_app_postgres(&cluster, &pg_certs, &hba, log)?;
                    std::fs::write(&pid_file, format!("{}\n", rec.pid))
                        .map_err(Error::io(format!("writing {}", pid_file.display())))?;
                    Ok(rec)
                },
                async |rec| cluster.wait_ready(name, rec, timeout).await,
            )
            .await;
        match result {
            Ok(()) => break,
            Err(e) if attempt < 3 && !lab.runs(name) => {
                let tail = crate::process::tail(&lab.log_path_for(name), 5);
                tracing::warn!(error = %e, attempt, log = %tail, "postgres-app exited while starting; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The OIDC Discovery Provider, reading keys from the site's SPIRE server.
async fn start_oidc(lab: &mut Lab, app: &AppSpec, run: &mut UpRun) -> Result<()> {
    let name = appchain::OIDC;
    if lab.runs(name) {
        return Ok(());
    }
    let paths = AppPaths::new(lab.state_dir());
    let conf =
        appchain::write_oidc_config(&paths, app.oidc_port, free_port()?, &lab.site_paths(&app.site)?.admin_socket())?;
    let log = lab.log_path_for(name);
    let (port, timeout) = (app.oidc_port, run.timeout);
    lab.ensure_process(
        name,
        run,
        || appchain::spawn_oidc(&conf, log),
        async |rec| appchain::wait_oidc(rec, port, timeout).await,
    )
    .await
}

/// The test double of GitHub's API.
async fn start_github_fixture(lab: &mut Lab, app: &AppSpec, run: &mut UpRun) -> Result<()> {
    let name = appchain::GITHUB_FIXTURE;
    let Some(fx) = &app.github_fixture else { return Ok(()) };
    let log = lab.log_path_for(name);
    let (port, timeout) = (fx.port, run.timeout);
    lab.ensure_process(
        name,
        run,
        || {
            crate::process::spawn(&Launch {
                program: fx.program.clone(),
                args: vec!["--listen".into(), format!("127.0.0.1:{port}")],
                log,
                ..Launch::default()
            })
        },
        // Any HTTP answer will do: without a token, GitHub (and the fixture) say 401.
        async |rec| appchain::wait_http(name, rec, port, "/user", timeout, |_, _| true).await,
    )
    .await
}

/// The backend's spiffe-helper (the backend's client certificate for PostgreSQL).
async fn start_backend_helper(lab: &mut Lab, app: &AppSpec, run: &mut UpRun) -> Result<()> {
    let name = appchain::HELPER_BACKEND;
    if lab.runs(name) {
        return Ok(());
    }
    let paths = AppPaths::new(lab.state_dir());
    let socket = lab.workload_socket(&app.site)?;
    let certs = paths.backend_cert_dir();
    std::fs::create_dir_all(&certs).map_err(Error::io(format!("creating {}", certs.display())))?;
    let exe = lab.install_binary(name, &Tool::SpiffeHelper.require()?)?;
    Helper { name, exe, socket, certs, signal_pid_file: None, user: None }.start(lab, run).await
}

/// A spiffe-helper to start: it writes the SVID of `socket`'s agent into `certs`, as `user`,
/// and signals the pid in `signal_pid_file` after each write.
struct Helper {
    name: &'static str,
    exe: PathBuf,
    socket: PathBuf,
    certs: PathBuf,
    signal_pid_file: Option<PathBuf>,
    user: Option<(u32, u32)>,
}

impl Helper {
    async fn start(self, lab: &mut Lab, run: &mut UpRun) -> Result<()> {
        let paths = AppPaths::new(lab.state_dir());
        let conf = appchain::write_helper_config(
            &paths,
            self.name,
            &self.socket,
            &self.certs,
            self.signal_pid_file.as_deref(),
            free_port()?,
        )?;
        let log = lab.log_path_for(self.name);
        let timeout = run.timeout;
        lab.ensure_process(
            self.name,
            run,
            || appchain::spawn_helper(&self.exe, &conf, log, self.user),
            async |rec| appchain::wait_svid_files(self.name, rec, &self.certs, timeout).await,
        )
        .await
    }
}

/// A ztlab service: its binary copy (its `unix:path` selector), its bootstrap entry if it has
/// one, its config file; ready when `/readyz` (or `/healthz`) answers 200.
async fn start_workload(lab: &mut Lab, w: &WorkloadSpec, run: &mut UpRun) -> Result<()> {
    let config_file = lab.state_dir().join("config").join(format!("{}.toml", w.name));
    if let Some(rec) = lab.state.workloads.get(&w.name).filter(|r| r.is_alive()).cloned() {
        let exe_changed = !crate::lab::same_file(&w.program, &lab.state_dir().join("bin").join(&w.name));
        let config_changed =
            w.config.as_ref().is_some_and(|c| std::fs::read_to_string(&config_file).ok().as_ref() != Some(c));
        if !exe_changed && !config_changed {
            return Ok(());
        }
        // Running an older build or config: restart it so that `up` converges.
        tracing::info!(component = %w.name, exe_changed, config_changed, "restarting");
        rec.stop(Duration::from_secs(10)).await;
    }
    let exe = lab.install_binary(&w.name, &w.program)?;
    if w.bootstrap_entry {
        let r = lab.registration(w, &exe)?;
        spire::create_entry(&lab.site_paths(&w.site)?, &r).await?;
    }
    let mut env: Vec<(String, String)> = vec![
        ("SPIFFE_ENDPOINT_SOCKET".into(), format!("unix://{}", lab.workload_socket(&w.site)?.display())),
        ("ZT_TRUST_DOMAIN".into(), lab.site_spec(&w.site)?.trust_domain.clone()),
        ("ZT_OPS_ADDR".into(), format!("127.0.0.1:{}", w.ops_port)),
    ];
    if let Some(text) = &w.config {
        if let Some(dir) = config_file.parent() {
            std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        }
        std::fs::write(&config_file, text).map_err(Error::io(format!("writing {}", config_file.display())))?;
        env.push(("ZT_CONFIG".into(), config_file.display().to_string()));
    }
    env.extend(w.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    tracing::info!(component = %w.name, "starting");
    let rec = crate::process::spawn(&Launch {
        program: exe,
        args: w.args.clone(),
        env,
        cwd: Some(lab.state_dir().to_path_buf()),
        log: lab.log_path_for(&w.name),
        user: None,
    })?;
    lab.record_started(&w.name, rec.clone(), run)?;
    crate::lab::wait_healthz(&w.name, &rec, w.ops_port, run.timeout).await
}

/// An Envoy sidecar: the backend's (inbound, RBAC) or the frontend's (outbound to the backend's
/// Envoy); its SVID comes over SDS, so it is ready when its admin `/ready` says LIVE.
async fn start_envoy(lab: &mut Lab, name: &'static str, run: &mut UpRun) -> Result<()> {
    if lab.runs(name) {
        return Ok(());
    }
    let app = lab.app_spec()?;
    let paths = AppPaths::new(lab.state_dir());
    let td = lab.site_spec(&app.site)?.trust_domain.clone();
    if appchain::current_rbac(&paths).is_none() {
        appchain::write_rbac(&paths, &td, appchain::RbacMode::AllowFrontend)?;
    }
    let id = |path: &str| format!("spiffe://{td}{path}");
    let backend = name == appchain::ENVOY_BACKEND_NAME;
    let ports = if backend { app.backend_envoy } else { app.frontend_envoy };
    let values = appchain::EnvoyValues {
        ports,
        upstream_port: if backend { app.backend_port } else { app.backend_envoy.listen },
        spiffe_id: id(if backend { zt_identity::lab::BACKEND } else { zt_identity::lab::FRONTEND }),
        peer_spiffe_id: if backend { String::new() } else { id(zt_identity::lab::BACKEND) },
        trust_domain: td.clone(),
        agent_socket: lab.workload_socket(&app.site)?,
    };
    let config = appchain::write_envoy_config(&paths, name, &values)?;
    let exe = lab.install_binary(name, &appchain::envoy_binary()?)?;
    let log = lab.log_path_for(name);
    let timeout = run.timeout;
    lab.ensure_process(
        name,
        run,
        || appchain::spawn_envoy(&exe, &config, log),
        async |rec| appchain::wait_envoy(name, rec, ports.admin, timeout).await,
    )
    .await
}
