//! ztlab user tokens.
//!
//! The backend signs in users and hands them a short-lived JWT (ES256, P-256). Any other service
//! (document, the agents) verifies such a token against the backend's public JWKS, served at
//! `GET /.well-known/jwks.json` on the backend's ops listener, so no secret is shared.
//!
//! - [`Issuer`]: holds the signing key (a PKCS#8 PEM file, created with mode 0600 when missing),
//!   issues tokens and publishes the JWKS. The key id (`kid`) is derived from the public key (a
//!   prefix of its RFC 7638 thumbprint), so it is stable across restarts.
//! - [`Verifier`]: checks a token: ES256 only, a known `kid`, the signature, `exp` (5 s leeway),
//!   `iat` (not in the future) and `iss`. It fetches the JWKS lazily, caches it, and fetches it
//!   again when it sees an unknown `kid`, at most once every 5 s.
//! - [`TokenError`]: why a token was refused; its `Display` is short enough for a 403 body.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! use std::time::Duration;
//! use zt_usertoken::{Issuer, Verifier};
//! let issuer = Issuer::load_or_create(&dir.path().join("key.pem"), "ztlab-backend", Duration::from_secs(3600))?;
//! let (token, claims) = issuer.issue(7, "jake")?;
//! let verifier = Verifier::from_jwks(&issuer.jwks(), "ztlab-backend")?;
//! let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! assert_eq!(rt.block_on(verifier.verify(&token))?, claims);
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The clock skew tolerated on `exp` and `iat`, in seconds.
pub const LEEWAY_SECS: i64 = 5;

/// How often at most the JWKS is fetched again because of an unknown `kid`.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(5);

/// How long a JWKS fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The claims of a user token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id in the backend's database.
    pub user_id: i64,
    /// The user's name.
    pub username: String,
    /// Issued at (seconds since the Unix epoch).
    pub iat: i64,
    /// Expires at (seconds since the Unix epoch).
    pub exp: i64,
    /// Who issued it (`ztlab-backend`).
    pub iss: String,
}

/// Why a token was refused, or a key could not be used. `Display` is a short reason that can
/// be shown to the caller as is (for example in a 403 body).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token is not a well-formed ES256 JWT with the expected claims.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The token's `exp` has passed.
    #[error("token expired")]
    Expired,
    /// The signature does not verify with the key its `kid` names.
    #[error("token signature does not verify")]
    BadSignature,
    /// The token was issued by someone else.
    #[error("token issuer {found:?} is not accepted here")]
    WrongIssuer {
        /// The `iss` claim found in the token.
        found: String,
    },
    /// No key with the token's `kid` is published.
    #[error("token key id {kid:?} is not known")]
    UnknownKey {
        /// The `kid` of the token header.
        kid: String,
    },
    /// The JWKS could not be fetched or read.
    #[error("cannot get the token keys from {url}: {reason}")]
    JwksUnavailable {
        /// The JWKS URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A signing or verification key could not be created, read, stored or parsed.
    #[error("token key error: {0}")]
    Key(String),
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Signs user tokens with an ES256 key kept in a file.
pub struct Issuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    x: String,
    y: String,
    issuer: String,
    ttl: Duration,
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// Loads the P-256 key from `key_file` (PKCS#8 PEM), or creates it there (mode 0600,
    /// written atomically, parent directories created) when the file does not exist. Tokens are
    /// issued by `issuer` and live for `ttl`.
    pub fn load_or_create(key_file: &Path, issuer: &str, ttl: Duration) -> Result<Self, TokenError> {
        let pem = match std::fs::read_to_string(key_file) {
            Ok(pem) => {
                warn_if_readable_by_others(key_file);
                pem
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_key_file(key_file)?,
            Err(e) => return Err(TokenError::Key(format!("cannot read {}: {e}", key_file.display()))),
        };
        Self::from_pem(&pem, issuer, ttl)
            .map_err(|e| TokenError::Key(format!("{}: {}", key_file.display(), strip_prefix(&e))))
    }

    fn from_pem(pem: &str, issuer: &str, ttl: Duration) -> Result<Self, TokenError> {
        let pair = rcgen::KeyPair::from_pem(pem).map_err(|e| TokenError::Key(format!("not a PKCS#8 PEM key: {e}")))?;
        if pair.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
            return Err(TokenError::Key("the key is not a P-256 (ES256) key".into()));
        }
        let point = pair.public_key_raw();
        if point.len() != 65 || point[0] != 4 {
            return Err(TokenError::Key("unexpected P-256 public key encoding".into()));
        }
        let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
        let y = URL_SAFE_NO_PAD.encode(&point[33..65]);
        let encoding = EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|e| TokenError::Key(e.to_string()))?;
        let decoding = DecodingKey::from_ec_components(&x, &y).map_err(|e| TokenError::Key(e.to_string()))?;
        Ok(Self { encoding, decoding, kid: kid_for(&x, &y), x, y, issuer: issuer.to_owned(), ttl })
    }

    /// Issues a token for the user; returns it with its claims.
    pub fn issue(&self, user_id: i64, username: &str) -> Result<(String, Claims), TokenError> {
        let iat = now();
        let claims = Claims {
            user_id,
            username: username.to_owned(),
            iat,
            exp: iat + self.ttl.as_secs() as i64,
            iss: self.issuer.clone(),
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let token =
            jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(|e| TokenError::Key(e.to_string()))?;
        Ok((token, claims))
    }

    /// The public key as a JWKS: `{"keys":[{kty,crv,x,y,kid,alg,use}]}`.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({"keys": [{
            "kty": "EC",
            "crv": "P-256",
            "x": self.x,
            "y": self.y,
            "kid": self.kid,
            "alg": "ES256",
            "use": "sig",
        }]})
    }

    /// The issuer name put in `iss`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The key id put in each token header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A [`Verifier`] that accepts this issuer's tokens (its own key, no fetching).
    pub fn verifier(&self) -> Verifier {
        let keys = HashMap::from([(self.kid.clone(), self.decoding.clone())]);
        Verifier::with_source(&self.issuer, Source::Static(keys))
    }
}

fn strip_prefix(e: &TokenError) -> String {
    match e {
        TokenError::Key(m) => m.clone(),
        other => other.to_string(),
    }
}

/// A stable key id: the first 16 characters of the key's RFC 7638 JWK thumbprint.
fn kid_for(x: &str, y: &str) -> String {
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let mut kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
    kid.truncate(16);
    kid
}

fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            file = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "the user-token signing key is readable by other users; chmod 600 it"
        );
    }
}

/// Generates a key and stores it at `path` (0600). If another process created the file in the
/// meantime, its key wins and is returned.
fn create_key_file(path: &Path) -> Result<String, TokenError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |what: &str, p: &Path, e: std::io::Error| TokenError::Key(format!("cannot {what} {}: {e}", p.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io("create directory", dir, e))?;
    }
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| TokenError::Key(format!("cannot generate a P-256 key: {e}")))?;
    let pem = pair.serialize_pem();
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let _ = std::fs::remove_file(&tmp);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(pem.as_bytes())?;
        f.sync_all()
    };
    write().map_err(|e| io("write", &tmp, e))?;
    // A hard link never replaces an existing file: two processes starting at once agree on
    // one key.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::info!(file = %path.display(), "created a new user-token signing key");
            Ok(pem)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read_to_string(path).map_err(|e| io("read", path, e))
        }
        Err(e) => Err(io("create", path, e)),
    }
}

/// Parses the ES256 keys of a JWKS. Keys of other types or algorithms, or without `kid`, are
/// skipped.
fn parse_jwks(jwks: &serde_json::Value) -> Result<HashMap<String, DecodingKey>, String> {
    let keys = jwks.get("keys").and_then(|k| k.as_array()).ok_or("the JWKS has no \"keys\" array")?;
    let mut out = HashMap::new();
    for key in keys {
        let field = |name: &str| key.get(name).and_then(|v| v.as_str());
        let es256 = field("kty") == Some("EC")
            && field("crv") == Some("P-256")
            && field("alg").is_none_or(|a| a == "ES256")
            && field("use").is_none_or(|u| u == "sig");
        let (Some(kid), Some(x), Some(y)) = (field("kid"), field("x"), field("y")) else { continue };
        if !es256 {
            continue;
        }
        let decoding = DecodingKey::from_ec_components(x, y).map_err(|e| format!("key {kid:?}: {e}"))?;
        out.insert(kid.to_owned(), decoding);
    }
    Ok(out)
}

enum Source {
    Static(HashMap<String, DecodingKey>),
    Remote(Box<Remote>),
}

struct Remote {
    url: String,
    client: zt_tls::client::WebClient,
    refetch_interval: Duration,
    cache: RwLock<Cache>,
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Cache {
    keys: HashMap<String, DecodingKey>,
    last_fetch: Option<Instant>,
    last_error: Option<String>,
}

struct Inner {
    issuer: String,
    source: Source,
}

/// Verifies user tokens. Cheap to clone (it shares its key cache).
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Verifier");
        d.field("issuer", &self.inner.issuer);
        if let Source::Remote(r) = &self.inner.source {
            d.field("jwks_url", &r.url);
        }
        d.finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier that gets its keys from `jwks_url` (`http://` or `https://`), fetched on first
    /// use, cached, and fetched again when a token names an unknown `kid` (at most once every
    /// [`REFETCH_INTERVAL`]). Tokens must be issued by `issuer`.
    pub fn new(jwks_url: &str, issuer: &str) -> Self {
        Self::remote(jwks_url, issuer, REFETCH_INTERVAL)
    }

    fn remote(jwks_url: &str, issuer: &str, refetch_interval: Duration) -> Self {
        Self::with_source(
            issuer,
            Source::Remote(Box::new(Remote {
                url: jwks_url.to_owned(),
                client: zt_tls::client::web_client(),
                refetch_interval,
                cache: RwLock::new(Cache::default()),
                fetching: tokio::sync::Mutex::new(()),
            })),
        )
    }

    /// A verifier with the fixed keys of `jwks` (`{"keys":[...]}`).
    pub fn from_jwks(jwks: &serde_json::Value, issuer: &str) -> Result<Self, TokenError> {
        let keys = parse_jwks(jwks).map_err(TokenError::Key)?;
        Ok(Self::with_source(issuer, Source::Static(keys)))
    }

    fn with_source(issuer: &str, source: Source) -> Self {
        Self { inner: Arc::new(Inner { issuer: issuer.to_owned(), source }) }
    }

    /// The issuer this verifier accepts.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// Checks `token` and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::ES256 {
            return Err(TokenError::Malformed(format!("algorithm {:?} is not ES256", header.alg)));
        }
        let kid = header.kid.ok_or_else(|| TokenError::Malformed("the token header has no kid".into()))?;
        let key = self.key(&kid).await?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.leeway = LEEWAY_SECS as u64;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "iss"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::ExpiredSignature => TokenError::Expired,
            _ => TokenError::Malformed(e.to_string()),
        })?;
        let claims = data.claims;
        if claims.iss != self.inner.issuer {
            return Err(TokenError::WrongIssuer { found: claims.iss });
        }
        if claims.iat > now() + LEEWAY_SECS {
            return Err(TokenError::Malformed("the token is issued in the future (iat)".into()));
        }
        if claims.exp <= claims.iat {
            return Err(TokenError::Malformed("the token expires before it is issued".into()));
        }
        Ok(claims)
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, TokenError> {
        let remote = match &self.inner.source {
            Source::Static(keys) => {
                return keys.get(kid).cloned().ok_or_else(|| TokenError::UnknownKey { kid: kid.to_owned() });
            }
            Source::Remote(remote) => remote,
        };
        if let Some(key) = remote.cached(kid) {
            return Ok(key);
        }
        // One fetch at a time; whoever waited checks the cache again first.
        let _guard = remote.fetching.lock().await;
        if let Some(key) = remote.cached(kid) {
            return Ok(key);
        }
        let recent = {
            let cache = remote.cache.read().unwrap_or_else(|p| p.into_inner());
            cache.last_fetch.filter(|t| t.elapsed() < remote.refetch_interval).map(|_| cache.last_error.clone())
        };
        match recent {
            Some(Some(reason)) => return Err(TokenError::JwksUnavailable { url: remote.url.clone(), reason }),
            Some(None) => return Err(TokenError::UnknownKey { kid: kid.to_owned() }),
            None => {}
        }
        let fetched = remote.fetch().await;
        let mut cache = remote.cache.write().unwrap_or_else(|p| p.into_inner());
        cache.last_fetch = Some(Instant::now());
        match fetched {
            Ok(keys) => {
                cache.keys = keys;
                cache.last_error = None;
                cache.keys.get(kid).cloned().ok_or_else(|| TokenError::UnknownKey { kid: kid.to_owned() })
            }
            Err(reason) => {
                cache.last_error = Some(reason.clone());
                Err(TokenError::JwksUnavailable { url: remote.url.clone(), reason })
            }
        }
    }
}

impl Remote {
    fn cached(&self, kid: &str) -> Option<DecodingKey> {
        self.cache.read().unwrap_or_else(|p| p.into_inner()).keys.get(kid).cloned()
    }

    async fn fetch(&self) -> Result<HashMap<String, DecodingKey>, String> {
        let resp = zt_tls::client::web_get(&self.client, &self.url, FETCH_TIMEOUT).await.map_err(|e| e.to_string())?;
        if !resp.status.is_success() {
            return Err(format!("HTTP {}", resp.status));
        }
        let jwks: serde_json::Value = resp.json().map_err(|e| format!("the answer is not JSON: {e}"))?;
        let keys = parse_jwks(&jwks)?;
        tracing::debug!(url = %self.url, keys = keys.len(), "fetched the user-token JWKS");
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const ISS: &str = "ztlab-backend";

    fn issuer_in(dir: &Path, name: &str, ttl: Duration) -> Issuer {
        Issuer::load_or_create(&dir.join(name), ISS, ttl).expect("issuer")
    }

    /// Signs `claims` with `issuer`'s key but the header `kid`.
    fn sign(issuer: &Issuer, kid: &str, claims: &serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &issuer.encoding).expect("sign")
    }

    fn claims_json(iss: &str, iat: i64, exp: i64) -> serde_json::Value {
        serde_json::json!({"user_id": 1, "username": "jake", "iat": iat, "exp": exp, "iss": iss})
    }

    #[tokio::test]
    async fn round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let issuer = issuer_in(dir.path(), "k.pem", Duration::from_secs(3600));
        let (token, claims) = issuer.issue(42, "amy").expect("issue");
        assert_eq!(claims.user_id, 42);
        assert_eq!(claims.username, "amy");
        assert_eq!(claims.exp - claims.iat, 3600);
        assert_eq!(claims.iss, ISS);
        let header = jsonwebtoken::decode_header(&token).expect("header");
        assert_eq!(header.kid.as_deref(), Some(issuer.kid()));
        assert_eq!(header.alg, Algorithm::ES256);
        let verifier = Verifier::from_jwks(&issuer.jwks(), ISS).expect("verifier");
        assert_eq!(verifier.verify(&token).await.expect("valid"), claims);
        assert_eq!(issuer.verifier().verify(&token).await.expect("valid"), claims);
        let jwk = &issuer.jwks()["keys"][0];
        for field in ["kty", "crv", "x", "y", "kid", "alg", "use"] {
            assert!(jwk.get(field).is_some(), "{field} missing in {jwk}");
        }
        assert_eq!(jwk["alg"], "ES256");
    }

    #[tokio::test]
    async fn expired_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let issuer = issuer_in(dir.path(), "k.pem", Duration::from_secs(3600));
        let t = now();
        let token = sign(&issuer, issuer.kid(), &claims_json(ISS, t - 100, t - 10));
        let err = issuer.verifier().verify(&token).await.expect_err("expired");
        assert!(matches!(err, TokenError::Expired), "{err:?}");
        assert_eq!(err.to_string(), "token expired");
        // Within the 5 s leeway: accepted.
        let token = sign(&issuer, issuer.kid(), &claims_json(ISS, t - 100, t - 2));
        issuer.verifier().verify(&token).await.expect("within leeway");
    }

    #[tokio::test]
    async fn forged_with_same_kid_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = issuer_in(dir.path(), "real.pem", Duration::from_secs(3600));
        let forger = issuer_in(dir.path(), "forger.pem", Duration::from_secs(3600));
        assert_ne!(real.kid(), forger.kid());
        let t = now();
        let token = sign(&forger, real.kid(), &claims_json(ISS, t, t + 60));
        let err = real.verifier().verify(&token).await.expect_err("forged");
        assert!(matches!(err, TokenError::BadSignature), "{err:?}");
        assert_eq!(err.to_string(), "token signature does not verify");
    }

    #[tokio::test]
    async fn wrong_issuer_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let issuer = issuer_in(dir.path(), "k.pem", Duration::from_secs(3600));
        let t = now();
        let token = sign(&issuer, issuer.kid(), &claims_json("evil", t, t + 60));
        let err = issuer.verifier().verify(&token).await.expect_err("wrong issuer");
        assert!(matches!(err, TokenError::WrongIssuer { ref found } if found == "evil"), "{err:?}");
        assert!(err.to_string().contains("\"evil\""), "{err}");
    }

    #[tokio::test]
    async fn unknown_kid_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = issuer_in(dir.path(), "a.pem", Duration::from_secs(3600));
        let b = issuer_in(dir.path(), "b.pem", Duration::from_secs(3600));
        let (token, _) = b.issue(1, "jake").expect("issue");
        let err = a.verifier().verify(&token).await.expect_err("unknown kid");
        assert!(matches!(err, TokenError::UnknownKey { ref kid } if kid == b.kid()), "{err:?}");
    }

    #[tokio::test]
    async fn tampered_payload_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let issuer = issuer_in(dir.path(), "k.pem", Duration::from_secs(3600));
        let (token, claims) = issuer.issue(1, "jake").expect("issue");
        let parts: Vec<&str> = token.split('.').collect();
        let mut forged = claims.clone();
        forged.user_id = 2;
        forged.username = "amy".into();
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).expect("json"));
        let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
        let err = issuer.verifier().verify(&tampered).await.expect_err("tampered");
        assert!(matches!(err, TokenError::BadSignature), "{err:?}");
    }

    #[tokio::test]
    async fn malformed_and_other_algorithms_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let issuer = issuer_in(dir.path(), "k.pem", Duration::from_secs(3600));
        let v = issuer.verifier();
        for bad in ["", "abc", "a.b.c"] {
            assert!(matches!(v.verify(bad).await, Err(TokenError::Malformed(_))), "{bad}");
        }
        let t = now();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(issuer.kid().to_owned());
        let hs =
            jsonwebtoken::encode(&header, &claims_json(ISS, t, t + 60), &EncodingKey::from_secret(b"x")).expect("sign");
        let err = v.verify(&hs).await.expect_err("HS256");
        assert!(err.to_string().contains("not ES256"), "{err}");
        let token = sign(&issuer, issuer.kid(), &claims_json(ISS, t + 600, t + 900));
        assert!(matches!(v.verify(&token).await, Err(TokenError::Malformed(_))), "iat in the future");
        let no_exp =
            sign(&issuer, issuer.kid(), &serde_json::json!({"user_id": 1, "username": "j", "iat": t, "iss": ISS}));
        assert!(matches!(v.verify(&no_exp).await, Err(TokenError::Malformed(_))), "no exp");
    }

    #[tokio::test]
    async fn key_file_is_private_and_stable() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/backend/user-token.pem");
        let first = Issuer::load_or_create(&path, ISS, Duration::from_secs(60)).expect("create");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(std::fs::read_to_string(&path).expect("read").contains("BEGIN PRIVATE KEY"));
        let again = Issuer::load_or_create(&path, ISS, Duration::from_secs(60)).expect("reload");
        assert_eq!(first.kid(), again.kid());
        assert_eq!(first.jwks(), again.jwks());
        let (token, _) = first.issue(1, "jake").expect("issue");
        again.verifier().verify(&token).await.expect("same key");
        // No temporary files left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().expect("dir")).expect("ls").collect();
        assert_eq!(names.len(), 1);

        std::fs::write(&path, "garbage").expect("write");
        let err = Issuer::load_or_create(&path, ISS, Duration::from_secs(60)).expect_err("garbage");
        assert!(err.to_string().contains("user-token.pem"), "{err}");
    }

    #[test]
    fn jwks_parsing_skips_foreign_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let issuer = issuer_in(dir.path(), "k.pem", Duration::from_secs(60));
        let mut jwks = issuer.jwks();
        let keys = jwks["keys"].as_array_mut().expect("keys");
        keys.push(serde_json::json!({"kty": "RSA", "kid": "r", "n": "AQAB", "e": "AQAB"}));
        keys.push(serde_json::json!({"kty": "EC", "crv": "P-384", "kid": "p", "x": "AA", "y": "AA"}));
        let parsed = parse_jwks(&jwks).expect("parse");
        assert_eq!(parsed.keys().collect::<Vec<_>>(), vec![issuer.kid()]);
        assert!(Verifier::from_jwks(&serde_json::json!({}), ISS).is_err());
    }

    /// A real HTTP server that serves whatever JWKS is in `current`, counting requests.
    async fn serve_jwks(current: Arc<RwLock<serde_json::Value>>, hits: Arc<AtomicUsize>) -> String {
        use axum::routing::get;
        let app = axum::Router::new().route(
            "/.well-known/jwks.json",
            get(move || {
                let current = current.clone();
                let hits = hits.clone();
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    axum::Json(current.read().expect("lock").clone())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/.well-known/jwks.json")
    }

    #[tokio::test]
    async fn remote_jwks_is_fetched_cached_and_refetched_for_new_kids() {
        zt_tls::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let a = issuer_in(dir.path(), "a.pem", Duration::from_secs(3600));
        let b = issuer_in(dir.path(), "b.pem", Duration::from_secs(3600));
        let current = Arc::new(RwLock::new(a.jwks()));
        let hits = Arc::new(AtomicUsize::new(0));
        let url = serve_jwks(current.clone(), hits.clone()).await;

        let verifier = Verifier::remote(&url, ISS, Duration::from_millis(300));
        let (ta, ca) = a.issue(1, "jake").expect("issue");
        assert_eq!(verifier.verify(&ta).await.expect("a"), ca);
        assert_eq!(verifier.clone().verify(&ta).await.expect("a again"), ca);
        assert_eq!(hits.load(Ordering::SeqCst), 1, "cached");

        // The issuer's key changes: the new kid is unknown until a refetch is allowed.
        *current.write().expect("lock") = b.jwks();
        let (tb, cb) = b.issue(2, "amy").expect("issue");
        let err = verifier.verify(&tb).await.expect_err("too soon to refetch");
        assert!(matches!(err, TokenError::UnknownKey { .. }), "{err:?}");
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(verifier.verify(&tb).await.expect("b after refetch"), cb);
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        // Unknown kids do not hammer the server.
        let other = issuer_in(dir.path(), "c.pem", Duration::from_secs(3600));
        let (tc, _) = other.issue(3, "rosa").expect("issue");
        for _ in 0..5 {
            assert!(matches!(verifier.verify(&tc).await, Err(TokenError::UnknownKey { .. })));
        }
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn default_verifier_against_real_server() {
        zt_tls::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let a = issuer_in(dir.path(), "a.pem", Duration::from_secs(3600));
        let url = serve_jwks(Arc::new(RwLock::new(a.jwks())), Arc::new(AtomicUsize::new(0))).await;
        let verifier = Verifier::new(&url, ISS);
        let (token, claims) = a.issue(5, "terry").expect("issue");
        assert_eq!(verifier.verify(&token).await.expect("valid"), claims);
    }

    #[tokio::test]
    async fn unreachable_jwks_is_named() {
        zt_tls::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let a = issuer_in(dir.path(), "a.pem", Duration::from_secs(3600));
        // A port that was just free: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let url = format!("http://127.0.0.1:{port}/.well-known/jwks.json");
        let verifier = Verifier::new(&url, ISS);
        let (token, _) = a.issue(1, "jake").expect("issue");
        let err = verifier.verify(&token).await.expect_err("unreachable");
        assert!(matches!(err, TokenError::JwksUnavailable { url: ref u, .. } if *u == url), "{err:?}");
        // Within the refetch interval the same reason is reported without another attempt.
        let err = verifier.verify(&token).await.expect_err("unreachable");
        assert!(matches!(err, TokenError::JwksUnavailable { .. }), "{err:?}");
    }
}
