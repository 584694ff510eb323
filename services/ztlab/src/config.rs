//! The lab config file (`infrastructure/local/lab.toml`) and the catalogue, turned into the
//! runtime's [`LabSpec`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use zt_entry_api::pb;
use zt_runtime::app::{AppPaths, AppSpec, FixtureSpec};
use zt_runtime::entrymgmt::{self, EntryMgmtSpec};
use zt_runtime::lab::{LabSpec, SiteSpec, WorkloadSpec, default_state_dir};

pub const DEFAULT_CONFIG: &str = include_str!("../../../infrastructure/local/lab.toml");
pub const DEFAULT_CATALOGUE: &str = include_str!("../../../infrastructure/catalogue/workloads.toml");

/// The lab config file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LabConfig {
    pub state_dir: Option<PathBuf>,
    #[serde(default = "info")]
    pub log_level: String,
    #[serde(default = "sixty")]
    pub ready_timeout_secs: u64,
    pub sites: Vec<SiteSpec>,
    pub services: BTreeMap<String, ServicePorts>,
    pub entry_management: EntryMgmtConfig,
    /// OpenBao, the lab's OIDC provider for people; without it, only API keys work.
    pub openbao: Option<OpenBaoConfig>,
    /// The app chain (frontend ↔ backend through Envoy, backend → PostgreSQL and OpenBao).
    pub app: Option<AppConfig>,
}

/// The `[app]` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub postgres_port: u16,
    pub oidc_port: u16,
    pub backend_envoy: zt_runtime::app::EnvoyPorts,
    pub frontend_envoy: zt_runtime::app::EnvoyPorts,
    /// Port of the local GitHub API fixture; omit it to call `github_api_url`.
    pub github_fixture_port: Option<u16>,
    #[serde(default = "github_api")]
    pub github_api_url: String,
    /// TTL of the backend's dynamic database credentials (production: 3600).
    #[serde(default = "db_ttl")]
    pub db_ttl_secs: u64,
    #[serde(default = "db_max_ttl")]
    pub db_max_ttl_secs: u64,
    /// When the backend rotates them, as a fraction of the TTL (production: 50 of 60 minutes).
    #[serde(default = "rotate_at")]
    pub db_rotate_at: f64,
}

fn github_api() -> String {
    "https://api.github.com".into()
}
fn db_ttl() -> u64 {
    3600
}
fn db_max_ttl() -> u64 {
    86400
}
fn rotate_at() -> f64 {
    50.0 / 60.0
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OpenBaoConfig {
    pub port: u16,
}

fn info() -> String {
    "INFO".into()
}
fn sixty() -> u64 {
    60
}
fn thirty() -> u64 {
    30
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServicePorts {
    /// Its listener (the agents runtime has none).
    pub listen: Option<u16>,
    pub ops: u16,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EntryMgmtConfig {
    pub site: String,
    pub listen: u16,
    pub operator: u16,
    pub ops: u16,
    #[serde(default = "thirty")]
    pub full_resync_secs: u64,
    pub agent_ops: BTreeMap<String, u16>,
}

/// The services `ztlab up` runs after the catalogue is applied: (name, SPIFFE path, site). The
/// agents runtime holds three SVIDs; its path is the first one's.
pub const SERVICES: &[(&str, &str, &str)] = &[
    ("opa", "/ns/demo/sa/opa", "a"),
    ("document", "/ns/demo/sa/document", "a"),
    ("agents", "/agent/gpt4", "a"),
    ("backend", "/ns/demo/sa/backend", "a"),
    ("frontend", "/ns/demo/sa/frontend", "a"),
];

/// The services that only run with the app chain (`[app]`).
const APP_SERVICES: [&str; 2] = ["backend", "frontend"];

/// The two phases of `ztlab up`.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Infrastructure and entry management (bootstrap entries only).
    pub infra: LabSpec,
    /// Everything, including the services registered through the catalogue.
    pub full: LabSpec,
}

impl LabConfig {
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let (text, name) = match path {
            Some(p) => (
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
                p.display().to_string(),
            ),
            None => (DEFAULT_CONFIG.to_owned(), "built-in lab.toml".into()),
        };
        toml::from_str(&text).with_context(|| format!("invalid lab config {name}"))
    }

    pub fn plan(&self, state_dir: Option<PathBuf>) -> anyhow::Result<Plan> {
        let bin_dir = std::env::current_exe()?.parent().map(Path::to_path_buf).unwrap_or_default();
        if let Some(extra) = self.services.keys().find(|k| !SERVICES.iter().any(|(n, _, _)| n == k)) {
            let known: Vec<&str> = SERVICES.iter().map(|s| s.0).collect();
            anyhow::bail!("invalid lab config: services.{extra}: unknown service (known: {})", known.join(", "));
        }
        let em = &self.entry_management;
        for s in &self.sites {
            if !em.agent_ops.contains_key(&s.name) {
                anyhow::bail!(
                    "invalid lab config: entry_management.agent_ops.{}: missing (the site agent's ops port)",
                    s.name
                );
            }
        }
        if !self.sites.iter().any(|s| s.name == em.site) {
            anyhow::bail!("invalid lab config: entry_management.site: no site named {:?}", em.site);
        }
        let mut infra = LabSpec {
            state_dir: state_dir.or_else(|| self.state_dir.clone()).unwrap_or_else(default_state_dir),
            log_level: self.log_level.clone(),
            ready_timeout_secs: self.ready_timeout_secs,
            sites: self.sites.clone(),
            workloads: vec![],
            mgmt_db: true,
            openbao: self
                .openbao
                .as_ref()
                .map(|b| zt_runtime::lab::OpenBaoSpec { port: b.port, users: entrymgmt::lab_users() }),
            app: None,
        };
        let em_spec = EntryMgmtSpec {
            site: em.site.clone(),
            entry_manager: bin_dir.join("entry-manager"),
            site_agent: bin_dir.join("site-agent"),
            listen_port: em.listen,
            operator_port: em.operator,
            ops_port: em.ops,
            agent_ops_ports: em.agent_ops.clone(),
            full_resync_secs: em.full_resync_secs,
            oidc: self.openbao.as_ref().map(|b| entrymgmt::lab_oidc(b.port)),
        };
        infra.workloads = entrymgmt::workloads(&infra, &em_spec);
        let mut full = infra.clone();
        if self.app.is_some() && self.openbao.is_none() {
            anyhow::bail!("invalid lab config: app: the app chain needs [openbao]");
        }
        let state = full.state_dir.clone();
        let listen = |name: &str| -> anyhow::Result<u16> {
            self.services
                .get(name)
                .and_then(|p| p.listen)
                .with_context(|| format!("invalid lab config: services.{name}.listen: missing"))
        };
        let ops = |name: &str| -> anyhow::Result<u16> {
            self.services
                .get(name)
                .map(|p| p.ops)
                .with_context(|| format!("invalid lab config: services.{name}: missing (listen and ops ports)"))
        };
        if let Some(app) = &self.app {
            full.app = Some(AppSpec {
                site: "a".into(),
                postgres_port: app.postgres_port,
                oidc_port: app.oidc_port,
                backend_port: listen("backend")?,
                backend_envoy: app.backend_envoy,
                frontend_envoy: app.frontend_envoy,
                github_fixture: app
                    .github_fixture_port
                    .map(|port| FixtureSpec { program: bin_dir.join("github-fixture"), port }),
                db_ttl_secs: app.db_ttl_secs,
                db_max_ttl_secs: app.db_max_ttl_secs,
            });
        }
        for (name, path, site) in SERVICES {
            if APP_SERVICES.contains(name) && self.app.is_none() {
                continue;
            }
            // The agents runtime is optional: it runs when configured.
            if *name == "agents" && !self.services.contains_key("agents") {
                continue;
            }
            let ops_port = ops(name)?;
            let mut env = BTreeMap::new();
            let mut ports = BTreeMap::new();
            if *name != "agents" {
                let port = listen(name)?;
                env.insert("ZT_LISTEN_ADDR".to_owned(), format!("127.0.0.1:{port}"));
                ports.insert("listen".to_owned(), port);
            }
            match *name {
                "document" => {
                    env.insert("ZT_OPA_URL".into(), format!("https://127.0.0.1:{}", listen("opa")?));
                    if self.app.is_some() {
                        env.insert(
                            "ZT_USER_JWKS_URL".into(),
                            format!("http://127.0.0.1:{}/.well-known/jwks.json", ops("backend")?),
                        );
                    }
                }
                "agents" => {
                    env.insert("ZT_DOCUMENT_URL".into(), format!("https://127.0.0.1:{}", listen("document")?));
                }
                "backend" => {
                    let app = self.app.as_ref().context("app")?;
                    let bao = self.openbao.as_ref().context("openbao")?;
                    env.insert("ZT_DATABASE__PORT".into(), app.postgres_port.to_string());
                    env.insert(
                        "ZT_DATABASE__CERT_DIR".into(),
                        AppPaths::new(&state).backend_cert_dir().display().to_string(),
                    );
                    env.insert("ZT_OPENBAO__ADDR".into(), format!("http://127.0.0.1:{}", bao.port));
                    env.insert("ZT_OPENBAO__ROTATE_AT".into(), app.db_rotate_at.to_string());
                    env.insert(
                        "ZT_TOKENS__KEY_FILE".into(),
                        state.join("backend/user-token.pem").display().to_string(),
                    );
                    let (url, fixture) = match app.github_fixture_port {
                        Some(p) => (format!("http://127.0.0.1:{p}"), true),
                        None => (app.github_api_url.clone(), false),
                    };
                    env.insert("ZT_GITHUB__API_URL".into(), url);
                    env.insert("ZT_GITHUB__FIXTURE".into(), fixture.to_string());
                }
                "frontend" => {
                    let app = self.app.as_ref().context("app")?;
                    env.insert("ZT_BACKEND_URL".into(), format!("http://127.0.0.1:{}", app.frontend_envoy.listen));
                    env.insert("ZT_ENVOY_ADMIN_URL".into(), format!("http://127.0.0.1:{}", app.frontend_envoy.admin));
                    env.insert("ZT_DOCUMENT_URL".into(), format!("https://127.0.0.1:{}", listen("document")?));
                    env.insert("ZT_ENTRY_MANAGER_URL".into(), format!("https://127.0.0.1:{}", em.listen));
                    env.insert(
                        "ZT_USER_JWKS_URL".into(),
                        format!("http://127.0.0.1:{}/.well-known/jwks.json", ops("backend")?),
                    );
                }
                _ => {}
            }
            full.workloads.push(WorkloadSpec {
                env,
                ops_port,
                ports,
                bootstrap_entry: false,
                ..WorkloadSpec::new(name, site, path, bin_dir.join(name))
            });
        }
        Ok(Plan { infra, full })
    }
}

/// A catalogue file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    #[serde(default)]
    pub workload: Vec<CatalogueWorkload>,
    #[serde(default)]
    pub entry: Vec<CatalogueEntry>,
}

/// A ztlab workload; the runtime fills in selectors and parent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CatalogueWorkload {
    pub name: String,
    /// The binary whose copy in `<state>/bin` is the selector; default: `name`.
    pub binary: Option<String>,
    pub spiffe_path: String,
    pub sites: Vec<String>,
    #[serde(default)]
    pub x509_svid_ttl: i32,
    #[serde(default)]
    pub jwt_svid_ttl: i32,
    #[serde(default)]
    pub dns_names: Vec<String>,
}

/// An entry written as is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CatalogueEntry {
    pub spiffe_id: String,
    pub parent_id: String,
    pub selectors: Vec<String>,
    pub sites: Vec<String>,
    #[serde(default)]
    pub x509_svid_ttl: i32,
    #[serde(default)]
    pub jwt_svid_ttl: i32,
    #[serde(default)]
    pub dns_names: Vec<String>,
    #[serde(default)]
    pub hint: String,
    #[serde(default)]
    pub admin: bool,
    #[serde(default)]
    pub downstream: bool,
}

impl Catalogue {
    pub fn parse(text: &str, name: &str) -> anyhow::Result<Self> {
        toml::from_str(text).with_context(|| format!("invalid catalogue {name}"))
    }

    /// The entries, each with the field path that names it in errors. Workloads get the local
    /// runtime's selectors: their binary copy's path.
    pub fn entries(&self, spec: &LabSpec) -> anyhow::Result<Vec<(String, pb::EntrySpec)>> {
        let mut out = Vec::new();
        for (i, w) in self.workload.iter().enumerate() {
            let field = format!("workload[{i}] ({})", w.name);
            let site = w.sites.first().with_context(|| format!("{field}.sites: at least one site is required"))?;
            let s = spec
                .sites
                .iter()
                .find(|s| &s.name == site)
                .with_context(|| format!("{field}.sites[0]: the lab has no site {site:?}"))?;
            let exe = spec.state_dir.join("bin").join(w.binary.as_deref().unwrap_or(&w.name));
            out.push((
                field,
                pb::EntrySpec {
                    spiffe_id: format!("spiffe://{}{}", s.trust_domain, w.spiffe_path),
                    parent_id: s.node_alias(),
                    selectors: vec![pb::Selector { r#type: "unix".into(), value: format!("path:{}", exe.display()) }],
                    x509_svid_ttl: w.x509_svid_ttl,
                    jwt_svid_ttl: w.jwt_svid_ttl,
                    dns_names: w.dns_names.clone(),
                    hint: w.name.clone(),
                    site_ids: w.sites.clone(),
                    ..Default::default()
                },
            ));
        }
        for (i, e) in self.entry.iter().enumerate() {
            let field = format!("entry[{i}]");
            let mut selectors = Vec::new();
            for (j, s) in e.selectors.iter().enumerate() {
                selectors.push(zt_entry_api::validate::selector_str(&format!("{field}.selectors[{j}]"), s)?);
            }
            out.push((
                field,
                pb::EntrySpec {
                    spiffe_id: e.spiffe_id.clone(),
                    parent_id: e.parent_id.clone(),
                    selectors,
                    x509_svid_ttl: e.x509_svid_ttl,
                    jwt_svid_ttl: e.jwt_svid_ttl,
                    dns_names: e.dns_names.clone(),
                    admin: e.admin,
                    downstream: e.downstream,
                    hint: e.hint.clone(),
                    site_ids: e.sites.clone(),
                },
            ));
        }
        Ok(out)
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
        let plan = cfg.plan(Some("/tmp/ztlab-test".into())).expect("plan");
        let infra: Vec<&str> = plan.infra.workloads.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(infra, ["entry-manager", "site-agent-a", "site-agent-b"]);
        let services: Vec<&WorkloadSpec> = plan.full.workloads.iter().filter(|w| !w.bootstrap_entry).collect();
        let names: Vec<&str> = services.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["opa", "document", "agents", "backend", "frontend"]);
        assert_eq!(services[1].env["ZT_OPA_URL"], "https://127.0.0.1:8181");
        assert_eq!(services[1].env["ZT_USER_JWKS_URL"], "http://127.0.0.1:9090/.well-known/jwks.json");
        assert_eq!(services[4].env["ZT_BACKEND_URL"], "http://127.0.0.1:10080");
        assert_eq!(services[4].env["ZT_ENTRY_MANAGER_URL"], "https://127.0.0.1:8444");
        assert!(services[2].ports.is_empty(), "the agents runtime has no listener");
        let app = plan.full.app.as_ref().expect("app chain");
        assert_eq!((app.backend_port, app.backend_envoy.listen, app.postgres_port), (8090, 10443, 5433));
        assert!(plan.infra.app.is_none(), "the app chain starts after the catalogue is applied");
    }

    #[test]
    fn unknown_fields_and_services_are_named() {
        let err = toml::from_str::<LabConfig>("sites = []\nservices = {}\nbogus = 1\n").expect_err("unknown field");
        assert!(err.to_string().contains("bogus"), "{err}");
        let mut cfg = LabConfig::load(None).expect("built-in");
        cfg.services.insert("redis".into(), ServicePorts { listen: Some(1), ops: 2 });
        let err = cfg.plan(None).expect_err("unknown service");
        assert!(err.to_string().contains("services.redis"), "{err}");
        let mut cfg = LabConfig::load(None).expect("built-in");
        cfg.openbao = None;
        let err = cfg.plan(None).expect_err("app without openbao");
        assert!(err.to_string().contains("app: the app chain needs [openbao]"), "{err}");
    }

    #[test]
    fn catalogue_workloads_become_entries_with_local_selectors() {
        let cfg = LabConfig::load(None).expect("built-in");
        let plan = cfg.plan(Some("/tmp/zt".into())).expect("plan");
        let cat = Catalogue::parse(DEFAULT_CATALOGUE, "built-in").expect("catalogue");
        let entries = cat.entries(&plan.full).expect("entries");
        assert_eq!(entries.len(), 11);
        let (_, gpt4) = entries.iter().find(|(f, _)| f.contains("agent-gpt4")).expect("gpt4");
        assert_eq!(gpt4.spiffe_id, "spiffe://ztlab.test/agent/gpt4");
        assert_eq!(gpt4.selectors[0].value, "path:/tmp/zt/bin/agents", "three agent IDs, one binary");
        let envoys: Vec<_> = entries.iter().filter(|(_, e)| e.spiffe_id.ends_with("/sa/backend")).collect();
        assert_eq!(envoys.len(), 3, "backend app, its Envoy and its spiffe-helper");
        let (field, opa) = &entries[0];
        assert_eq!(field, "workload[0] (opa)");
        assert_eq!(opa.spiffe_id, "spiffe://ztlab.test/ns/demo/sa/opa");
        assert_eq!(opa.parent_id, "spiffe://ztlab.test/ztlab/nodes/local");
        assert_eq!(opa.selectors[0].value, "path:/tmp/zt/bin/opa");
        assert_eq!(opa.site_ids, ["a", "b"]);
        let bad = Catalogue::parse("[[entry]]\nspiffe_id='spiffe://ztlab.test/x'\nparent_id='spiffe://ztlab.test/p'\nselectors=['nocolon']\nsites=['a']\n", "t")
            .expect("parses");
        let err = bad.entries(&plan.full).expect_err("bad selector");
        assert!(err.to_string().starts_with("entry[0].selectors[0]"), "{err}");
    }
}
