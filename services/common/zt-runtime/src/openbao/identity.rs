//! OpenBao as the lab's OIDC provider for people ([`OpenBao::configure_identity`]): userpass
//! users, entities, groups, the signing key and role, and [`OpenBao::user_token`].

use serde::Serialize;
use serde_json::{Value, json};

use super::*;
use crate::{Error, Result};

impl OpenBao {
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

    pub(super) fn validate(&self) -> Result<()> {
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
pub(super) fn mount_accessor(auths: &Value, path: &str) -> Option<String> {
    auths["data"][path]["accessor"].as_str().or_else(|| auths[path]["accessor"].as_str()).map(str::to_owned)
}
