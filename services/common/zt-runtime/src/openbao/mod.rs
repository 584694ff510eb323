//! OpenBao: one real server (not dev mode) started as a local process, initialised and unsealed
//! by the lab, and configured as the lab's OIDC identity provider.
//!
//! - [`start`] renders `infrastructure/local/openbao/server.hcl.tmpl` into `<dir>/openbao.hcl`
//!   (raft storage under `<dir>/data`, plain HTTP on `127.0.0.1:<port>`), starts `bao server`,
//!   initialises it once (1 key share, threshold 1, written to `<dir>/unseal.json` with mode
//!   0600), unseals it, and returns when it is unsealed and active. Started again on the same
//!   dir, it unseals itself from that key file.
//! - [`OpenBao::configure_identity`] makes OpenBao the OIDC issuer people log in with:
//!   userpass users, one identity entity (with a userpass alias) per user, identity groups, a
//!   signing key and a role whose tokens carry a `groups` claim. It is idempotent (level
//!   triggered: the groups' members are set to exactly the configured users).
//! - [`OpenBao::user_token`] logs a user in with userpass and returns a signed identity token
//!   (a JWT) for a role.
//!
//! Everything goes through OpenBao's HTTP API on loopback (plain HTTP), on the reqwest client
//! that `zt_tls::client` builds: through vaultrs where it has the call (init, unseal, policies,
//! tokens, userpass login), and as plain JSON requests ([`Client::send`]) where it has not or
//! does not fit: `sys/health` (readiness reads the body of 429, 501 and 503 answers too, which
//! vaultrs turns into errors without it), the jwt auth role and config, mounts, the database
//! engine, identity entities, groups and OIDC (issuer, keys, roles, tokens), and
//! `sys/generate-root` (no vaultrs call), which goes to the admin listener's UNIX socket without
//! a token.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::binaries::Tool;
use crate::process::{Launch, ProcessRecord};
use crate::{Error, Result, render};

mod client;
mod identity;
mod secrets;

use client::Client;
pub use identity::{IdentityConfig, OidcInfo, UserSpec};
pub use secrets::{APP_CONFIG_VERSION, AppConfig, LEASE_READER, LEASE_REVOKER, lease_reader_file, lease_revoker_file};

const SERVER_TEMPLATE: &str = include_str!("../../../../../infrastructure/local/openbao/server.hcl.tmpl");

/// The component name used in errors.
const COMPONENT: &str = "openbao";

/// How long the server may take to answer `/v1/sys/health` after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long it may take to become active after unsealing (raft leader election).
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of one API request. `sys/init` waits for the first raft leader election.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The identity groups of the lab, from most to least privileged.
pub const LAB_GROUPS: [&str; 4] = ["ztlab-admins", "ztlab-operators", "ztlab-developers", "ztlab-viewers"];
/// The role whose tokens the entry-manager accepts.
pub const DEFAULT_ROLE: &str = "entry-manager";
/// The audience (`aud`, the role's `client_id`) of the entry-manager's tokens.
pub const DEFAULT_AUDIENCE: &str = "ztlab-entry-manager";
/// The named signing key.
pub const DEFAULT_KEY: &str = "ztlab";
/// The claim that lists the user's identity groups.
pub const GROUPS_CLAIM: &str = "groups";
/// The claim with the user's name (also in `username`).
pub const USERNAME_CLAIM: &str = "preferred_username";

/// Decodes `sys/generate-root`'s `encoded_token`: base64 of the token XOR the one-time password.
fn decode_root_token(encoded: &str, otp: &str) -> Option<String> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded.trim_end_matches('=')).ok()?;
    if raw.len() != otp.len() {
        return None;
    }
    let token: Vec<u8> = raw.iter().zip(otp.bytes()).map(|(a, b)| a ^ b).collect();
    String::from_utf8(token).ok().filter(|t| !t.is_empty())
}

/// `<dir>/admin.sock`: the admin listener (generate-root).
pub fn admin_socket(dir: &Path) -> PathBuf {
    dir.join("admin.sock")
}

/// `<dir>/openbao.hcl`: the rendered server config.
pub fn config_path(dir: &Path) -> PathBuf {
    dir.join("openbao.hcl")
}

/// `<dir>/audit.log` (mode 0600): OpenBao's file audit device, one JSON line per request and
/// response, secret values HMAC'd.
pub fn audit_log(dir: &Path) -> PathBuf {
    dir.join("audit.log")
}

/// `<dir>/data`: raft storage.
pub fn data_dir(dir: &Path) -> PathBuf {
    dir.join("data")
}

/// `<dir>/unseal.json` (mode 0600): the unseal key and the root token.
pub fn key_file(dir: &Path) -> PathBuf {
    dir.join("unseal.json")
}

/// `<dir>/cluster-port`: the raft cluster port, kept across restarts.
fn cluster_port_file(dir: &Path) -> PathBuf {
    dir.join("cluster-port")
}

/// What `sys/init` returned, as kept in [`key_file`].
#[derive(Clone, Serialize, Deserialize)]
struct Keys {
    /// Unseal keys, base64 (one: 1 share, threshold 1).
    keys_base64: Vec<String>,
    /// The initial root token.
    root_token: String,
}

/// `GET /v1/sys/health`, as far as the lab cares.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Health {
    /// `sys/init` has been done.
    pub initialized: bool,
    /// The server is sealed.
    pub sealed: bool,
    /// The server is not (yet) the active node.
    pub standby: bool,
    /// The server's version.
    #[serde(default)]
    pub version: String,
}

/// A running OpenBao server that the lab started, unsealed and active.
#[derive(Debug, Clone)]
pub struct OpenBao {
    /// `http://127.0.0.1:<port>`.
    pub addr: String,
    /// The API port on 127.0.0.1.
    pub port: u16,
    /// Its directory: config, `data/`, `unseal.json`.
    pub dir: PathBuf,
    /// The process.
    pub record: ProcessRecord,
}

/// Renders the server config into `<dir>/openbao.hcl` and returns its path.
pub fn write_config(dir: &Path, port: u16, cluster_port: u16) -> Result<PathBuf> {
    let text = render(
        "openbao/server.hcl.tmpl",
        SERVER_TEMPLATE,
        &[
            ("data_dir", data_dir(dir).display().to_string()),
            ("node_id", "ztlab-openbao".into()),
            ("port", port.to_string()),
            ("cluster_port", cluster_port.to_string()),
            ("log_level", "info".into()),
            ("admin_socket", admin_socket(dir).display().to_string()),
            ("audit_log", audit_log(dir).display().to_string()),
        ],
    )?;
    let path = config_path(dir);
    std::fs::write(&path, text).map_err(Error::io(format!("writing {}", path.display())))?;
    Ok(path)
}

/// The raft cluster port: the one used before if it is still free, otherwise a new free one.
/// A single raft node votes for itself, so a changed cluster port is harmless; keeping it only
/// keeps the config stable across restarts.
fn cluster_port(dir: &Path, api_port: u16) -> Result<u16> {
    let file = cluster_port_file(dir);
    if let Some(p) = std::fs::read_to_string(&file)
        .ok()
        .and_then(|s| s.trim().parse::<u16>().ok())
        .filter(|p| *p != api_port && crate::ports::is_free(*p))
    {
        return Ok(p);
    }
    let mut p = crate::ports::free_port()?;
    while p == api_port {
        p = crate::ports::free_port()?;
    }
    std::fs::write(&file, p.to_string()).map_err(Error::io(format!("writing {}", file.display())))?;
    Ok(p)
}

/// Starts OpenBao on `127.0.0.1:<port>` with its files in `dir` and its output appended to
/// `log`; initialises it if needed, unseals it, and returns once it is unsealed and active.
///
/// If anything fails after the process was started, the process is stopped before the error
/// is returned, so no server is left behind without a handle.
pub async fn start(dir: &Path, port: u16, log: PathBuf) -> Result<OpenBao> {
    let program = Tool::Bao.require()?;
    crate::ports::ensure_free("openbao.port", port)?;
    for d in [dir.to_path_buf(), data_dir(dir)] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&d)
            .map_err(Error::io(format!("creating {}", d.display())))?;
    }
    let cluster_port = cluster_port(dir, port)?;
    let config = write_config(dir, port, cluster_port)?;
    let record = crate::process::spawn(&Launch {
        program,
        args: vec!["server".into(), format!("-config={}", config.display())],
        env: vec![],
        cwd: Some(dir.to_path_buf()),
        log,
        user: None,
    })?;
    let bao = OpenBao { addr: format!("http://127.0.0.1:{port}"), port, dir: dir.to_path_buf(), record };
    match bao.bring_up().await {
        Ok(()) => Ok(bao),
        Err(e) => {
            bao.stop().await;
            Err(e)
        }
    }
}

impl OpenBao {
    /// Stops the server (SIGTERM, then SIGKILL after 10 s), by pid and start time only.
    pub async fn stop(&self) {
        self.record.stop(Duration::from_secs(10)).await;
    }

    /// `<dir>/unseal.json`.
    pub fn key_file(&self) -> PathBuf {
        key_file(&self.dir)
    }

    /// The root token from `<dir>/unseal.json`.
    pub fn root_token(&self) -> Result<String> {
        Ok(read_keys(&self.dir, &self.record)?.root_token)
    }

    /// `GET /v1/sys/health` now.
    pub async fn health(&self) -> Result<Health> {
        let (status, body) = self.client().send("GET", "/v1/sys/health", None, None).await?;
        serde_json::from_value(body).map_err(|e| Error::Command {
            command: format!("OpenBao GET {}/v1/sys/health", self.addr),
            message: format!("HTTP {status}: unexpected body: {e}\n  log: {}", self.record.log.display()),
        })
    }

    fn client(&self) -> Client<'_> {
        Client { port: self.port, socket: None, record: &self.record }
    }

    /// Waits for the API, initialises if needed, unseals, waits until active.
    async fn bring_up(&self) -> Result<()> {
        let health = self.wait_health(START_TIMEOUT, |_| true).await?;
        if !health.initialized {
            self.init().await?;
        }
        let health = self.health().await?;
        if health.sealed {
            self.unseal().await?;
        }
        self.wait_health(ACTIVE_TIMEOUT, |h| !h.sealed && !h.standby).await?;
        Ok(())
    }

    /// Polls `/v1/sys/health` until it answers with one of the statuses OpenBao uses (200
    /// active, 429 standby, 472/473 replication standbys, 501 not initialised, 503 sealed) and
    /// `done` holds. Fails early if the process exits.
    async fn wait_health(&self, timeout: Duration, done: impl Fn(&Health) -> bool) -> Result<Health> {
        use crate::wait::{Check, POLL_EVERY, poll_until};
        let done = &done;
        poll_until(timeout, POLL_EVERY, || async move {
            if !self.record.is_alive() {
                return Check::Failed("the process exited".to_owned());
            }
            let Some((status, body)) = crate::health::http_get(self.port, "/v1/sys/health").await else {
                return Check::NotYet("it never answered".to_owned());
            };
            if !matches!(status, 200 | 429 | 472 | 473 | 501 | 503) {
                return Check::NotYet(format!("GET {}/v1/sys/health answered {status}", self.addr));
            }
            match serde_json::from_str::<Health>(&body) {
                Ok(h) if done(&h) => Check::Done(h),
                Ok(h) => Check::NotYet(format!(
                    "GET {}/v1/sys/health answered {status} (initialized={}, sealed={}, standby={})",
                    self.addr, h.initialized, h.sealed, h.standby
                )),
                Err(e) => Check::NotYet(format!("unexpected /v1/sys/health body: {e}")),
            }
        })
        .await
        .map_err(|why| crate::wait::not_ready(COMPONENT, &self.record, timeout, &why))
    }

    /// `PUT /v1/sys/init` with one key share, and writes the key file (mode 0600).
    async fn init(&self) -> Result<()> {
        let file = self.key_file();
        if file.exists() {
            tracing::warn!(
                file = %file.display(),
                "OpenBao is not initialised but a key file exists (data dir removed?); replacing it"
            );
        }
        let c = self.client();
        let init = c.vault("POST", "/v1/sys/init", None, |v| async move {
            vaultrs::sys::start_initialization(&v, 1, 1, None).await
        });
        let init = init.await?;
        let keys = Keys { keys_base64: init.keys_base64, root_token: init.root_token };
        write_private(&file, &keys)?;
        tracing::info!(file = %file.display(), "OpenBao initialised; unseal key and root token written");
        Ok(())
    }

    /// Unseals the server again if it is sealed (someone ran `bao operator seal`), and waits
    /// until it is active.
    pub async fn ensure_unsealed(&self) -> Result<()> {
        if self.health().await?.sealed {
            self.unseal().await?;
        }
        self.wait_health(ACTIVE_TIMEOUT, |h| !h.sealed && !h.standby).await?;
        Ok(())
    }

    /// `PUT /v1/sys/unseal` with the key from the key file.
    async fn unseal(&self) -> Result<()> {
        let keys = read_keys(&self.dir, &self.record)?;
        let Some(key) = keys.keys_base64.first() else {
            return Err(Error::Command {
                command: format!("unsealing OpenBao at {}", self.addr),
                message: format!("{} holds no unseal key", self.key_file().display()),
            });
        };
        let key = key.clone();
        let c = self.client();
        let status = c
            .vault("PUT", "/v1/sys/unseal", None, |v| {
                let key = key.clone();
                async move { vaultrs::sys::unseal(&v, Some(key), None, None).await }
            })
            .await?;
        if status.sealed {
            return Err(Error::Command {
                command: format!("OpenBao PUT {}/v1/sys/unseal", self.addr),
                message: format!(
                    "still sealed after the key from {} was given (wrong key for this data dir?): progress {} of {}\n  log: {}",
                    self.key_file().display(),
                    status.progress,
                    status.threshold,
                    self.record.log.display()
                ),
            });
        }
        Ok(())
    }

    /// A root token for configuration: the one `init` wrote, while it is still there, else a new
    /// one from `sys/generate-root` with the unseal key (the lab holds the only key share). Revoke
    /// it with [`OpenBao::revoke_root`] when done: the root token is used only to configure.
    pub async fn admin_token(&self) -> Result<String> {
        let keys = read_keys(&self.dir, &self.record)?;
        let c = Client { port: self.port, socket: Some(admin_socket(&self.dir)), record: &self.record };
        if !keys.root_token.is_empty() {
            let (status, _) = c.send("GET", "/v1/auth/token/lookup-self", Some(&keys.root_token), None).await?;
            if status == 200 {
                return Ok(keys.root_token);
            }
        }
        let key = keys.keys_base64.first().cloned().ok_or_else(|| Error::Command {
            command: "generating an OpenBao root token".into(),
            message: format!("{} holds no unseal key", self.key_file().display()),
        })?;
        // A stale attempt (an earlier run that died half-way) would block a new one.
        let _ = c.send("DELETE", "/v1/sys/generate-root/attempt", None, None).await?;
        let attempt = c.call("PUT", "/v1/sys/generate-root/attempt", None, Some(&json!({}))).await?;
        let (nonce, otp) = (attempt["nonce"].as_str().unwrap_or_default(), attempt["otp"].as_str().unwrap_or_default());
        let done =
            c.call("PUT", "/v1/sys/generate-root/update", None, Some(&json!({"key": key, "nonce": nonce}))).await?;
        let encoded = done["encoded_token"].as_str().unwrap_or_default();
        decode_root_token(encoded, otp).ok_or_else(|| Error::Command {
            command: "OpenBao sys/generate-root".into(),
            message: format!("could not decode the generated root token: {done}"),
        })
    }

    /// Revokes a root token (`auth/token/revoke-self`) and removes the initial one from the key
    /// file, which then holds only the unseal key.
    pub async fn revoke_root(&self, token: &str) -> Result<()> {
        self.client()
            .vault("POST", "/v1/auth/token/revoke-self", Some(token), |v| async move {
                vaultrs::token::revoke_self(&v).await
            })
            .await?;
        let mut keys = read_keys(&self.dir, &self.record)?;
        if !keys.root_token.is_empty() {
            keys.root_token.clear();
            write_private(&self.key_file(), &keys)?;
        }
        tracing::info!("OpenBao root token revoked");
        Ok(())
    }
}

fn write_private(path: &Path, value: &impl Serialize) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    let text = serde_json::to_vec_pretty(value)
        .map_err(|e| Error::Io { context: format!("encoding {}", path.display()), source: e.into() })?;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(Error::io(format!("creating {}", tmp.display())))?;
    f.write_all(&text).and_then(|()| f.sync_all()).map_err(Error::io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(Error::io(format!("renaming {} to {}", tmp.display(), path.display())))
}

fn read_keys(dir: &Path, record: &ProcessRecord) -> Result<Keys> {
    let path = key_file(dir);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::Command {
        command: format!("unsealing OpenBao in {}", dir.display()),
        message: format!(
            "it is initialised but its key file {} cannot be read ({e}); without it the data in {} cannot be unsealed: remove {} to start over\n  log: {}",
            path.display(),
            data_dir(dir).display(),
            dir.display(),
            record.log.display()
        ),
    })?;
    // Tighten the mode if someone loosened it.
    if let Ok(meta) = std::fs::metadata(&path)
        && meta.permissions().mode() & 0o077 != 0
    {
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    serde_json::from_str(&text).map_err(|e| Error::Command {
        command: format!("reading {}", path.display()),
        message: format!("not an OpenBao key file: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::client::api_errors;
    use super::*;

    #[test]
    fn config_renders_loopback_raft() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_config(dir.path(), 18200, 18201).expect("config");
        let text = std::fs::read_to_string(path).expect("read");
        assert!(text.contains("storage \"raft\""), "{text}");
        assert!(text.contains("address         = \"127.0.0.1:18200\""), "{text}");
        assert!(text.contains("api_addr     = \"http://127.0.0.1:18200\""), "{text}");
        assert!(text.contains(&format!("path    = \"{}\"", data_dir(dir.path()).display())), "{text}");
    }

    #[test]
    fn api_errors_are_one_line() {
        let body = json!({"errors": ["1 error occurred:\n\t* permission denied\n\n"]});
        assert_eq!(api_errors(&body), "permission denied");
        let body = json!({"errors": ["invalid username or password"]});
        assert_eq!(api_errors(&body), "invalid username or password");
    }

    #[test]
    fn identity_config_is_checked() {
        let ok = IdentityConfig::lab(vec![UserSpec::new("alice", "s3cret", &["ztlab-admins"])]);
        assert!(ok.validate().is_ok());
        let bad_group = IdentityConfig::lab(vec![UserSpec::new("alice", "pw", &["root"])]);
        let err = bad_group.validate().expect_err("unknown group");
        assert!(err.to_string().contains("\"root\""), "{err}");
        let upper = IdentityConfig::lab(vec![UserSpec::new("Alice", "pw", &[])]);
        assert!(upper.validate().is_err());
        assert!(!format!("{:?}", ok.users[0]).contains("s3cret"));
    }

    #[test]
    fn oidc_urls() {
        let info = OidcInfo::for_addr("http://127.0.0.1:8200", "aud");
        assert_eq!(info.issuer, "http://127.0.0.1:8200/v1/identity/oidc");
        assert_eq!(info.discovery_url, "http://127.0.0.1:8200/v1/identity/oidc/.well-known/openid-configuration");
        assert_eq!(info.jwks_url, "http://127.0.0.1:8200/v1/identity/oidc/.well-known/keys");
    }
}
