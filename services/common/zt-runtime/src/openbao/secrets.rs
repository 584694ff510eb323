//! What the app chain needs from OpenBao ([`OpenBao::configure_app`]): jwt auth for the
//! backend's JWT-SVIDs, the database secrets engine on the app PostgreSQL, KV v2, and two
//! narrow tokens (lease reader, lease revoker).

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Value, json};

use super::identity::mount_accessor;
use super::*;
use crate::{Error, Result};

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

impl OpenBao {
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
}
