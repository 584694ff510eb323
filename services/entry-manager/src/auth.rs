//! Who is calling, and what they may do.
//!
//! Callers authenticate by one of:
//! - an mTLS client SVID (site agents and ztlab services), on the mTLS listener, mapped to a
//!   role by `[[identities]]` in the config;
//! - `authorization: Bearer <OIDC JWT>` (people), with roles from the token's groups;
//! - `authorization: Bearer ztk_…` (API keys for CI), created by an Admin and stored hashed.
//!
//! [`allowed`] is the role × operation table; [`Principal::check`] adds the per-caller limits
//! (a Developer's SPIFFE ID path prefixes, a SiteAgent's own site).

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::{Request, Status};
use zt_entry_api::pb;
use zt_entry_api::validate::FieldError;

use crate::oidc::{OidcConfig, OidcVerifier};
use crate::store::Store;

/// A role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// Everything, including sites and API keys.
    Admin,
    /// Entries, viewing sites, triggering syncs, the audit trail.
    Operator,
    /// Entries under allowed SPIFFE ID path prefixes; reads like a Viewer.
    Developer,
    /// Read-only.
    Viewer,
    /// Poll and report for its own site only.
    SiteAgent,
}

impl Role {
    /// As the API names it.
    pub fn to_pb(self) -> pb::Role {
        match self {
            Role::Admin => pb::Role::Admin,
            Role::Operator => pb::Role::Operator,
            Role::Developer => pb::Role::Developer,
            Role::Viewer => pb::Role::Viewer,
            Role::SiteAgent => pb::Role::SiteAgent,
        }
    }

    /// From the API's enum.
    pub fn from_pb(r: pb::Role) -> Option<Role> {
        Some(match r {
            pb::Role::Admin => Role::Admin,
            pb::Role::Operator => Role::Operator,
            pb::Role::Developer => Role::Developer,
            pb::Role::Viewer => Role::Viewer,
            pb::Role::SiteAgent => Role::SiteAgent,
            pb::Role::Unspecified => return None,
        })
    }

    /// Stored name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "Admin",
            Role::Operator => "Operator",
            Role::Developer => "Developer",
            Role::Viewer => "Viewer",
            Role::SiteAgent => "SiteAgent",
        }
    }

    /// From a stored name.
    pub fn parse(s: &str) -> Option<Role> {
        [Role::Admin, Role::Operator, Role::Developer, Role::Viewer, Role::SiteAgent]
            .into_iter()
            .find(|r| r.name() == s)
    }
}

/// Every RPC of the API, for authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Op {
    CreateEntry,
    GetEntry,
    UpdateEntry,
    DeleteEntry,
    ListEntries,
    BatchCreateEntries,
    BatchDeleteEntries,
    CreateSite,
    GetSite,
    UpdateSite,
    DeleteSite,
    ListSites,
    GetSiteHealth,
    TriggerSync,
    GetSyncStatus,
    StreamSyncUpdates,
    PollEntries,
    ReportSyncResult,
    ListAuditEvents,
    CreateApiKey,
    ListApiKeys,
    RevokeApiKey,
    WhoAmI,
}

impl Op {
    /// Every operation.
    pub const ALL: [Op; 23] = [
        Op::CreateEntry,
        Op::GetEntry,
        Op::UpdateEntry,
        Op::DeleteEntry,
        Op::ListEntries,
        Op::BatchCreateEntries,
        Op::BatchDeleteEntries,
        Op::CreateSite,
        Op::GetSite,
        Op::UpdateSite,
        Op::DeleteSite,
        Op::ListSites,
        Op::GetSiteHealth,
        Op::TriggerSync,
        Op::GetSyncStatus,
        Op::StreamSyncUpdates,
        Op::PollEntries,
        Op::ReportSyncResult,
        Op::ListAuditEvents,
        Op::CreateApiKey,
        Op::ListApiKeys,
        Op::RevokeApiKey,
        Op::WhoAmI,
    ];
}

/// The role × operation table.
pub fn allowed(role: Role, op: Op) -> bool {
    use Op::*;
    let read = matches!(
        op,
        GetEntry
            | ListEntries
            | GetSite
            | ListSites
            | GetSiteHealth
            | GetSyncStatus
            | StreamSyncUpdates
            | ListAuditEvents
            | WhoAmI
    );
    let entry_write = matches!(op, CreateEntry | UpdateEntry | DeleteEntry | BatchCreateEntries | BatchDeleteEntries);
    match role {
        Role::Admin => !matches!(op, PollEntries | ReportSyncResult),
        Role::Operator => read || entry_write || op == TriggerSync,
        Role::Developer => read || entry_write,
        Role::Viewer => read,
        Role::SiteAgent => matches!(op, PollEntries | ReportSyncResult | WhoAmI),
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// For the audit trail: a SPIFFE ID, `oidc:<username>` or `apikey:<name>`.
    pub actor: String,
    /// Its role.
    pub role: Role,
    /// For SiteAgent: its site.
    pub site: Option<String>,
    /// For Developer: the SPIFFE ID path prefixes it may write.
    pub path_prefixes: Vec<String>,
}

impl Principal {
    /// Refuses `op` unless the role allows it.
    #[allow(clippy::result_large_err)]
    pub fn check(&self, op: Op) -> Result<(), Status> {
        if allowed(self.role, op) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!("{} (role {}) may not call {op:?}", self.actor, self.role.name())))
        }
    }

    /// For writes: a Developer may only touch SPIFFE IDs under its path prefixes.
    #[allow(clippy::result_large_err)]
    pub fn check_spiffe_id(&self, field: &str, spiffe_id: &str) -> Result<(), Status> {
        if self.role != Role::Developer {
            return Ok(());
        }
        let path = zt_identity::SpiffeId::new(spiffe_id).map(|id| id.path().to_owned()).unwrap_or_default();
        if self.path_prefixes.iter().any(|p| zt_entry_api::access::path_within(&path, p)) {
            Ok(())
        } else {
            let why = format!(
                "{} (Developer) may only write SPIFFE IDs under {:?}, not {spiffe_id}",
                self.actor, self.path_prefixes
            );
            Err(FieldError::new(field, why).into_status(tonic::Code::PermissionDenied))
        }
    }

    /// For site agents: only their own site.
    #[allow(clippy::result_large_err)]
    pub fn check_site(&self, site: &str) -> Result<(), Status> {
        match (&self.role, &self.site) {
            (Role::SiteAgent, Some(own)) if own == site => Ok(()),
            (Role::SiteAgent, own) => Err(Status::permission_denied(format!(
                "{} is the site agent of {:?} and may not act for site {site:?}",
                self.actor,
                own.as_deref().unwrap_or("no site")
            ))),
            _ => Ok(()),
        }
    }
}

/// An mTLS identity's role (config `[[identities]]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IdentityRule {
    /// The SPIFFE ID.
    pub spiffe_id: String,
    /// Its role.
    pub role: Role,
    /// For SiteAgent: the site.
    #[serde(default)]
    pub site: Option<String>,
    /// For Developer: path prefixes.
    #[serde(default)]
    pub path_prefixes: Vec<String>,
}

/// An OIDC group's role (config `[[group_roles]]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GroupRule {
    /// The group name in the groups claim.
    pub group: String,
    /// Its role.
    pub role: Role,
    /// For Developer: path prefixes.
    #[serde(default)]
    pub path_prefixes: Vec<String>,
}

/// API key format: `ztk_<key id, 32 hex>_<secret>`.
pub const API_KEY_PREFIX: &str = "ztk_";

/// Makes a new API key: (id, full key to hand out once, SHA-256 of the secret).
pub fn new_api_key() -> (uuid::Uuid, String, Vec<u8>) {
    use base64::Engine as _;
    let id = uuid::Uuid::new_v4();
    let secret: [u8; 32] = rand::random();
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let hash = Sha256::digest(secret.as_bytes()).to_vec();
    (id, format!("{API_KEY_PREFIX}{}_{secret}", id.simple()), hash)
}

/// Authenticates requests.
#[derive(Debug, Clone)]
pub struct Authenticator {
    identities: Arc<HashMap<String, IdentityRule>>,
    groups: Arc<Vec<GroupRule>>,
    oidc: Option<Arc<OidcVerifier>>,
    store: Store,
}

impl Authenticator {
    /// From the config.
    pub fn new(identities: &[IdentityRule], groups: &[GroupRule], oidc: Option<OidcConfig>, store: Store) -> Self {
        Self {
            identities: Arc::new(identities.iter().map(|r| (r.spiffe_id.clone(), r.clone())).collect()),
            groups: Arc::new(groups.to_vec()),
            oidc: oidc.map(|c| Arc::new(OidcVerifier::new(c))),
            store,
        }
    }

    /// Who sent `req`.
    pub async fn authenticate<T>(&self, req: &Request<T>) -> Result<Principal, Status> {
        // On the mTLS listener the SVID is the identity (bearer tokens are not consulted).
        if req.extensions().get::<zt_tls::PeerInfo>().is_some_and(|i| i.peer.is_some()) {
            let peer = zt_tls::server::authorized_peer(req)?;
            let id = peer.spiffe_id.to_string();
            return match self.identities.get(&id) {
                Some(r) => Ok(Principal {
                    actor: id,
                    role: r.role,
                    site: r.site.clone(),
                    path_prefixes: r.path_prefixes.clone(),
                }),
                None => Err(Status::permission_denied(format!("SPIFFE ID {id} has no role in entry-manager"))),
            };
        }
        let header = req.metadata().get("authorization").and_then(|v| v.to_str().ok()).ok_or_else(|| {
            Status::unauthenticated(
                "send `authorization: Bearer <OIDC token or API key>`, or call over mTLS with an SVID",
            )
        })?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| Status::unauthenticated("the authorization header must be `Bearer <token>`"))?
            .trim();
        if let Some(rest) = token.strip_prefix(API_KEY_PREFIX) {
            return self.api_key(rest).await;
        }
        let Some(oidc) = &self.oidc else {
            return Err(Status::unauthenticated("OIDC is not configured on this server; use an API key"));
        };
        let user = oidc.verify(token).await.map_err(|e| match e {
            crate::oidc::OidcError::Provider { .. } => Status::unavailable(e.to_string()),
            _ => Status::unauthenticated(e.to_string()),
        })?;
        // The most privileged matching group wins; Developer prefixes add up.
        let mut best: Option<Role> = None;
        let mut prefixes = Vec::new();
        for g in self.groups.iter().filter(|g| user.groups.contains(&g.group)) {
            if g.role == Role::SiteAgent {
                continue;
            }
            best = Some(best.map_or(g.role, |b| b.min(g.role)));
            if g.role == Role::Developer {
                prefixes.extend(g.path_prefixes.iter().cloned());
            }
        }
        let role = best.ok_or_else(|| {
            Status::permission_denied(format!(
                "OIDC user {} is in no group that has a role here ({:?})",
                user.username, user.groups
            ))
        })?;
        Ok(Principal { actor: format!("oidc:{}", user.username), role, site: None, path_prefixes: prefixes })
    }

    async fn api_key(&self, rest: &str) -> Result<Principal, Status> {
        let bad = || Status::unauthenticated("invalid API key");
        let (id, secret) = rest.split_once('_').ok_or_else(bad)?;
        let id = uuid::Uuid::parse_str(id).map_err(|_| bad())?;
        let key = self.store.api_key(&id).await.map_err(Status::from)?.ok_or_else(bad)?;
        let hash = Sha256::digest(secret.as_bytes());
        if key.revoked || !bool::from(hash[..].ct_eq(&key.secret_sha256)) {
            return Err(bad());
        }
        let role = Role::parse(&key.role).ok_or_else(bad)?;
        Ok(Principal { actor: format!("apikey:{}", key.name), role, site: None, path_prefixes: key.path_prefixes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn developer_prefixes_match_whole_segments() {
        let dev =
            Principal { actor: "d".into(), role: Role::Developer, site: None, path_prefixes: vec!["/ns/dev".into()] };
        assert!(dev.check_spiffe_id("f", "spiffe://ztlab.test/ns/dev/sa/x").is_ok());
        assert!(dev.check_spiffe_id("f", "spiffe://ztlab.test/ns/dev").is_ok());
        assert!(dev.check_spiffe_id("f", "spiffe://ztlab.test/ns/devil/sa/x").is_err());
        assert!(dev.check_spiffe_id("f", "spiffe://ztlab.test/ns/prod/sa/x").is_err());
    }

    #[test]
    fn site_agents_act_only_for_their_site() {
        let a = Principal { actor: "a".into(), role: Role::SiteAgent, site: Some("a".into()), path_prefixes: vec![] };
        assert!(a.check_site("a").is_ok());
        assert_eq!(a.check_site("b").expect_err("other site").code(), tonic::Code::PermissionDenied);
    }

    #[test]
    fn api_keys_hash_their_secret() {
        let (id, key, hash) = new_api_key();
        let rest = key.strip_prefix(API_KEY_PREFIX).expect("prefix");
        let (kid, secret) = rest.split_once('_').expect("format");
        assert_eq!(kid, id.simple().to_string());
        assert_eq!(&Sha256::digest(secret.as_bytes())[..], hash.as_slice());
        assert!(!key.contains(&hex(&hash)));
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
