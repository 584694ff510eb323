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
use serde_json::{Value, json};

use crate::binaries::Tool;
use crate::process::{Launch, ProcessRecord};
use crate::{Error, Result, render};

const SERVER_TEMPLATE: &str = include_str!("../../../../infrastructure/local/openbao/server.hcl.tmpl");

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

/// What [`OpenBao::configure_app`] sets up.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AppConfig {
    /// Where the SPIRE OIDC Discovery Provider serves the JWT-SVID keys.
    pub jwks_url: String,
    /// The role (jwt auth role, policy and database role share it), e.g. `backend`.
    pub role: String,
    /// The SPIFFE ID bound to the role (`sub` of the JWT-SVID).
    pub spiffe_id: String,
    /// The audience the JWT-SVID must carry.
    pub audience: String,
    /// The app PostgreSQL's socket directory and port.
    pub pg_socket_dir: PathBuf,
    /// The app PostgreSQL's port.
    pub pg_port: u16,
    /// The password just set for `bao_admin`; OpenBao rotates it right away.
    #[serde(skip)]
    pub admin_password: String,
    /// Default TTL of the database credentials, seconds.
    pub db_ttl_secs: u64,
    /// Maximum TTL of the database credentials, seconds.
    pub db_max_ttl_secs: u64,
}

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
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = "it never answered".to_owned();
        loop {
            if !self.record.is_alive() {
                return Err(crate::wait::not_ready(COMPONENT, &self.record, timeout, "the process exited"));
            }
            if let Some((status, body)) = crate::health::http_get(self.port, "/v1/sys/health").await {
                if matches!(status, 200 | 429 | 472 | 473 | 501 | 503) {
                    match serde_json::from_str::<Health>(&body) {
                        Ok(h) if done(&h) => return Ok(h),
                        Ok(h) => {
                            last = format!(
                                "GET {}/v1/sys/health answered {status} (initialized={}, sealed={}, standby={})",
                                self.addr, h.initialized, h.sealed, h.standby
                            )
                        }
                        Err(e) => last = format!("unexpected /v1/sys/health body: {e}"),
                    }
                } else {
                    last = format!("GET {}/v1/sys/health answered {status}", self.addr);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(crate::wait::not_ready(COMPONENT, &self.record, timeout, &last));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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

    /// Configures what the app chain needs; idempotent:
    /// - `jwt/` auth that verifies JWT-SVIDs with the keys the SPIRE OIDC Discovery Provider
    ///   serves, and the role `cfg.role` bound to the backend's SPIFFE ID (`sub`) and audience;
    /// - the policy `cfg.role`: read its database credentials, its users' GitHub tokens in KV,
    ///   and revoke its own database leases (`sys/leases/revoke/database/creds/<role>/*`, with the
    ///   lease ID in the path; not `sys/leases/revoke`, which would revoke any lease);
    /// - the database secrets engine on the app PostgreSQL (as `bao_admin` over the unix socket;
    ///   OpenBao then rotates that password so that only it knows it) with the role `cfg.role`,
    ///   whose users are members of `app_owner` and are dropped when their lease ends;
    /// - KV v2 at `secret/`;
    /// - the policy [`LEASE_READER`] (`sys/leases/lookup` only) and an orphan periodic token with
    ///   it, written to [`lease_reader_file`] (mode 0600), so that the walkthrough can show
    ///   `bao lease lookup` after the root token is gone; it can read no secret;
    /// - the policy [`LEASE_REVOKER`] (revoke `cfg.role`'s database leases, nothing else) and such
    ///   a token in [`lease_revoker_file`] (0600): the narrow path by which the credential
    ///   revocation drill revokes the backend's lease, as an operator would on a compromise.
    pub async fn configure_app(&self, root_token: &str, cfg: &AppConfig) -> Result<()> {
        let c = self.client();
        let t = Some(root_token);
        let auths = c.call("GET", "/v1/sys/auth", t, None).await?;
        if mount_accessor(&auths, "jwt/").is_none() {
            c.call("POST", "/v1/sys/auth/jwt", t, Some(&json!({"type": "jwt"}))).await?;
        }
        c.call("POST", "/v1/auth/jwt/config", t, Some(&json!({"jwks_url": cfg.jwks_url}))).await?;
        let policy = format!(
            "path \"database/creds/{role}\" {{ capabilities = [\"read\"] }}\n\
             path \"secret/data/github/*\" {{ capabilities = [\"create\", \"read\", \"update\", \"delete\"] }}\n\
             path \"secret/metadata/github/*\" {{ capabilities = [\"read\", \"delete\"] }}\n\
             path \"sys/leases/revoke/database/creds/{role}/*\" {{ capabilities = [\"update\"] }}\n",
            role = cfg.role
        );
        c.set_policy(root_token, &cfg.role, &policy).await?;
        c.call(
            "POST",
            &format!("/v1/auth/jwt/role/{}", cfg.role),
            t,
            Some(&json!({
                "role_type": "jwt",
                "user_claim": "sub",
                "bound_subject": cfg.spiffe_id,
                "bound_audiences": [cfg.audience],
                "token_policies": [cfg.role],
                "token_ttl": "15m",
                "token_max_ttl": "1h",
            })),
        )
        .await?;
        let mounts = c.call("GET", "/v1/sys/mounts", t, None).await?;
        let mounted = |p: &str| mounts.get(p).or_else(|| mounts["data"].get(p)).is_some();
        if !mounted("database/") {
            c.call("POST", "/v1/sys/mounts/database", t, Some(&json!({"type": "database"}))).await?;
        }
        if !mounted("secret/") {
            c.call("POST", "/v1/sys/mounts/secret", t, Some(&json!({"type": "kv", "options": {"version": "2"}})))
                .await?;
        }
        let url = format!(
            "postgresql://{{{{username}}}}:{{{{password}}}}@/app?host={}&port={}&sslmode=disable",
            cfg.pg_socket_dir.display(),
            cfg.pg_port
        );
        c.call(
            "POST",
            "/v1/database/config/app",
            t,
            Some(&json!({
                "plugin_name": "postgresql-database-plugin",
                "connection_url": url,
                "username": "bao_admin",
                "password": cfg.admin_password,
                "password_authentication": "scram-sha-256",
                "allowed_roles": [cfg.role],
                "verify_connection": true,
            })),
        )
        .await?;
        c.call("POST", "/v1/database/rotate-root/app", t, Some(&json!({}))).await?;
        let lookup = "path \"sys/leases/lookup\" { capabilities = [\"update\"] }\n".to_owned();
        self.make_scoped_token(root_token, LEASE_READER, &lookup, "the walkthrough's bao lease lookup").await?;
        let revoke =
            format!("path \"sys/leases/revoke/database/creds/{}/*\" {{ capabilities = [\"update\"] }}\n", cfg.role);
        self.make_scoped_token(root_token, LEASE_REVOKER, &revoke, "the credential revocation drill").await?;
        c.call(
            "POST",
            &format!("/v1/database/roles/{}", cfg.role),
            t,
            Some(&json!({
                "db_name": "app",
                "creation_statements": [
                    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' IN ROLE app_owner;"
                ],
                "revocation_statements": [
                    "REVOKE app_owner FROM \"{{name}}\";",
                    "DROP ROLE IF EXISTS \"{{name}}\";"
                ],
                "default_ttl": cfg.db_ttl_secs,
                "max_ttl": cfg.db_max_ttl_secs,
            })),
        )
        .await?;
        Ok(())
    }

    /// The policy `name` with `rules`, and a token with only it (and `default`, which lets a
    /// token look itself up and renew itself), written to `<dir>/<name>.json` (0600). Orphan, so
    /// that it outlives the root token that made it; periodic, so that it lives while it is
    /// renewed. One such token at a time: the one an earlier configuration made is revoked.
    async fn make_scoped_token(&self, root_token: &str, name: &str, rules: &str, purpose: &str) -> Result<()> {
        let c = self.client();
        let t = Some(root_token);
        c.set_policy(root_token, name, rules).await?;
        let file = scoped_token_file(&self.dir, name);
        let old = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["token"].as_str().map(str::to_owned));
        if let Some(old) = old {
            let revoke = c.vault("POST", "/v1/auth/token/revoke", t, |v| {
                let old = old.clone();
                async move { vaultrs::token::revoke(&v, &old).await }
            });
            let _ = revoke.await;
        }
        let made = c
            .vault("POST", "/v1/auth/token/create-orphan", t, |v| async move {
                let mut opts = vaultrs::api::token::requests::CreateOrphanTokenRequest::builder();
                opts.policies(vec![name.to_owned()])
                    .period("768h")
                    .display_name(name)
                    .meta(std::collections::HashMap::from([("purpose".to_owned(), purpose.to_owned())]));
                vaultrs::token::new_orphan(&v, Some(&mut opts)).await
            })
            .await?;
        let token = made.client_token.as_str();
        if token.is_empty() {
            return Err(Error::Command {
                command: "OpenBao auth/token/create-orphan".into(),
                message: "no client_token in the answer".into(),
            });
        }
        write_private(&file, &json!({"token": token, "policy": name, "addr": self.addr}))?;
        tracing::info!(file = %file.display(), policy = name, "OpenBao scoped token written");
        Ok(())
    }

    /// Configures OpenBao as the lab's OIDC identity provider; idempotent.
    ///
    /// - auth method `userpass/`, with the users of `cfg`;
    /// - one identity entity per user (named after the user) with an alias on `userpass/`, so a
    ///   login maps to that entity;
    /// - identity groups `cfg.groups`, whose members are exactly the configured users that list
    ///   them;
    /// - the issuer (`identity/oidc/config`) `http://127.0.0.1:<port>`, so tokens carry
    ///   `iss = http://127.0.0.1:<port>/v1/identity/oidc`;
    /// - the signing key `cfg.key` (ES256) and the role `cfg.role` with `client_id =
    ///   cfg.audience`, TTL `cfg.ttl`, and claims `groups`, `preferred_username` and `username`;
    /// - the policy `ztlab-oidc-<role>` (read `identity/oidc/token/<role>`), given to each user.
    ///
    /// Returns where relying parties find the issuer, after checking that the discovery
    /// document and the JWKS answer without a token.
    pub async fn configure_identity(&self, root_token: &str, cfg: &IdentityConfig) -> Result<OidcInfo> {
        cfg.validate()?;
        let c = self.client();
        let t = Some(root_token);

        // 1. userpass auth.
        let auths = c.call("GET", "/v1/sys/auth", t, None).await?;
        let accessor = match mount_accessor(&auths, "userpass/") {
            Some(a) => a,
            None => {
                c.call(
                    "POST",
                    "/v1/sys/auth/userpass",
                    t,
                    Some(&json!({"type": "userpass", "description": "ztlab people"})),
                )
                .await?;
                let auths = c.call("GET", "/v1/sys/auth", t, None).await?;
                mount_accessor(&auths, "userpass/").ok_or_else(|| Error::Command {
                    command: format!("OpenBao GET {}/v1/sys/auth", self.addr),
                    message: format!(
                        "userpass/ is not listed after it was enabled\n  log: {}",
                        self.record.log.display()
                    ),
                })?
            }
        };

        // 2. The policy that lets a logged-in user fetch an identity token for the role.
        let policy = format!("ztlab-oidc-{}", cfg.role);
        let rules = format!(
            "# Written by ztlab: fetch an identity token (OIDC JWT) for role {role}.\n\
             path \"identity/oidc/token/{role}\" {{\n  capabilities = [\"read\"]\n}}\n",
            role = cfg.role
        );
        c.set_policy(root_token, &policy, &rules).await?;

        // 3. Users, their entities and aliases.
        let mut entity_ids = Vec::with_capacity(cfg.users.len());
        for u in &cfg.users {
            c.call(
                "POST",
                &format!("/v1/auth/userpass/users/{}", u.username),
                t,
                Some(&json!({
                    "password": u.password,
                    "token_policies": [policy],
                    "token_ttl": "15m",
                    "token_max_ttl": "1h",
                })),
            )
            .await?;
            let id = self.ensure_entity(root_token, &accessor, &u.username).await?;
            entity_ids.push((u, id));
        }

        // 4. Groups, with exactly the configured members.
        for g in &cfg.groups {
            let members: Vec<&str> = entity_ids
                .iter()
                .filter(|(u, _)| u.groups.iter().any(|ug| ug == g))
                .map(|(_, id)| id.as_str())
                .collect();
            c.call(
                "POST",
                &format!("/v1/identity/group/name/{g}"),
                t,
                Some(&json!({
                    "type": "internal",
                    "member_entity_ids": members,
                    "metadata": {"managed-by": "ztlab"},
                })),
            )
            .await?;
        }

        // 5. Issuer, key, role.
        c.call("POST", "/v1/identity/oidc/config", t, Some(&json!({ "issuer": self.addr }))).await?;
        let key_path = format!("/v1/identity/oidc/key/{}", cfg.key);
        let mut client_ids: Vec<String> = match c.send("GET", &key_path, t, None).await? {
            (200, body) => body["data"]["allowed_client_ids"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        if !client_ids.iter().any(|id| id == &cfg.audience || id == "*") {
            client_ids.push(cfg.audience.clone());
        }
        c.call(
            "POST",
            &key_path,
            t,
            Some(&json!({
                "algorithm": "ES256",
                "allowed_client_ids": client_ids,
                "rotation_period": "24h",
                "verification_ttl": "24h",
            })),
        )
        .await?;
        // OpenBao's template syntax: each `{{…}}` becomes a JSON value (string or array), so it
        // is not quoted. These templates are sent to OpenBao; they are not rendered by ztlab.
        let template = format!(
            "{{\"{GROUPS_CLAIM}\": {{{{identity.entity.groups.names}}}}, \
             \"{USERNAME_CLAIM}\": {{{{identity.entity.name}}}}, \
             \"username\": {{{{identity.entity.name}}}}}}"
        );
        c.call(
            "POST",
            &format!("/v1/identity/oidc/role/{}", cfg.role),
            t,
            Some(&json!({
                "key": cfg.key,
                "client_id": cfg.audience,
                "ttl": format!("{}s", cfg.ttl.as_secs()),
                "template": template,
            })),
        )
        .await?;

        // 6. What relying parties see, without a token.
        let info = OidcInfo::for_addr(&self.addr, &cfg.audience);
        let discovery = c.call("GET", "/v1/identity/oidc/.well-known/openid-configuration", None, None).await?;
        if discovery["issuer"].as_str() != Some(info.issuer.as_str())
            || discovery["jwks_uri"].as_str() != Some(info.jwks_url.as_str())
        {
            return Err(Error::Command {
                command: format!("OpenBao GET {}", info.discovery_url),
                message: format!(
                    "expected issuer {} and jwks_uri {}, got {discovery}\n  log: {}",
                    info.issuer,
                    info.jwks_url,
                    self.record.log.display()
                ),
            });
        }
        let jwks = c.call("GET", "/v1/identity/oidc/.well-known/keys", None, None).await?;
        if jwks["keys"].as_array().is_none_or(Vec::is_empty) {
            return Err(Error::Command {
                command: format!("OpenBao GET {}", info.jwks_url),
                message: format!("the JWKS has no keys: {jwks}\n  log: {}", self.record.log.display()),
            });
        }
        Ok(info)
    }

    /// The entity named `username` with an alias `username` on the userpass mount; its id.
    async fn ensure_entity(&self, root_token: &str, accessor: &str, username: &str) -> Result<String> {
        let c = self.client();
        let t = Some(root_token);
        // An alias exists already (a previous run, or a login before the lab configured
        // identity, which creates an entity by itself): keep that entity and name it.
        let (status, found) = c
            .send(
                "POST",
                "/v1/identity/lookup/entity",
                t,
                Some(&json!({"alias_name": username, "alias_mount_accessor": accessor})),
            )
            .await?;
        if status == 200 {
            if let Some(id) = found["data"]["id"].as_str() {
                if found["data"]["name"].as_str() != Some(username) {
                    c.call(
                        "POST",
                        &format!("/v1/identity/entity/id/{id}"),
                        t,
                        Some(&json!({"name": username, "metadata": {"managed-by": "ztlab"}})),
                    )
                    .await?;
                }
                return Ok(id.to_owned());
            }
        } else if status != 204 {
            return Err(c.api_error("POST", "/v1/identity/lookup/entity", status, &found));
        }
        c.call(
            "POST",
            &format!("/v1/identity/entity/name/{username}"),
            t,
            Some(&json!({"metadata": {"managed-by": "ztlab"}})),
        )
        .await?;
        let entity = c.call("GET", &format!("/v1/identity/entity/name/{username}"), t, None).await?;
        let id = entity["data"]["id"]
            .as_str()
            .ok_or_else(|| Error::Command {
                command: format!("OpenBao GET {}/v1/identity/entity/name/{username}", self.addr),
                message: format!("no entity id in {entity}\n  log: {}", self.record.log.display()),
            })?
            .to_owned();
        c.call(
            "POST",
            "/v1/identity/entity-alias",
            t,
            Some(&json!({"name": username, "canonical_id": id, "mount_accessor": accessor})),
        )
        .await?;
        Ok(id)
    }

    /// Logs `username` in with userpass and returns a signed identity token (a JWT) for
    /// `role`. The short-lived OpenBao token used for it is revoked afterwards.
    pub async fn user_token(&self, username: &str, password: &str, role: &str) -> Result<String> {
        let c = self.client();
        let login_path = format!("/v1/auth/userpass/login/{username}");
        let auth = c
            .vault("POST", &login_path, None, |v| async move {
                vaultrs::auth::userpass::login(&v, "userpass", username, password).await
            })
            .await
            .map_err(|e| match e {
                Error::Command { message, .. } => Error::Command {
                    command: format!("OpenBao userpass login of {username:?} at {}", self.addr),
                    message,
                },
                other => other,
            })?;
        let token = auth.client_token;
        let path = format!("/v1/identity/oidc/token/{role}");
        let result = c.call("GET", &path, Some(&token), None).await;
        // Best effort: the JWT is what the caller wants; the OpenBao token has no further use.
        let revoke = c.vault("POST", "/v1/auth/token/revoke-self", Some(&token), |v| async move {
            vaultrs::token::revoke_self(&v).await
        });
        let _ = revoke.await;
        let body = result?;
        body["data"]["token"].as_str().map(str::to_owned).ok_or_else(|| Error::Command {
            command: format!("OpenBao GET {}{path}", self.addr),
            message: format!("no data.token in the answer\n  log: {}", self.record.log.display()),
        })
    }
}

/// One person who logs in to the lab.
#[derive(Clone, PartialEq, Eq)]
pub struct UserSpec {
    /// Login name: lowercase letters, digits, `.`, `_` or `-`. Also the entity name and the
    /// `preferred_username` claim.
    pub username: String,
    /// Password for userpass.
    pub password: String,
    /// Identity groups the user is a member of; each must be in [`IdentityConfig::groups`].
    pub groups: Vec<String>,
}

impl std::fmt::Debug for UserSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserSpec")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("groups", &self.groups)
            .finish()
    }
}

impl UserSpec {
    /// A user with a password and groups.
    pub fn new(username: &str, password: &str, groups: &[&str]) -> Self {
        Self {
            username: username.to_owned(),
            password: password.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }
}

/// What [`OpenBao::configure_identity`] sets up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConfig {
    /// The people.
    pub users: Vec<UserSpec>,
    /// Identity groups to create (and whose members to set).
    pub groups: Vec<String>,
    /// The OIDC role name (tokens come from `identity/oidc/token/<role>`).
    pub role: String,
    /// The role's `client_id`: the tokens' `aud`.
    pub audience: String,
    /// The named signing key.
    pub key: String,
    /// Token lifetime.
    pub ttl: Duration,
}

impl IdentityConfig {
    /// The lab's defaults ([`LAB_GROUPS`], role [`DEFAULT_ROLE`], audience
    /// [`DEFAULT_AUDIENCE`], key [`DEFAULT_KEY`], 15-minute tokens) with these users.
    pub fn lab(users: Vec<UserSpec>) -> Self {
        Self {
            users,
            groups: LAB_GROUPS.iter().map(|g| (*g).to_owned()).collect(),
            role: DEFAULT_ROLE.to_owned(),
            audience: DEFAULT_AUDIENCE.to_owned(),
            key: DEFAULT_KEY.to_owned(),
            ttl: Duration::from_secs(15 * 60),
        }
    }

    fn validate(&self) -> Result<()> {
        fn name_ok(s: &str) -> bool {
            !s.is_empty()
                && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        }
        for (field, value) in [("openbao.identity.role", &self.role), ("openbao.identity.key", &self.key)] {
            if !name_ok(value) {
                return Err(Error::config(
                    field,
                    format!("{value:?} must be lowercase letters, digits, '.', '_' or '-'"),
                ));
            }
        }
        if self.audience.is_empty() || self.audience.contains(char::is_whitespace) {
            return Err(Error::config(
                "openbao.identity.audience",
                format!("{:?} must be non-empty, without spaces", self.audience),
            ));
        }
        if self.ttl < Duration::from_secs(1) {
            return Err(Error::config("openbao.identity.ttl", "must be at least 1 s"));
        }
        for g in &self.groups {
            if !name_ok(g) {
                return Err(Error::config(
                    "openbao.identity.groups",
                    format!("{g:?} must be lowercase letters, digits, '.', '_' or '-'"),
                ));
            }
        }
        for (i, u) in self.users.iter().enumerate() {
            if !name_ok(&u.username) {
                return Err(Error::config(
                    format!("openbao.identity.users[{i}].username"),
                    format!(
                        "{:?} must be lowercase letters, digits, '.', '_' or '-' (userpass lowercases names)",
                        u.username
                    ),
                ));
            }
            if u.password.is_empty() {
                return Err(Error::config(
                    format!("openbao.identity.users[{i}].password"),
                    format!("user {:?} has an empty password", u.username),
                ));
            }
            if self.users[..i].iter().any(|o| o.username == u.username) {
                return Err(Error::config(
                    format!("openbao.identity.users[{i}].username"),
                    format!("{:?} is listed twice", u.username),
                ));
            }
            if let Some(g) = u.groups.iter().find(|g| !self.groups.contains(g)) {
                return Err(Error::config(
                    format!("openbao.identity.users[{i}].groups"),
                    format!(
                        "user {:?} is in group {g:?}, which is not one of the groups ({})",
                        u.username,
                        self.groups.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Where relying parties (the entry-manager) find the issuer, and what its tokens carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcInfo {
    /// The `iss` of every token: `http://127.0.0.1:<port>/v1/identity/oidc`.
    pub issuer: String,
    /// The `aud` of the role's tokens.
    pub audience: String,
    /// The claim with the user's group names: `groups`.
    pub groups_claim: String,
    /// The claim with the user's name: `preferred_username`.
    pub username_claim: String,
    /// `<issuer>/.well-known/openid-configuration`.
    pub discovery_url: String,
    /// `<issuer>/.well-known/keys`.
    pub jwks_url: String,
}

impl OidcInfo {
    /// The URLs of OpenBao's identity-token issuer at `addr` (`http://127.0.0.1:<port>`) when
    /// `identity/oidc/config` has `issuer = addr`.
    pub fn for_addr(addr: &str, audience: &str) -> Self {
        let issuer = format!("{}/v1/identity/oidc", addr.trim_end_matches('/'));
        Self {
            discovery_url: format!("{issuer}/.well-known/openid-configuration"),
            jwks_url: format!("{issuer}/.well-known/keys"),
            issuer,
            audience: audience.to_owned(),
            groups_claim: GROUPS_CLAIM.to_owned(),
            username_claim: USERNAME_CLAIM.to_owned(),
        }
    }
}

/// The accessor of the auth mount `path` (e.g. `userpass/`) in a `GET /v1/sys/auth` answer.
fn mount_accessor(auths: &Value, path: &str) -> Option<String> {
    auths["data"][path]["accessor"].as_str().or_else(|| auths[path]["accessor"].as_str()).map(str::to_owned)
}

/// Bumped whenever [`OpenBao::configure_app`] changes what it configures, so that labs
/// configured by an older version are configured again.
pub const APP_CONFIG_VERSION: u32 = 2;

/// The policy of the token that may look leases up and do nothing else.
pub const LEASE_READER: &str = "lease-reader";

/// The policy of the token that may revoke the backend's database leases and do nothing else.
pub const LEASE_REVOKER: &str = "lease-revoker";

/// `<dir>/<policy>.json`: `{"token","policy","addr"}` of a scoped token.
fn scoped_token_file(dir: &Path, policy: &str) -> PathBuf {
    dir.join(format!("{policy}.json"))
}

/// `<dir>/lease-reader.json`: the [`LEASE_READER`] token.
pub fn lease_reader_file(dir: &Path) -> PathBuf {
    scoped_token_file(dir, LEASE_READER)
}

/// `<dir>/lease-revoker.json`: the [`LEASE_REVOKER`] token.
pub fn lease_revoker_file(dir: &Path) -> PathBuf {
    scoped_token_file(dir, LEASE_REVOKER)
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

/// The `errors` of an OpenBao error answer, on one line.
fn api_errors(body: &Value) -> String {
    match body["errors"].as_array() {
        Some(errors) if !errors.is_empty() => errors
            .iter()
            .map(|e| {
                let s = e.as_str().map_or_else(|| e.to_string(), str::to_owned);
                // "1 error occurred:\n\t* permission denied\n\n" → "permission denied"
                let lines: Vec<&str> = s
                    .lines()
                    .map(|l| l.trim().trim_start_matches("* "))
                    .filter(|l| !l.is_empty() && !l.ends_with("error occurred:") && !l.ends_with("errors occurred:"))
                    .collect();
                lines.join("; ")
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ if body.is_null() => "(empty body)".to_owned(),
        _ => body.to_string(),
    }
}

/// What vaultrs said, in the words [`Client::call`] uses: `HTTP <status>: <OpenBao's errors>`,
/// or why there was no answer.
fn vault_message(e: vaultrs::error::ClientError) -> String {
    use rustify::errors::ClientError as Rest;
    use vaultrs::error::ClientError as Vault;
    match e {
        Vault::APIError { code, errors } => format!("HTTP {code}: {}", api_errors(&json!({ "errors": errors }))),
        Vault::RestClientError { source: Rest::ServerResponseError { code, content } } => {
            let body = content
                .as_deref()
                .map(|c| serde_json::from_str(c).unwrap_or_else(|_| Value::String(c.to_owned())))
                .unwrap_or(Value::Null);
            format!("HTTP {code}: {}", api_errors(&body))
        }
        other => {
            let mut parts = vec![other.to_string()];
            let mut cur = std::error::Error::source(&other);
            while let Some(e) = cur {
                parts.push(e.to_string());
                cur = e.source();
            }
            format!("no answer: {}", parts.join(": "))
        }
    }
}

/// OpenBao's API on loopback: JSON in, status and JSON out.
struct Client<'a> {
    port: u16,
    /// Talk over this unix socket (the admin listener) instead of TCP.
    socket: Option<PathBuf>,
    record: &'a ProcessRecord,
}

impl Client<'_> {
    /// One request; the status and the JSON body (`null` when empty). Errors only when nothing
    /// (or garbage) answered.
    async fn send(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Result<(u16, Value)> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let command = format!("OpenBao {method} {url}");
        let Ok(method) = reqwest::Method::from_bytes(method.as_bytes()) else {
            return Err(self.failed(command, "not an HTTP method".into()));
        };
        let http = match &self.socket {
            Some(socket) => zt_tls::client::unix_socket_client(socket),
            None => zt_tls::client::web_client(),
        };
        let headers: Vec<(&str, &str)> = token.map(|t| vec![("x-vault-token", t)]).unwrap_or_default();
        let resp = match zt_tls::client::web_send(&http, method, &url, &headers, body, REQUEST_TIMEOUT).await {
            Ok(resp) => resp,
            Err(zt_tls::ClientError::Timeout { .. }) => {
                return Err(self.failed(command, format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())));
            }
            Err(e) => return Err(self.failed(command, format!("no answer: {e}"))),
        };
        let text = String::from_utf8_lossy(&resp.body);
        let text = text.trim();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
        };
        Ok((resp.status.as_u16(), value))
    }

    /// `op` on a vaultrs client with `token` (none: unauthenticated), within the request
    /// timeout; `method` and `path` name the call in errors, as [`Client::call`] does.
    async fn vault<T, F, Fut>(&self, method: &str, path: &str, token: Option<&str>, op: F) -> Result<T>
    where
        F: FnOnce(vaultrs::client::VaultClient) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, vaultrs::error::ClientError>>,
    {
        let command = format!("OpenBao {method} http://127.0.0.1:{}{path}", self.port);
        let http = zt_tls::client::web_client();
        let addr = format!("http://127.0.0.1:{}", self.port);
        let client = zt_tls::client::vault_client(&http, &addr, token.unwrap_or_default())
            .map_err(|e| self.failed(command.clone(), e.to_string()))?;
        match tokio::time::timeout(REQUEST_TIMEOUT, op(client)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.failed(command, vault_message(e))),
            Err(_) => Err(self.failed(command, format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()))),
        }
    }

    /// The ACL policy `name` = `rules` (vaultrs writes it at `sys/policy/<name>`).
    async fn set_policy(&self, token: &str, name: &str, rules: &str) -> Result<()> {
        self.vault("PUT", &format!("/v1/sys/policy/{name}"), Some(token), |v| async move {
            vaultrs::sys::policy::set(&v, name, rules).await
        })
        .await
    }

    /// [`Client::send`], and any status but 2xx is an error with OpenBao's messages.
    async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Result<Value> {
        let (status, value) = self.send(method, path, token, body).await?;
        if (200..300).contains(&status) { Ok(value) } else { Err(self.api_error(method, path, status, &value)) }
    }

    fn api_error(&self, method: &str, path: &str, status: u16, body: &Value) -> Error {
        self.failed(
            format!("OpenBao {method} http://127.0.0.1:{}{path}", self.port),
            format!("HTTP {status}: {}", api_errors(body)),
        )
    }

    fn failed(&self, command: String, message: String) -> Error {
        Error::Command { command, message: format!("{message}\n  log: {}", self.record.log.display()) }
    }
}

#[cfg(test)]
mod tests {
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
