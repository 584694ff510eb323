//! OIDC JWT authentication for people: issuer discovery, JWKS, audience and a groups claim.
//! Works with any OIDC provider that publishes discovery and JWKS (Okta, or the lab's OpenBao).

use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;
use zt_tls::client::{WebClient, web_client, web_get};

/// OIDC settings (Okta-compatible names).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer URL; `<issuer>/.well-known/openid-configuration` must exist.
    pub issuer: String,
    /// The audience (`aud`) tokens must carry: the client ID registered for ztlab.
    pub audience: String,
    /// The claim that lists the user's groups.
    #[serde(default = "groups")]
    pub groups_claim: String,
    /// The claim that names the user (falls back to `sub`).
    #[serde(default = "username")]
    pub username_claim: String,
}

fn groups() -> String {
    "groups".into()
}
fn username() -> String {
    "preferred_username".into()
}

/// A verified person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcUser {
    /// The username claim (or `sub`).
    pub username: String,
    /// The groups claim.
    pub groups: Vec<String>,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OidcError {
    /// Discovery or JWKS could not be fetched.
    #[error("OIDC provider {issuer} unavailable: {reason}")]
    Provider {
        /// The issuer.
        issuer: String,
        /// What failed.
        reason: String,
    },
    /// The token is invalid (signature, issuer, audience, expiry, claims).
    #[error("invalid OIDC token: {0}")]
    Invalid(String),
}

#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// Verifies OIDC JWTs against the issuer's JWKS (cached; refreshed when an unknown `kid`
/// appears, at most every 10 s, and every 10 min).
pub struct OidcVerifier {
    cfg: OidcConfig,
    http: WebClient,
    keys: RwLock<Option<(Instant, JwkSet)>>,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier").field("issuer", &self.cfg.issuer).finish_non_exhaustive()
    }
}

const TIMEOUT: Duration = Duration::from_secs(5);

impl OidcVerifier {
    /// A verifier for `cfg`; keys are fetched on first use.
    pub fn new(cfg: OidcConfig) -> Self {
        Self { cfg, http: web_client(), keys: RwLock::new(None) }
    }

    fn provider_err(&self, reason: impl std::fmt::Display) -> OidcError {
        OidcError::Provider { issuer: self.cfg.issuer.clone(), reason: reason.to_string() }
    }

    async fn fetch_keys(&self) -> Result<JwkSet, OidcError> {
        let url = format!("{}/.well-known/openid-configuration", self.cfg.issuer.trim_end_matches('/'));
        let resp = web_get(&self.http, &url, TIMEOUT).await.map_err(|e| self.provider_err(e))?;
        if !resp.status.is_success() {
            return Err(self.provider_err(format!("{url} answered {}", resp.status)));
        }
        let d: Discovery = resp.json().map_err(|e| self.provider_err(format!("bad discovery document: {e}")))?;
        if d.issuer.trim_end_matches('/') != self.cfg.issuer.trim_end_matches('/') {
            return Err(
                self.provider_err(format!("discovery names issuer {:?}, expected {:?}", d.issuer, self.cfg.issuer))
            );
        }
        let resp = web_get(&self.http, &d.jwks_uri, TIMEOUT).await.map_err(|e| self.provider_err(e))?;
        if !resp.status.is_success() {
            return Err(self.provider_err(format!("{} answered {}", d.jwks_uri, resp.status)));
        }
        resp.json().map_err(|e| self.provider_err(format!("bad JWKS: {e}")))
    }

    async fn key_for(&self, kid: &str) -> Result<jsonwebtoken::jwk::Jwk, OidcError> {
        {
            let keys = self.keys.read().await;
            if let Some((at, set)) = keys.as_ref()
                && let Some(k) = set.find(kid)
                && at.elapsed() < Duration::from_secs(600)
            {
                return Ok(k.clone());
            }
        }
        let mut keys = self.keys.write().await;
        let fresh = keys.as_ref().is_some_and(|(at, _)| at.elapsed() < Duration::from_secs(10));
        if !fresh {
            let set = self.fetch_keys().await?;
            *keys = Some((Instant::now(), set));
        }
        keys.as_ref()
            .and_then(|(_, s)| s.find(kid).cloned())
            .ok_or_else(|| OidcError::Invalid(format!("signing key {kid:?} is not in the issuer's JWKS")))
    }

    /// Verifies a token: signature (by `kid` from the JWKS), issuer, audience, expiry.
    pub async fn verify(&self, token: &str) -> Result<OidcUser, OidcError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| OidcError::Invalid(e.to_string()))?;
        if !matches!(
            header.alg,
            Algorithm::ES256 | Algorithm::ES384 | Algorithm::RS256 | Algorithm::EdDSA | Algorithm::PS256
        ) {
            return Err(OidcError::Invalid(format!("algorithm {:?} is not accepted", header.alg)));
        }
        let kid = header.kid.ok_or_else(|| OidcError::Invalid("the token has no kid".into()))?;
        let jwk = self.key_for(&kid).await?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| OidcError::Invalid(format!("unusable JWK: {e}")))?;
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[self.cfg.issuer.trim_end_matches('/'), &self.cfg.issuer]);
        v.set_audience(&[&self.cfg.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = 30;
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &v)
            .map_err(|e| OidcError::Invalid(e.to_string()))?;
        let claims = data.claims;
        let username = claims
            .get(&self.cfg.username_claim)
            .and_then(|v| v.as_str())
            .or_else(|| claims.get("sub").and_then(|v| v.as_str()))
            .unwrap_or_default()
            .to_owned();
        let groups = match claims.get(&self.cfg.groups_claim) {
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|g| g.as_str().map(str::to_owned)).collect(),
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            _ => vec![],
        };
        Ok(OidcUser { username, groups })
    }

    /// The configuration.
    pub fn config(&self) -> &OidcConfig {
        &self.cfg
    }
}
