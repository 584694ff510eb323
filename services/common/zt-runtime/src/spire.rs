//! SPIRE server and agent: configs, start-up, readiness, and the CLI calls the lab needs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::binaries::Tool;
use crate::process::{Launch, ProcessRecord};
use crate::{Error, Result, render};

const SERVER_TEMPLATE: &str = include_str!("../../../../infrastructure/local/spire/server.conf.tmpl");
const UPSTREAM_TEMPLATE: &str = include_str!("../../../../infrastructure/local/spire/upstream-disk.conf.tmpl");
const AGENT_TEMPLATE: &str = include_str!("../../../../infrastructure/local/spire/agent.conf.tmpl");
// The parts that differ between the runtimes: node and workload attestation.
const LOCAL_SERVER_ATTESTATION: &str =
    include_str!("../../../../infrastructure/local/spire/attestation-local-server.conf.tmpl");
const LOCAL_AGENT_ATTESTATION: &str =
    include_str!("../../../../infrastructure/local/spire/attestation-local-agent.conf.tmpl");
const LOCAL_WORKLOAD_ATTESTOR: &str =
    include_str!("../../../../infrastructure/local/spire/workload-attestor-local.conf.tmpl");
const K8S_SERVER_ATTESTATION: &str =
    include_str!("../../../../infrastructure/local/spire/attestation-k8s-server.conf.tmpl");
const K8S_AGENT_ATTESTATION: &str =
    include_str!("../../../../infrastructure/local/spire/attestation-k8s-agent.conf.tmpl");
const K8S_WORKLOAD_ATTESTOR: &str =
    include_str!("../../../../infrastructure/local/spire/workload-attestor-k8s.conf.tmpl");

/// Where one site's files live under the lab's state dir.
#[derive(Debug, Clone)]
pub struct SitePaths {
    /// `<state>/sites/<name>`.
    pub root: PathBuf,
}

impl SitePaths {
    /// Paths for site `name` under `state_dir`.
    pub fn new(state_dir: &Path, name: &str) -> Self {
        Self { root: state_dir.join("sites").join(name) }
    }
    /// The server's rendered config.
    pub fn server_conf(&self) -> PathBuf {
        self.root.join("server/server.conf")
    }
    /// The server's data dir (datastore, keys).
    pub fn server_data(&self) -> PathBuf {
        self.root.join("server/data")
    }
    /// The server's admin API socket (Entry API, bundles, tokens).
    pub fn admin_socket(&self) -> PathBuf {
        self.root.join("server/private/api.sock")
    }
    /// The trust bundle the agent bootstraps from.
    pub fn bundle(&self) -> PathBuf {
        self.root.join("server/bundle.pem")
    }
    /// The agent's rendered config.
    pub fn agent_conf(&self) -> PathBuf {
        self.root.join("agent/agent.conf")
    }
    /// The agent's data dir.
    pub fn agent_data(&self) -> PathBuf {
        self.root.join("agent/data")
    }
    /// The Workload API socket (also SDS).
    pub fn workload_socket(&self) -> PathBuf {
        self.root.join("agent/public/api.sock")
    }
}

/// Values that go into one site's configs.
#[derive(Debug, Clone)]
pub struct SiteConfigValues {
    /// Trust domain name.
    pub trust_domain: String,
    /// SPIRE server port (agents dial it).
    pub server_port: u16,
    /// Server health port (`/ready`).
    pub server_health_port: u16,
    /// Agent health port (`/ready`).
    pub agent_health_port: u16,
    /// Default X.509-SVID TTL.
    pub x509_svid_ttl: Duration,
    /// Default JWT-SVID TTL.
    pub jwt_svid_ttl: Duration,
    /// The shared upstream CA (cert, key), when the site uses one.
    pub upstream: Option<(PathBuf, PathBuf)>,
    /// SPIRE log level.
    pub log_level: String,
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

/// How a site's agents prove their node and name their workloads: the one thing that differs
/// between the runtimes' SPIRE configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attestation {
    /// Local processes: join tokens for the agent, `unix` selectors (a workload's binary path) for
    /// workloads; everything on 127.0.0.1.
    Local,
    /// Kubernetes: `k8s_psat` for the agent (a projected ServiceAccount token with audience
    /// `spire-server`, verified with TokenReview), `k8s` selectors for workloads.
    Kubernetes {
        /// The cluster's name in the attestor configs (agent IDs carry it).
        cluster: String,
        /// The agents' ServiceAccount as `namespace:name`, the only one allowed to attest.
        agent_service_account: String,
        /// The server's address as agents dial it (a Service's DNS name).
        server_address: String,
    },
}

/// The config files of one site, rendered: the server's and the agent's.
#[derive(Debug, Clone)]
pub struct SiteConfigs {
    /// `server.conf`.
    pub server: String,
    /// `agent.conf`.
    pub agent: String,
}

/// Where one site's server and agent keep their files and sockets, as the configs name them.
#[derive(Debug, Clone)]
pub struct SiteConfigPaths {
    /// The server's data dir.
    pub server_data: String,
    /// The server's admin socket.
    pub admin_socket: String,
    /// The agent's data dir.
    pub agent_data: String,
    /// The Workload API socket.
    pub workload_socket: String,
    /// The trust bundle the agent bootstraps from.
    pub trust_bundle: String,
    /// The shared upstream CA (cert, key), when the site uses one.
    pub upstream: Option<(String, String)>,
}

impl SiteConfigPaths {
    /// The local runtime's paths under `<state>/sites/<name>`.
    pub fn local(paths: &SitePaths, upstream: Option<&(PathBuf, PathBuf)>) -> Self {
        let s = |p: PathBuf| p.display().to_string();
        Self {
            server_data: s(paths.server_data()),
            admin_socket: s(paths.admin_socket()),
            agent_data: s(paths.agent_data()),
            workload_socket: s(paths.workload_socket()),
            trust_bundle: s(paths.bundle()),
            upstream: upstream.map(|(c, k)| (c.display().to_string(), k.display().to_string())),
        }
    }
}

/// Renders one site's configs from the templates in `infrastructure/local/spire/`, which both
/// runtimes share; only `attestation` and the paths differ.
pub fn render_configs(v: &SiteConfigValues, paths: &SiteConfigPaths, attestation: &Attestation) -> Result<SiteConfigs> {
    let upstream = match &paths.upstream {
        Some((cert, key)) => render(
            "upstream-disk.conf.tmpl",
            UPSTREAM_TEMPLATE,
            &[("upstream_cert", cert.clone()), ("upstream_key", key.clone())],
        )?,
        None => String::new(),
    };
    let (bind_address, server_address, server_attestor, agent_attestor, workload_attestor) = match attestation {
        Attestation::Local => (
            "127.0.0.1".to_owned(),
            "127.0.0.1".to_owned(),
            LOCAL_SERVER_ATTESTATION.to_owned(),
            LOCAL_AGENT_ATTESTATION.to_owned(),
            LOCAL_WORKLOAD_ATTESTOR.to_owned(),
        ),
        Attestation::Kubernetes { cluster, agent_service_account, server_address } => {
            let values = [("cluster", cluster.clone()), ("agent_service_account", agent_service_account.clone())];
            (
                "0.0.0.0".to_owned(),
                server_address.clone(),
                render("attestation-k8s-server.conf.tmpl", K8S_SERVER_ATTESTATION, &values)?,
                render("attestation-k8s-agent.conf.tmpl", K8S_AGENT_ATTESTATION, &values[..1])?,
                K8S_WORKLOAD_ATTESTOR.to_owned(),
            )
        }
    };
    // The CA must outlive the SVIDs it signs many times over.
    let ca_ttl = Duration::from_secs((v.x509_svid_ttl.as_secs() * 12).max(24 * 3600));
    let server = render(
        "server.conf.tmpl",
        SERVER_TEMPLATE,
        &[
            ("bind_address", bind_address.clone()),
            ("server_port", v.server_port.to_string()),
            ("admin_socket", paths.admin_socket.clone()),
            ("trust_domain", v.trust_domain.clone()),
            ("data_dir", paths.server_data.clone()),
            ("log_level", v.log_level.clone()),
            ("ca_ttl", secs(ca_ttl)),
            ("x509_svid_ttl", secs(v.x509_svid_ttl)),
            ("jwt_svid_ttl", secs(v.jwt_svid_ttl)),
            ("cache_reload_interval", "1s".into()),
            ("node_attestor", server_attestor),
            ("upstream_authority", upstream),
            ("health_port", v.server_health_port.to_string()),
        ],
    )?;
    let agent = render(
        "agent.conf.tmpl",
        AGENT_TEMPLATE,
        &[
            ("bind_address", bind_address),
            ("data_dir", paths.agent_data.clone()),
            ("log_level", v.log_level.clone()),
            ("server_address", server_address),
            ("server_port", v.server_port.to_string()),
            ("workload_socket", paths.workload_socket.clone()),
            ("trust_domain", v.trust_domain.clone()),
            ("trust_bundle_path", paths.trust_bundle.clone()),
            ("sync_interval", "1s".into()),
            ("node_attestor", agent_attestor),
            ("workload_attestor", workload_attestor),
            ("health_port", v.agent_health_port.to_string()),
        ],
    )?;
    Ok(SiteConfigs { server, agent })
}

/// Writes the server's and the agent's config files (local runtime).
pub fn write_configs(paths: &SitePaths, v: &SiteConfigValues) -> Result<()> {
    for dir in
        [paths.server_data(), paths.agent_data(), paths.root.join("server/private"), paths.root.join("agent/public")]
    {
        std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    }
    let configs = render_configs(v, &SiteConfigPaths::local(paths, v.upstream.as_ref()), &Attestation::Local)?;
    write(&paths.server_conf(), &configs.server)?;
    write(&paths.agent_conf(), &configs.agent)
}

pub(crate) fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(Error::io(format!("writing {}", path.display())))
}

/// Starts the SPIRE server of a site.
pub fn spawn_server(paths: &SitePaths, log: PathBuf) -> Result<ProcessRecord> {
    crate::process::spawn(&Launch {
        program: Tool::SpireServer.require()?,
        args: vec!["run".into(), "-config".into(), paths.server_conf().display().to_string()],
        env: vec![],
        cwd: Some(paths.root.clone()),
        log,
        user: None,
    })
}

/// Starts the SPIRE agent of a site, with a join token unless it already attested once (its
/// data dir then holds its SVID, which it renews by itself).
pub fn spawn_agent(paths: &SitePaths, join_token: Option<&str>, log: PathBuf) -> Result<ProcessRecord> {
    let mut args = vec!["run".into(), "-config".into(), paths.agent_conf().display().to_string()];
    if let Some(token) = join_token {
        args.push("-joinToken".into());
        args.push(token.to_owned());
    }
    crate::process::spawn(&Launch {
        program: Tool::SpireAgent.require()?,
        args,
        env: vec![],
        cwd: Some(paths.root.clone()),
        log,
        user: None,
    })
}

/// Whether the agent has attested before and its SVID is still valid for a while, so that it
/// needs no new join token. An agent that was stopped for longer than its SVID's TTL must attest
/// again (it refuses to start without a join token).
pub fn agent_attested(paths: &SitePaths) -> bool {
    let Ok(text) = std::fs::read_to_string(paths.agent_data().join("agent-data.json")) else { return false };
    let expiry = (|| {
        use base64::Engine as _;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        let first = v["svid"].as_array()?.first()?.as_str()?;
        crate::app::pem_not_after(&base64::engine::general_purpose::STANDARD.decode(first).ok()?)
    })();
    expiry.is_some_and(|t| t > time::OffsetDateTime::now_utc().unix_timestamp() + 30)
}

/// Waits until `GET /ready` on `health_port` answers 200, failing early if the process exits.
pub async fn wait_ready(component: &str, record: &ProcessRecord, health_port: u16, timeout: Duration) -> Result<()> {
    crate::wait::wait_ready(component, record, timeout, move || async move {
        match crate::health::http_get(health_port, "/ready").await {
            Some((200, _)) => Ok(()),
            _ => Err("its /ready endpoint never answered 200".to_owned()),
        }
    })
    .await
}

/// Runs `spire-server <args> -socketPath <admin socket>` and returns stdout.
pub async fn server_cli(paths: &SitePaths, args: &[&str]) -> Result<String> {
    let bin = Tool::SpireServer.require()?;
    let mut full: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    full.push("-socketPath".into());
    full.push(paths.admin_socket().display().to_string());
    let out = tokio::process::Command::new(&bin)
        .args(&full)
        .output()
        .await
        .map_err(Error::io(format!("running {}", bin.display())))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Command {
            command: format!("spire-server {}", args.join(" ")),
            message: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            ),
        })
    }
}

/// Writes the server's current trust bundle to the site's bundle file.
pub async fn export_bundle(paths: &SitePaths) -> Result<()> {
    let pem = server_cli(paths, &["bundle", "show"]).await?;
    write(&paths.bundle(), &pem)
}

/// Creates a one-use join token whose agent also gets `alias` as a stable SPIFFE ID.
pub async fn join_token(paths: &SitePaths, alias: &str) -> Result<String> {
    let out = server_cli(paths, &["token", "generate", "-spiffeID", alias, "-ttl", "600"]).await?;
    out.lines().find_map(|l| l.strip_prefix("Token: ")).map(|t| t.trim().to_owned()).ok_or_else(|| Error::Command {
        command: "spire-server token generate".into(),
        message: format!("no token in {out:?}"),
    })
}

/// A registration entry, as the lab bootstrap writes it with the SPIRE CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// The entry ID (caller-chosen, so that re-running is idempotent).
    pub entry_id: String,
    /// The SPIFFE ID issued.
    pub spiffe_id: String,
    /// The parent: the agent's alias.
    pub parent_id: String,
    /// Selectors, `type:value`.
    pub selectors: Vec<String>,
    /// X.509-SVID TTL in seconds (0: server default).
    pub x509_svid_ttl: u64,
    /// JWT-SVID TTL in seconds (0: server default).
    pub jwt_svid_ttl: u64,
    /// DNS names (the first becomes the certificate's CN).
    #[serde(default)]
    pub dns_names: Vec<String>,
}

/// Creates the entry; an entry with the same ID that already exists is left alone.
pub async fn create_entry(paths: &SitePaths, r: &Registration) -> Result<()> {
    let x509 = r.x509_svid_ttl.to_string();
    let jwt = r.jwt_svid_ttl.to_string();
    let mut args =
        vec!["entry", "create", "-entryID", &r.entry_id, "-spiffeID", &r.spiffe_id, "-parentID", &r.parent_id];
    for s in &r.selectors {
        args.push("-selector");
        args.push(s);
    }
    if r.x509_svid_ttl > 0 {
        args.extend(["-x509SVIDTTL", &x509]);
    }
    if r.jwt_svid_ttl > 0 {
        args.extend(["-jwtSVIDTTL", &jwt]);
    }
    for d in &r.dns_names {
        args.push("-dns");
        args.push(d);
    }
    match server_cli(paths, &args).await {
        Ok(_) => Ok(()),
        Err(Error::Command { message, .. })
            if message.contains("AlreadyExists") || message.contains("already exists") =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// `spire-server entry show -entryID <id>` output.
pub async fn show_entry(paths: &SitePaths, entry_id: &str) -> Result<String> {
    server_cli(paths, &["entry", "show", "-entryID", entry_id]).await
}

/// Deletes an entry by ID.
pub async fn delete_entry(paths: &SitePaths, entry_id: &str) -> Result<()> {
    server_cli(paths, &["entry", "delete", "-entryID", entry_id]).await.map(|_| ())
}

pub use crate::certs::ensure_root_ca;

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> SiteConfigValues {
        SiteConfigValues {
            trust_domain: "ztlab.test".into(),
            server_port: 8081,
            server_health_port: 8080,
            agent_health_port: 8082,
            x509_svid_ttl: Duration::from_secs(60),
            jwt_svid_ttl: Duration::from_secs(300),
            upstream: None,
            log_level: "INFO".into(),
        }
    }

    fn paths() -> SiteConfigPaths {
        SiteConfigPaths {
            server_data: "/data".into(),
            admin_socket: "/sock/api.sock".into(),
            agent_data: "/agent".into(),
            workload_socket: "/ws/spire-agent.sock".into(),
            trust_bundle: "/bundle/root.crt".into(),
            upstream: Some(("/up/root.crt".into(), "/up/root.key".into())),
        }
    }

    #[test]
    fn both_runtimes_render_from_the_same_templates() {
        let local = render_configs(&values(), &paths(), &Attestation::Local).expect("test value");
        assert!(local.server.contains("NodeAttestor \"join_token\""), "{}", local.server);
        assert!(local.server.contains("bind_address = \"127.0.0.1\""));
        assert!(local.agent.contains("WorkloadAttestor \"unix\""));
        assert!(!local.agent.contains("k8s"));

        let kind = Attestation::Kubernetes {
            cluster: "ztlab".into(),
            agent_service_account: "spire-a:spire-agent".into(),
            server_address: "spire-server.spire-a.svc".into(),
        };
        let k = render_configs(&values(), &paths(), &kind).expect("test value");
        assert!(k.server.contains("NodeAttestor \"k8s_psat\""), "{}", k.server);
        assert!(k.server.contains("service_account_allow_list = [\"spire-a:spire-agent\"]"));
        assert!(k.server.contains("bind_address = \"0.0.0.0\""));
        assert!(k.server.contains("cert_file_path = \"/up/root.crt\""));
        assert!(!k.server.contains("join_token"));
        assert!(k.agent.contains("server_address = \"spire-server.spire-a.svc\""));
        assert!(k.agent.contains("cluster = \"ztlab\""));
        assert!(k.agent.contains("WorkloadAttestor \"k8s\""));
        assert!(!k.agent.contains("unix"));
        // The rest is the same text in both.
        for line in ["default_x509_svid_ttl = \"60s\"", "cache_reload_interval = \"1s\"", "ready_path = \"/ready\""] {
            assert!(local.server.contains(line) && k.server.contains(line), "{line}");
        }
    }
}
