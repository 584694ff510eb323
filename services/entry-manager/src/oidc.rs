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

/// What is wrong with a token, in words: jsonwebtoken prints most of its errors as their
/// variant names (`InvalidToken`), which tell a person nothing.
fn jwt_problem(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::InvalidToken => {
            "it is not a JWT (three base64url parts separated by dots) and not an API key (ztk_…)".into()
        }
        K::Base64(_) | K::Json(_) | K::Utf8(_) => format!("it is not a well-formed JWT ({e})"),
        K::InvalidSignature => "its signature does not verify with the issuer's key".into(),
        K::ExpiredSignature => "it has expired; sign in again for a new one".into(),
        K::ImmatureSignature => "it is not valid yet (nbf is in the future)".into(),
        K::InvalidIssuer => "it was issued by another issuer".into(),
        K::InvalidAudience => "it is for another audience (aud)".into(),
        K::InvalidSubject => "its subject (sub) is not accepted".into(),
        K::MissingRequiredClaim(c) => format!("the {c:?} claim is missing"),
        K::InvalidClaimFormat(c) => format!("the {c:?} claim has the wrong type"),
        K::InvalidAlgorithm | K::InvalidAlgorithmName | K::UnsupportedAlgorithm | K::MissingAlgorithm => {
            "its signing algorithm does not match the issuer's key".into()
        }
        K::InvalidEcdsaKey | K::InvalidEddsaKey | K::InvalidRsaKey(_) | K::InvalidKeyFormat => {
            "the issuer's signing key is unusable".into()
        }
        _ => e.to_string(),
    }
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
        let header = jsonwebtoken::decode_header(token).map_err(|e| OidcError::Invalid(jwt_problem(&e)))?;
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
            .map_err(|e| OidcError::Invalid(jwt_problem(&e)))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier() -> OidcVerifier {
        // Nothing listens here: these tokens are refused before any key is fetched.
        OidcVerifier::new(OidcConfig {
            issuer: "http://127.0.0.1:9/v1/identity/oidc".into(),
            audience: "ztlab".into(),
            groups_claim: groups(),
            username_claim: username(),
        })
    }

    /// A token that is not a JWT at all is described in words, not by a variant name.
    #[tokio::test]
    async fn garbage_tokens_are_refused_in_words() {
        for token in ["garbage", "a.b", "not-a-jwt", "x.y.z"] {
            let err = verifier().verify(token).await.expect_err(token).to_string();
            assert!(err.starts_with("invalid OIDC token: it is not"), "{token}: {err}");
            assert!(!err.contains("InvalidToken") && !err.contains("Base64("), "{token}: {err}");
        }
    }

    #[test]
    fn every_verification_failure_reads_as_words() {
        use jsonwebtoken::errors::{Error, ErrorKind as K};
        for kind in [
            K::InvalidToken,
            K::InvalidSignature,
            K::ExpiredSignature,
            K::ImmatureSignature,
            K::InvalidIssuer,
            K::InvalidAudience,
            K::InvalidSubject,
            K::InvalidAlgorithm,
            K::MissingAlgorithm,
            K::InvalidKeyFormat,
            K::InvalidEcdsaKey,
        ] {
            let text = jwt_problem(&Error::from(kind.clone()));
            assert!(text.contains(' ') && !text.contains(&format!("{kind:?}")), "{kind:?}: {text}");
        }
    }
}
