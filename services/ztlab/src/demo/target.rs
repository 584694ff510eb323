//! The seam between the drills and the running lab: [`Target`] is every operation a scenario
//! needs from the lab, and the only way the drills reach it. [`LocalTarget`] provides them for
//! the local runtime (processes recorded by `zt_runtime::lab::Lab` in a state dir); another
//! runtime provides the same operations.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;
use zt_runtime::app::{AppPaths, RbacLoad, RbacMode};
use zt_runtime::lab::{Lab, WorkloadSpec};

use super::http;

/// How long one `agents act` may take (it waits for the agent's SVID first).
const ACT_TIMEOUT: Duration = Duration::from_secs(30);

/// One of the two Envoy sidecars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envoy {
    Frontend,
    Backend,
}

/// One of the spiffe-helpers, which write SVID files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Helper {
    Backend,
    Postgres,
}

/// What `agents act` answered: the document service's status and body, and the SPIFFE ID the
/// agent called with.
#[derive(Debug, Clone)]
pub struct ActAnswer {
    pub status: u16,
    pub body: Value,
    pub caller: String,
}

/// The lab's lease-revoker token: may revoke the backend's database leases, nothing else.
#[derive(Debug, Clone)]
pub struct LeaseRevoker {
    pub token: String,
    /// OpenBao's address.
    pub addr: String,
}

/// Every operation the scenarios need from a running lab.
#[async_trait::async_trait]
pub trait Target: Send + Sync + std::fmt::Debug {
    /// The trust domain of the app's site.
    fn trust_domain(&self) -> &str;
    /// The frontend's URL for `path` (plain HTTP, the browser's side).
    fn frontend_url(&self, path: &str) -> String;
    /// The frontend's SPIFFE ID.
    fn frontend_id(&self) -> &str;
    /// The backend's lease endpoint on its ops port (`/lease`).
    fn backend_lease_url(&self) -> String;
    /// opa's `/healthz` (it shows its SVID's serial).
    fn opa_healthz_url(&self) -> String;
    /// The lab runs and its frontend answers; else why not and what to do.
    async fn check_running(&self) -> anyhow::Result<()>;
    /// The serials of the certificates an Envoy holds (from its admin).
    async fn envoy_serials(&self, envoy: Envoy) -> Vec<String>;
    /// The serial of the SVID a spiffe-helper wrote.
    fn helper_serial(&self, helper: Helper) -> Option<String>;
    /// The backend Envoy's RBAC policy as installed.
    fn current_rbac(&self) -> Option<RbacMode>;
    /// Installs `mode` and waits (up to `wait`) until the backend's Envoy has loaded it: where it
    /// was installed, and how it was taken up.
    async fn install_rbac(&self, mode: RbacMode, wait: Duration) -> anyhow::Result<(String, RbacLoad)>;
    /// Runs `sql` with psql on the app's PostgreSQL (database `postgres`): its output.
    async fn psql_app(&self, sql: &str) -> anyhow::Result<String>;
    /// The lab's sites, in order.
    fn sites(&self) -> Vec<String>;
    /// The parent ID for entries of `site` (its agents' node alias).
    fn node_alias(&self, site: &str) -> anyhow::Result<String>;
    /// The X.509-SVID TTL of the app's site, seconds.
    fn x509_svid_ttl_secs(&self) -> u64;
    /// The TTL of the backend's database credentials, seconds.
    fn db_ttl_secs(&self) -> u64;
    /// `spire-server entry show -entryID <id>` on `site`'s server.
    async fn spire_show_entry(&self, site: &str, entry_id: &str) -> anyhow::Result<String>;
    /// entry-manager's API, as the CLI calls it (the lab's admin key).
    fn entry_client(&self) -> anyhow::Result<zt_entry_api::client::Client>;
    /// Whether component `name` (as `ztlab status` names it) is running.
    fn is_running(&self, name: &str) -> bool;
    /// Stops component `name`.
    async fn stop_component(&self, name: &str) -> anyhow::Result<()>;
    /// Starts again whatever of the lab is not running.
    async fn restart_stopped(&self) -> anyhow::Result<()>;
    /// `agents act --agent <agent> --doc <doc>`, with the user's token if any.
    async fn act(&self, agent: &str, token: Option<&str>, doc: &str) -> anyhow::Result<ActAnswer>;
    /// The lease-revoker token.
    fn lease_revoker(&self) -> anyhow::Result<LeaseRevoker>;
    /// Where the evidence is (SPIFFE IDs, ports, files) as `key=value` facts, for `agents`.
    fn facts(&self, agents: &[&str]) -> anyhow::Result<Vec<(&'static str, String)>>;
    /// The file that runs against this lab take turns on (one run at a time).
    fn run_lock_path(&self) -> PathBuf;
}

/// The local runtime's lab, as its recorded spec describes it.
#[derive(Debug)]
pub struct LocalTarget {
    lab: Lab,
    trust_domain: String,
    frontend_port: u16,
    frontend_id: String,
    document_port: u16,
    agents_site: String,
    paths: AppPaths,
}

fn listen_port(w: &WorkloadSpec) -> anyhow::Result<u16> {
    w.ports.get("listen").copied().with_context(|| format!("the lab's {} has no listen port", w.name))
}

impl LocalTarget {
    /// The lab recorded in `state_dir`; an error says how to start one.
    pub fn open(state_dir: &Path) -> anyhow::Result<Self> {
        let lab = Lab::open(state_dir)
            .map_err(|e| anyhow::anyhow!("no lab at {}: run ./scripts/setup.sh ({e})", state_dir.display()))?;
        let app = lab.spec().app.clone().with_context(|| {
            format!("the lab at {} runs no app chain (no [app] in its config); the demo needs it", state_dir.display())
        })?;
        let trust_domain = lab.site_spec(&app.site)?.trust_domain.clone();
        let workload = |name: &str| {
            lab.spec()
                .workloads
                .iter()
                .find(|w| w.name == name)
                .with_context(|| format!("the lab at {} runs no {name}; the demo needs it", state_dir.display()))
        };
        let frontend = workload("frontend")?;
        let frontend_port = listen_port(frontend)?;
        let frontend_id = format!("spiffe://{}{}", lab.site_spec(&frontend.site)?.trust_domain, frontend.spiffe_path);
        let document_port = listen_port(workload("document")?)?;
        let agents_site = workload("agents").map(|w| w.site.clone()).unwrap_or_else(|_| app.site.clone());
        let paths = AppPaths::new(lab.state_dir());
        Ok(Self { trust_domain, frontend_port, frontend_id, document_port, agents_site, paths, lab })
    }

    fn state_dir(&self) -> &Path {
        self.lab.state_dir()
    }

    fn app(&self) -> anyhow::Result<&zt_runtime::app::AppSpec> {
        self.lab.spec().app.as_ref().context("no app chain")
    }

    /// The ops port of workload `name` (0: none).
    fn ops_port(&self, name: &str) -> u16 {
        self.lab.spec().workloads.iter().find(|w| w.name == name).map(|w| w.ops_port).unwrap_or(0)
    }

    /// The lab as recorded now (processes started or stopped since this target was opened).
    fn reopen(&self) -> anyhow::Result<Lab> {
        Ok(Lab::open(self.state_dir())?)
    }
}

#[async_trait::async_trait]
impl Target for LocalTarget {
    fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    fn frontend_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.frontend_port)
    }

    fn frontend_id(&self) -> &str {
        &self.frontend_id
    }

    fn backend_lease_url(&self) -> String {
        format!("http://127.0.0.1:{}/lease", self.ops_port("backend"))
    }

    fn opa_healthz_url(&self) -> String {
        format!("http://127.0.0.1:{}/healthz", self.ops_port("opa"))
    }

    async fn check_running(&self) -> anyhow::Result<()> {
        let dir = self.state_dir().display();
        let alive = self.lab.process("frontend").ok().flatten().is_some_and(|r| r.is_alive());
        if !alive {
            bail!("no lab at {dir}: its frontend is not running; run ./scripts/setup.sh (or ztlab up)");
        }
        let (status, body) = http::request("GET", &self.frontend_url("/readyz"), None, None).await;
        if status == 0 {
            bail!("no lab at {dir}: the frontend does not answer on 127.0.0.1:{} ({body})", self.frontend_port);
        }
        Ok(())
    }

    async fn envoy_serials(&self, envoy: Envoy) -> Vec<String> {
        let Ok(app) = self.app() else { return Vec::new() };
        let admin = match envoy {
            Envoy::Frontend => app.frontend_envoy.admin,
            Envoy::Backend => app.backend_envoy.admin,
        };
        zt_runtime::app::envoy_serials(admin).await
    }

    fn helper_serial(&self, helper: Helper) -> Option<String> {
        let dir = match helper {
            Helper::Backend => self.paths.backend_cert_dir(),
            Helper::Postgres => self.paths.pg_cert_dir(),
        };
        zt_runtime::app::svid_file_serial(&dir)
    }

    fn current_rbac(&self) -> Option<RbacMode> {
        zt_runtime::app::current_rbac(&self.paths)
    }

    async fn install_rbac(&self, mode: RbacMode, wait: Duration) -> anyhow::Result<(String, RbacLoad)> {
        let admin = self.app()?.backend_envoy.admin;
        let (file, load) = zt_runtime::app::install_rbac(&self.paths, &self.trust_domain, mode, admin, wait).await?;
        Ok((file.display().to_string(), load))
    }

    async fn psql_app(&self, sql: &str) -> anyhow::Result<String> {
        let cluster = self.paths.pg_cluster(self.app()?.postgres_port);
        Ok(cluster.psql("postgres", sql).await.context("psql on the app's PostgreSQL")?)
    }

    fn sites(&self) -> Vec<String> {
        self.lab.spec().sites.iter().map(|s| s.name.clone()).collect()
    }

    fn node_alias(&self, site: &str) -> anyhow::Result<String> {
        Ok(self.lab.site_spec(site)?.node_alias())
    }

    fn x509_svid_ttl_secs(&self) -> u64 {
        let site = self.app().map(|a| a.site.clone()).unwrap_or_default();
        self.lab.site_spec(&site).map(|s| s.x509_svid_ttl_secs).unwrap_or(0)
    }

    fn db_ttl_secs(&self) -> u64 {
        self.app().map(|a| a.db_ttl_secs).unwrap_or(0)
    }

    async fn spire_show_entry(&self, site: &str, entry_id: &str) -> anyhow::Result<String> {
        Ok(zt_runtime::spire::show_entry(&self.lab.site_paths(site)?, entry_id).await?)
    }

    fn entry_client(&self) -> anyhow::Result<zt_entry_api::client::Client> {
        crate::api::Conn { server: None, ca_bundle: None, server_name: None, token: None }.client(self.state_dir())
    }

    fn is_running(&self, name: &str) -> bool {
        self.reopen().ok().is_some_and(|lab| lab.process(name).ok().flatten().is_some_and(|r| r.is_alive()))
    }

    async fn stop_component(&self, name: &str) -> anyhow::Result<()> {
        self.reopen()?.stop_component(name).await;
        Ok(())
    }

    async fn restart_stopped(&self) -> anyhow::Result<()> {
        Ok(self.reopen()?.restart_stopped().await?)
    }

    async fn act(&self, agent: &str, token: Option<&str>, doc: &str) -> anyhow::Result<ActAnswer> {
        // The program's path is the agents' selector.
        let program = self.state_dir().join("bin/agents");
        let socket = self.lab.workload_socket(&self.agents_site)?;
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(["act", "--agent", agent, "--doc", doc])
            .env("SPIFFE_ENDPOINT_SOCKET", format!("unix://{}", socket.display()))
            .env("ZT_TRUST_DOMAIN", &self.trust_domain)
            .env("ZT_DOCUMENT_URL", format!("https://127.0.0.1:{}", self.document_port))
            .env("ZT_OPS_ADDR", "127.0.0.1:0")
            .stdin(if token.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // The user's token goes through stdin, not the command line.
        if token.is_some() {
            cmd.args(["--user-token", "-"]);
        }
        let mut child = cmd.spawn().with_context(|| format!("running {}", program.display()))?;
        if let (Some(t), Some(mut stdin)) = (token, child.stdin.take()) {
            stdin.write_all(t.as_bytes()).await.context("writing the user token to agents act")?;
        }
        let output = tokio::time::timeout(ACT_TIMEOUT, child.wait_with_output())
            .await
            .with_context(|| format!("agents act --agent {agent} took more than {} s", ACT_TIMEOUT.as_secs()))??;
        let v: Value = serde_json::from_slice(&output.stdout).map_err(|_| {
            anyhow::anyhow!(
                "agents act --agent {agent} --doc {doc} gave no answer: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr).trim()
            )
        })?;
        let status = v["status"].as_u64().and_then(|s| u16::try_from(s).ok()).unwrap_or(0);
        let caller = v["spiffe_id"].as_str().unwrap_or_default().to_owned();
        Ok(ActAnswer { status, body: v["body"].clone(), caller })
    }

    fn lease_revoker(&self) -> anyhow::Result<LeaseRevoker> {
        let file = zt_runtime::openbao::lease_revoker_file(&self.state_dir().join("openbao"));
        let v: Value = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .with_context(|| format!("no lease-revoker token in {} (run ztlab up)", file.display()))?;
        Ok(LeaseRevoker {
            token: v["token"].as_str().unwrap_or_default().to_owned(),
            addr: v["addr"].as_str().unwrap_or_default().to_owned(),
        })
    }

    fn facts(&self, agents: &[&str]) -> anyhow::Result<Vec<(&'static str, String)>> {
        let spec = self.lab.spec();
        let app = self.app()?;
        let id_of = |name: &str| -> String {
            spec.workloads
                .iter()
                .find(|w| w.name == name)
                .map(|w| format!("spiffe://{}{}", self.trust_domain, w.spiffe_path))
                .unwrap_or_default()
        };
        let agent_ids: Vec<String> =
            agents.iter().map(|a| format!("spiffe://{}/agent/{a}", self.trust_domain)).collect();
        let dir = self.state_dir();
        let log = |name: &str| dir.join("logs").join(format!("{name}.log")).display().to_string();
        let mut sockets = Vec::new();
        for site in &spec.sites {
            sockets.push(format!("{}={}", site.name, self.lab.site_paths(&site.name)?.admin_socket().display()));
        }
        Ok(vec![
            ("state_dir", dir.display().to_string()),
            ("trust_domain", self.trust_domain.clone()),
            ("frontend_url", self.frontend_url("")),
            ("frontend_id", self.frontend_id.clone()),
            ("backend_id", id_of("backend")),
            ("document_id", id_of("document")),
            ("opa_id", id_of("opa")),
            ("agent_ids", agent_ids.join(" ")),
            ("spire_server", zt_runtime::binaries::Tool::SpireServer.path().display().to_string()),
            ("spire_socket", self.lab.site_paths(&app.site)?.admin_socket().display().to_string()),
            ("backend_svid", self.paths.backend_cert_dir().join("svid.pem").display().to_string()),
            ("backend_envoy_admin", format!("http://127.0.0.1:{}", app.backend_envoy.admin)),
            ("backend_lease_url", self.backend_lease_url()),
            ("frontend_envoy_admin", format!("http://127.0.0.1:{}", app.frontend_envoy.admin)),
            ("postgres_svid", self.paths.pg_cert_dir().join("svid.pem").display().to_string()),
            ("opa_healthz_url", self.opa_healthz_url()),
            ("spire_sockets", sockets.join(" ")),
            ("logs_dir", dir.join("logs").display().to_string()),
            ("rbac_file", self.paths.rbac_file().display().to_string()),
            ("postgres_log", log(zt_runtime::app::POSTGRES_APP)),
            ("document_log", log("document")),
            ("bao", zt_runtime::binaries::Tool::Bao.path().display().to_string()),
            ("lease_reader_file", zt_runtime::openbao::lease_reader_file(&dir.join("openbao")).display().to_string()),
            ("openbao_audit_log", zt_runtime::openbao::audit_log(&dir.join("openbao")).display().to_string()),
            ("backend_log", log("backend")),
        ])
    }

    fn run_lock_path(&self) -> PathBuf {
        self.state_dir().join("demo-run.lock")
    }
}
