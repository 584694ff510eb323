//! The backend's configuration: defaults, then the TOML file, then `ZT_*` variables (nested
//! keys with `__`, for example `ZT_DATABASE__CERT_DIR`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use zt_identity::SpiffeId;
use zt_service::config::ConfigError;
use zt_service::workload::WorkloadSettings;

/// Configuration of the backend.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Workload API socket, trust domain, ops listener (`ZT_SPIFFE_ENDPOINT_SOCKET`,
    /// `ZT_TRUST_DOMAIN`, `ZT_SVID_WAIT_SECS`, `ZT_OPS_ADDR`).
    #[serde(flatten)]
    pub workload: WorkloadSettings,
    /// The plain-HTTP API listener, reached only by the backend's Envoy (`ZT_LISTEN_ADDR`).
    pub listen_addr: String,
    /// PostgreSQL.
    pub database: DatabaseSettings,
    /// OpenBao.
    pub openbao: OpenBaoSettings,
    /// User tokens.
    pub tokens: TokenSettings,
    /// GitHub API.
    pub github: GithubSettings,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            workload: WorkloadSettings::default(),
            listen_addr: "127.0.0.1:8090".into(),
            database: DatabaseSettings::default(),
            openbao: OpenBaoSettings::default(),
            tokens: TokenSettings::default(),
            github: GithubSettings::default(),
        }
    }
}

/// PostgreSQL (`ZT_DATABASE__*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseSettings {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database name.
    pub name: String,
    /// The directory where spiffe-helper writes `svid.pem`, `svid_key.pem` and
    /// `svid_bundle.pem` for the backend. Required.
    pub cert_dir: PathBuf,
    /// The SPIFFE ID PostgreSQL must present. Empty means `spiffe://<td>/ns/demo/sa/postgres`.
    pub server_spiffe_id: String,
    /// Connections per pool.
    pub pool_size: usize,
    /// Timeout to connect (and to wait for a pooled connection), for example `5s`.
    #[serde(with = "zt_service::config::duration")]
    pub connect_timeout: Duration,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 5433,
            name: "app".into(),
            cert_dir: PathBuf::new(),
            server_spiffe_id: String::new(),
            pool_size: 8,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// OpenBao (`ZT_OPENBAO__*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct OpenBaoSettings {
    /// OpenBao's address.
    pub addr: String,
    /// Mount of the JWT auth method.
    pub jwt_mount: String,
    /// Role of the JWT auth method.
    pub role: String,
    /// Audience of the JWT-SVID presented to OpenBao.
    pub audience: String,
    /// Mount of the database secrets engine.
    pub db_mount: String,
    /// Role of the database secrets engine.
    pub db_role: String,
    /// Mount of the KV v2 engine (GitHub tokens).
    pub kv_mount: String,
    /// When to rotate database credentials, as a fraction of the lease's TTL (0.83 of 1 h is
    /// about 50 min).
    pub rotate_at: f64,
    /// Timeout of each OpenBao request.
    #[serde(with = "zt_service::config::duration")]
    pub timeout: Duration,
}

impl Default for OpenBaoSettings {
    fn default() -> Self {
        Self {
            addr: "http://127.0.0.1:8200".into(),
            jwt_mount: "jwt".into(),
            role: "backend".into(),
            audience: "openbao".into(),
            db_mount: "database".into(),
            db_role: "backend".into(),
            kv_mount: "secret".into(),
            rotate_at: 0.83,
            timeout: Duration::from_secs(5),
        }
    }
}

/// User tokens (`ZT_TOKENS__*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenSettings {
    /// The ES256 signing key (PKCS#8 PEM), created (0600) if missing.
    pub key_file: PathBuf,
    /// `iss` of the tokens.
    pub issuer: String,
    /// Token lifetime, for example `1h`.
    #[serde(with = "zt_service::config::duration")]
    pub ttl: Duration,
}

impl Default for TokenSettings {
    fn default() -> Self {
        let cwd = std::env::current_dir().unwrap_or_default();
        Self {
            key_file: cwd.join("backend").join("user-token.pem"),
            issuer: "ztlab-backend".into(),
            ttl: Duration::from_secs(3600),
        }
    }
}

/// GitHub (`ZT_GITHUB__*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GithubSettings {
    /// The REST API's base URL.
    pub api_url: String,
    /// Whether `api_url` is the github-fixture test double (reported in responses so that the
    /// UI labels it). A response with `x-ztlab-fixture: github` counts as a fixture too.
    pub fixture: bool,
    /// Timeout of each GitHub request.
    #[serde(with = "zt_service::config::duration")]
    pub timeout: Duration,
}

impl Default for GithubSettings {
    fn default() -> Self {
        Self { api_url: "https://api.github.com".into(), fixture: false, timeout: Duration::from_secs(10) }
    }
}

impl Config {
    /// Checks the settings that have no usable default, and ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.workload.trust_domain()?;
        if self.database.cert_dir.as_os_str().is_empty() {
            return Err(ConfigError::field(
                "database.cert_dir",
                "not set: set ZT_DATABASE__CERT_DIR to the directory where the backend's spiffe-helper writes svid.pem",
            ));
        }
        self.pg_server_id()?;
        if self.database.pool_size == 0 {
            return Err(ConfigError::field("database.pool_size", "must be at least 1"));
        }
        let r = self.openbao.rotate_at;
        if !(r > 0.0 && r < 1.0) {
            return Err(ConfigError::field("openbao.rotate_at", format!("{r} is not between 0 and 1 (exclusive)")));
        }
        for (field, url) in [("openbao.addr", &self.openbao.addr), ("github.api_url", &self.github.api_url)] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::field(field, format!("{url:?} is not an http:// or https:// URL")));
            }
        }
        if self.tokens.ttl.is_zero() {
            return Err(ConfigError::field("tokens.ttl", "must be more than 0"));
        }
        Ok(())
    }

    /// The SPIFFE ID PostgreSQL must present.
    pub fn pg_server_id(&self) -> Result<SpiffeId, ConfigError> {
        let field = "database.server_spiffe_id";
        if self.database.server_spiffe_id.is_empty() {
            let td = self.workload.trust_domain()?;
            return zt_identity::lab::id(td.as_str(), "/ns/demo/sa/postgres").map_err(|e| ConfigError::field(field, e));
        }
        zt_identity::parse_id(field, &self.database.server_spiffe_id).map_err(|e| ConfigError::field(field, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let mut cfg = Config::default();
        assert_eq!(cfg.listen_addr, "127.0.0.1:8090");
        assert_eq!(cfg.database.port, 5433);
        assert_eq!(cfg.openbao.rotate_at, 0.83);
        assert_eq!(cfg.tokens.ttl, Duration::from_secs(3600));
        assert!(cfg.tokens.key_file.ends_with("backend/user-token.pem"));
        let err = cfg.validate().expect_err("cert_dir");
        assert!(err.to_string().contains("database.cert_dir"), "{err}");
        cfg.database.cert_dir = "/tmp/x".into();
        cfg.validate().expect("valid");
        assert_eq!(cfg.pg_server_id().expect("id").to_string(), "spiffe://ztlab.test/ns/demo/sa/postgres");
        cfg.openbao.rotate_at = 1.0;
        assert!(cfg.validate().expect_err("rotate_at").to_string().contains("openbao.rotate_at"));
        cfg.openbao.rotate_at = 0.5;
        cfg.database.server_spiffe_id = "not an id".into();
        assert!(cfg.validate().expect_err("id").to_string().contains("server_spiffe_id"));
    }

    #[test]
    fn loads_from_toml_with_durations() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("backend.toml");
        std::fs::write(
            &file,
            "trust_domain = \"lab.test\"\n[database]\ncert_dir = \"/certs\"\nconnect_timeout = \"2s\"\n\
             [openbao]\nrotate_at = 0.5\n[tokens]\nttl = 600\n[github]\napi_url = \"http://127.0.0.1:8099\"\nfixture = true\n",
        )
        .expect("write");
        let cfg: Config = zt_service::config::load(Some(&file)).expect("load");
        assert_eq!(cfg.workload.trust_domain, "lab.test");
        assert_eq!(cfg.database.cert_dir, PathBuf::from("/certs"));
        assert_eq!(cfg.database.connect_timeout, Duration::from_secs(2));
        assert_eq!(cfg.database.name, "app");
        assert_eq!(cfg.tokens.ttl, Duration::from_secs(600));
        assert!(cfg.github.fixture);
        cfg.validate().expect("valid");
        assert_eq!(cfg.pg_server_id().expect("id").to_string(), "spiffe://lab.test/ns/demo/sa/postgres");

        std::fs::write(&file, "[database]\nconnect_timeout = \"soon\"\n").expect("write");
        let err = zt_service::config::load::<Config>(Some(&file)).expect_err("bad duration");
        assert!(err.to_string().contains("connect_timeout"), "{err}");
    }
}
