//! The whole lab, started the way a presenter starts it: `ztlab up` with a lab config (free ports,
//! a temporary state dir), the built-in catalogue applied through entry-manager, the app chain
//! included. The config is `ztlab`'s own [`LabConfig`], written as TOML. Dropped, it runs
//! `ztlab down`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;
use zt_runtime::app::EnvoyPorts;
use zt_runtime::lab::{Lab, SiteSpec};
use zt_runtime::ports::free_port;
use ztlab::config::{AppConfig, EntryMgmtConfig, LabConfig, OpenBaoConfig, ServicePorts};

/// Knobs of a test lab.
#[derive(Debug, Clone)]
pub struct AppLabOptions {
    /// X.509-SVID TTL of both sites, seconds.
    pub x509_ttl_secs: u64,
    /// TTL of the backend's database credentials, seconds.
    pub db_ttl_secs: u64,
    /// When the backend rotates them, as a fraction of the TTL.
    pub db_rotate_at: f64,
    /// `RUST_LOG` for every service.
    pub rust_log: String,
}

impl Default for AppLabOptions {
    fn default() -> Self {
        Self { x509_ttl_secs: 300, db_ttl_secs: 300, db_rotate_at: 0.5, rust_log: "info".into() }
    }
}

/// Ports of a test lab.
#[derive(Debug, Clone, Copy)]
pub struct AppPorts {
    pub frontend: u16,
    pub frontend_ops: u16,
    pub backend: u16,
    pub backend_ops: u16,
    pub document: u16,
    pub document_ops: u16,
    pub opa: u16,
    pub opa_ops: u16,
    /// The agents runtime's ops port (it has no listener).
    pub agents_ops: u16,
    pub postgres: u16,
    pub openbao: u16,
    pub oidc: u16,
    pub fixture: u16,
    pub frontend_envoy: u16,
    pub frontend_envoy_admin: u16,
    pub backend_envoy: u16,
    pub backend_envoy_admin: u16,
    pub entry_operator: u16,
    /// entry-manager's mTLS gRPC port.
    pub entry_listen: u16,
    pub entry_ops: u16,
    /// The ops ports of the site agents of sites a and b.
    pub site_agent_a_ops: u16,
    pub site_agent_b_ops: u16,
}

impl AppPorts {
    /// Free ports for every listener.
    fn free() -> Self {
        AppPorts {
            frontend: port(),
            frontend_ops: port(),
            backend: port(),
            backend_ops: port(),
            document: port(),
            document_ops: port(),
            opa: port(),
            opa_ops: port(),
            agents_ops: port(),
            postgres: port(),
            openbao: port(),
            oidc: port(),
            fixture: port(),
            frontend_envoy: port(),
            frontend_envoy_admin: port(),
            backend_envoy: port(),
            backend_envoy_admin: port(),
            entry_operator: port(),
            entry_listen: port(),
            entry_ops: port(),
            site_agent_a_ops: port(),
            site_agent_b_ops: port(),
        }
    }
}

/// The lab config for `opts` on ports `p`: two sites in one trust domain, every service, the app
/// chain with the GitHub fixture.
pub fn lab_config(opts: &AppLabOptions, p: &AppPorts) -> LabConfig {
    let site = |name: &str| SiteSpec { x509_svid_ttl_secs: opts.x509_ttl_secs, ..SiteSpec::named(name) };
    let service = |listen: Option<u16>, ops: u16| ServicePorts { listen, ops };
    LabConfig {
        state_dir: None,
        log_level: "INFO".into(),
        ready_timeout_secs: 90,
        sites: vec![site("a"), site("b")],
        services: BTreeMap::from([
            ("opa".to_owned(), service(Some(p.opa), p.opa_ops)),
            ("document".to_owned(), service(Some(p.document), p.document_ops)),
            ("agents".to_owned(), service(None, p.agents_ops)),
            ("frontend".to_owned(), service(Some(p.frontend), p.frontend_ops)),
            ("backend".to_owned(), service(Some(p.backend), p.backend_ops)),
        ]),
        entry_management: EntryMgmtConfig {
            site: "a".into(),
            listen: p.entry_listen,
            operator: p.entry_operator,
            ops: p.entry_ops,
            full_resync_secs: 30,
            agent_ops: BTreeMap::from([("a".to_owned(), p.site_agent_a_ops), ("b".to_owned(), p.site_agent_b_ops)]),
        },
        openbao: Some(OpenBaoConfig { port: p.openbao }),
        app: Some(AppConfig {
            postgres_port: p.postgres,
            oidc_port: p.oidc,
            backend_envoy: EnvoyPorts { listen: p.backend_envoy, admin: p.backend_envoy_admin },
            frontend_envoy: EnvoyPorts { listen: p.frontend_envoy, admin: p.frontend_envoy_admin },
            github_fixture_port: Some(p.fixture),
            github_api_url: "https://api.github.com".into(),
            db_ttl_secs: opts.db_ttl_secs,
            db_max_ttl_secs: 3600,
            db_rotate_at: opts.db_rotate_at,
        }),
    }
}

/// A running lab with the app chain.
#[derive(Debug)]
pub struct AppLab {
    pub dir: TempDir,
    pub ports: AppPorts,
    pub config: PathBuf,
}

fn port() -> u16 {
    free_port().expect("free port")
}

impl AppLab {
    /// Writes the config and runs `ztlab up`; panics with its output if it fails.
    pub fn start(opts: AppLabOptions) -> AppLab {
        let dir = crate::state_dir();
        let p = AppPorts::free();
        let text = toml::to_string(&lab_config(&opts, &p)).expect("lab.toml");
        let config = dir.path().join("lab.toml");
        std::fs::write(&config, text).expect("write lab.toml");
        let lab = AppLab { dir, ports: p, config };
        let out =
            lab.ztlab_env(&["up", "--config", &lab.config.display().to_string()], &[("RUST_LOG", &opts.rust_log)]);
        assert!(out.0, "ztlab up failed:\n{}", out.1);
        lab
    }

    /// The state dir.
    pub fn state(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `ztlab --state-dir <dir> <args>`: (success, stdout + stderr).
    pub fn ztlab(&self, args: &[&str]) -> (bool, String) {
        self.ztlab_env(args, &[])
    }

    fn ztlab_env(&self, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
        let out = Command::new(crate::bin("ztlab"))
            .arg("--state-dir")
            .arg(self.dir.path())
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("run ztlab");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    /// The lab as recorded in its state dir (stop or restart components).
    pub fn lab(&self) -> Lab {
        Lab::open(self.dir.path()).expect("open lab")
    }

    /// `http://127.0.0.1:<frontend><path>`.
    pub fn frontend(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports.frontend)
    }

    /// Every log file's text, concatenated.
    pub fn all_logs(&self) -> String {
        let mut text = String::new();
        if let Ok(rd) = std::fs::read_dir(self.dir.path().join("logs")) {
            for e in rd.flatten() {
                text.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        text
    }
}

impl Drop for AppLab {
    fn drop(&mut self) {
        if let Ok(mut lab) = Lab::open(self.dir.path()) {
            let _ = lab.down_blocking();
        }
    }
}

/// One HTTP request ([`zt_tls::client::web_send`]): (status, body). Status 0 when nothing
/// answered.
pub async fn http(method: &str, url: &str, body: Option<serde_json::Value>, token: Option<&str>) -> (u16, String) {
    let Ok(method) = hyper::Method::from_bytes(method.as_bytes()) else { return (0, "bad method".into()) };
    let client = zt_tls::client::web_client();
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    match zt_tls::client::web_send(&client, method, url, &headers, body.as_ref(), Duration::from_secs(20)).await {
        Ok(r) => (r.status.as_u16(), String::from_utf8_lossy(&r.body).into_owned()),
        Err(e) => (0, e.to_string()),
    }
}

/// [`http`], parsed as JSON (`null` when it is not).
pub async fn http_json(
    method: &str,
    url: &str,
    body: Option<serde_json::Value>,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    let (s, text) = http(method, url, body, token).await;
    (s, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}
