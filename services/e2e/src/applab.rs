//! The whole lab, started the way a presenter starts it: `ztlab up` with a lab config (free ports,
//! a temporary state dir), the built-in catalogue applied through entry-manager, the app chain
//! included. Dropped, it runs `ztlab down`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;
use zt_runtime::lab::Lab;
use zt_runtime::ports::free_port;

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
    pub opa: u16,
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
        let p = AppPorts {
            frontend: port(),
            frontend_ops: port(),
            backend: port(),
            backend_ops: port(),
            document: port(),
            opa: port(),
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
        };
        let site = |name: &str| {
            format!(
                "[[sites]]\nname = \"{name}\"\ntrust_domain = \"ztlab.test\"\nshared_root = true\n\
                 x509_svid_ttl_secs = {}\njwt_svid_ttl_secs = 300\nnode_alias_path = \"/ztlab/nodes/local\"\n\n",
                opts.x509_ttl_secs
            )
        };
        let text = format!(
            "log_level = \"INFO\"\nready_timeout_secs = 90\n\n{a}{b}\
             [services.opa]\nlisten = {opa}\nops = {}\n\n\
             [services.document]\nlisten = {doc}\nops = {}\n\n\
             [services.agents]\nops = {}\n\n\
             [services.frontend]\nlisten = {fe}\nops = {fe_ops}\n\n\
             [services.backend]\nlisten = {be}\nops = {be_ops}\n\n\
             [openbao]\nport = {bao}\n\n\
             [entry_management]\nsite = \"a\"\nlisten = {em}\noperator = {op}\nops = {}\nfull_resync_secs = 30\n\n\
             [entry_management.agent_ops]\na = {}\nb = {}\n\n\
             [app]\npostgres_port = {pg}\noidc_port = {oidc}\n\
             backend_envoy = {{ listen = {bel}, admin = {bea} }}\n\
             frontend_envoy = {{ listen = {fel}, admin = {fea} }}\n\
             github_fixture_port = {fx}\ndb_ttl_secs = {ttl}\ndb_max_ttl_secs = 3600\ndb_rotate_at = {rot}\n",
            port(),
            port(),
            port(),
            port(),
            port(),
            port(),
            a = site("a"),
            b = site("b"),
            opa = p.opa,
            doc = p.document,
            fe = p.frontend,
            fe_ops = p.frontend_ops,
            be = p.backend,
            be_ops = p.backend_ops,
            bao = p.openbao,
            op = p.entry_operator,
            em = p.entry_listen,
            pg = p.postgres,
            oidc = p.oidc,
            bel = p.backend_envoy,
            bea = p.backend_envoy_admin,
            fel = p.frontend_envoy,
            fea = p.frontend_envoy_admin,
            fx = p.fixture,
            ttl = opts.db_ttl_secs,
            rot = opts.db_rotate_at,
        );
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
