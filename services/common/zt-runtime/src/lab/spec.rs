//! What to run ([`LabSpec`]: sites, workloads, OpenBao, the app chain), checked without touching
//! anything, and what `lab.json` records of it ([`LabState`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::app::AppSpec;
use crate::process::ProcessRecord;
use crate::spire::SitePaths;
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

impl WorkloadSpec {
    /// A workload with a bootstrap entry and nothing else set: no arguments, environment,
    /// ports (ops port 0), config or DNS names, and the site's SVID TTL.
    pub fn new(name: &str, site: &str, spiffe_path: &str, program: PathBuf) -> Self {
        Self {
            name: name.to_owned(),
            site: site.to_owned(),
            spiffe_path: spiffe_path.to_owned(),
            program,
            args: vec![],
            env: BTreeMap::new(),
            ops_port: 0,
            ports: BTreeMap::new(),
            x509_svid_ttl_secs: 0,
            bootstrap_entry: true,
            dns_names: vec![],
            config: None,
        }
    }
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
