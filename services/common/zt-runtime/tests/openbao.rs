//! OpenBao against the real `bao` binary: lifecycle (init, unseal, restart) and the lab's OIDC
//! identity provider. Needs `./scripts/install-infra.sh` to have installed OpenBao.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Instant;

use serde_json::Value;
use tempfile::TempDir;
use zt_runtime::openbao::{self, IdentityConfig, OidcInfo, OpenBao, UserSpec};

/// Stops the server it holds when dropped, also when a test panics.
struct Guard(Option<OpenBao>);

impl Guard {
    fn bao(&self) -> &OpenBao {
        self.0.as_ref().expect("a running OpenBao")
    }

    async fn stop(&mut self) {
        if let Some(bao) = self.0.take() {
            bao.stop().await;
            assert!(!bao.record.is_alive(), "OpenBao still runs after stop");
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(bao) = self.0.take() {
            bao.record.stop_blocking(nix::sys::signal::Signal::SIGTERM, std::time::Duration::from_secs(10));
        }
    }
}

fn temp_dir() -> TempDir {
    tempfile::Builder::new().prefix("ztl").tempdir_in("/tmp").expect("temp dir")
}

async fn start(dir: &Path, port: u16) -> Guard {
    let t = Instant::now();
    let bao = openbao::start(&dir.join("openbao"), port, dir.join("logs/openbao.log"))
        .await
        .unwrap_or_else(|e| panic!("starting OpenBao: {e}"));
    eprintln!("OpenBao up on {} in {:?}", bao.addr, t.elapsed());
    Guard(Some(bao))
}

fn users() -> IdentityConfig {
    IdentityConfig::lab(vec![
        UserSpec::new("alice", "alice-password", &["ztlab-admins", "ztlab-viewers"]),
        UserSpec::new("bob", "bob-password", &["ztlab-viewers"]),
        UserSpec::new("dora", "dora-password", &["ztlab-developers"]),
    ])
}

async fn configured(dir: &Path) -> (Guard, OidcInfo) {
    let port = zt_runtime::ports::free_port().expect("port");
    let guard = start(dir, port).await;
    let bao = guard.bao();
    let root = bao.root_token().expect("root token");
    let cfg = users();
    let t = Instant::now();
    let first = bao.configure_identity(&root, &cfg).await.unwrap_or_else(|e| panic!("configure_identity: {e}"));
    eprintln!("configure_identity (first run) took {:?}", t.elapsed());
    let t = Instant::now();
    let second =
        bao.configure_identity(&root, &cfg).await.unwrap_or_else(|e| panic!("configure_identity, second run: {e}"));
    eprintln!("configure_identity (second run) took {:?}", t.elapsed());
    assert_eq!(first, second, "configure_identity is idempotent");
    (guard, first)
}

/// Decodes base64url without padding (JWT segments); no crypto or base64 crate needed.
fn b64url(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            b'=' => break,
            _ => panic!("not base64url: {c:?} in {s}"),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn jwt_part(jwt: &str, i: usize) -> Value {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWS has three parts: {jwt}");
    serde_json::from_slice(&b64url(parts[i])).expect("JSON segment")
}

async fn get_json(port: u16, path: &str) -> Value {
    let (status, body) =
        zt_runtime::health::http_get(port, path).await.unwrap_or_else(|| panic!("no answer from GET {path}"));
    assert_eq!(status, 200, "GET {path} without a token: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

#[test]
fn b64url_decodes() {
    assert_eq!(b64url("eyJhIjoxfQ"), br#"{"a":1}"#);
    assert_eq!(b64url("YWJj"), b"abc");
}

#[tokio::test(flavor = "multi_thread")]
async fn starts_initialised_unsealed_and_unseals_itself_after_restart() {
    let dir = temp_dir();
    let port = zt_runtime::ports::free_port().expect("port");
    let mut guard = start(dir.path(), port).await;

    let bao = guard.bao();
    let health = bao.health().await.expect("health");
    assert!(health.initialized, "{health:?}");
    assert!(!health.sealed, "{health:?}");
    assert!(!health.standby, "{health:?}");
    assert_eq!(health.version, "2.7.2");
    assert!(bao.dir.join("openbao.hcl").is_file(), "the rendered config is kept");
    let key_file = bao.key_file();
    let mode = std::fs::metadata(&key_file).expect("key file").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{} mode {mode:o}", key_file.display());
    let keys_before = std::fs::read_to_string(&key_file).expect("read key file");
    let root = bao.root_token().expect("root token");
    assert!(!root.is_empty());

    // Stop it and start it again on the same dir: it is sealed at start and unseals itself
    // from the key file (no second init).
    guard.stop().await;
    let mut guard = start(dir.path(), port).await;
    let bao = guard.bao();
    let health = bao.health().await.expect("health after restart");
    assert!(health.initialized && !health.sealed && !health.standby, "{health:?}");
    assert_eq!(
        std::fs::read_to_string(bao.key_file()).expect("key file"),
        keys_before,
        "a restart does not initialise again"
    );
    assert_eq!(bao.root_token().expect("root token"), root);
    // The root token from the first run still works.
    let cfg = IdentityConfig::lab(vec![]);
    bao.configure_identity(&root, &cfg)
        .await
        .unwrap_or_else(|e| panic!("the old root token works after a restart: {e}"));
    guard.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_tokens_carry_issuer_audience_and_groups() {
    let dir = temp_dir();
    let (guard, info) = configured(dir.path()).await;
    let bao = guard.bao();
    assert_eq!(info.issuer, format!("{}/v1/identity/oidc", bao.addr));
    assert_eq!(info.audience, "ztlab-entry-manager");
    assert_eq!(info.groups_claim, "groups");

    let t = Instant::now();
    let jwt = bao
        .user_token("alice", "alice-password", "entry-manager")
        .await
        .unwrap_or_else(|e| panic!("user_token for alice: {e}"));
    eprintln!("user_token took {:?}", t.elapsed());
    let header = jwt_part(&jwt, 0);
    let claims = jwt_part(&jwt, 1);
    eprintln!("header {header}\nclaims {claims}");
    assert_eq!(header["alg"], "ES256", "{header}");
    assert_eq!(claims["iss"], info.issuer.as_str(), "{claims}");
    assert_eq!(claims["aud"], info.audience.as_str(), "{claims}");
    assert_eq!(claims["preferred_username"], "alice", "{claims}");
    assert_eq!(claims["username"], "alice", "{claims}");
    let groups: Vec<&str> = claims[info.groups_claim.as_str()]
        .as_array()
        .unwrap_or_else(|| panic!("no groups array: {claims}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(groups.contains(&"ztlab-admins"), "{claims}");
    assert!(groups.contains(&"ztlab-viewers"), "{claims}");
    let ttl = claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat");
    assert_eq!(ttl, 15 * 60, "{claims}");

    // The token's key is published.
    let jwks = get_json(bao.port, "/v1/identity/oidc/.well-known/keys").await;
    assert!(
        jwks["keys"].as_array().expect("keys").iter().any(|k| k["kid"] == header["kid"]),
        "kid {} not in {jwks}",
        header["kid"]
    );

    // Another user gets only their own groups.
    let jwt = bao
        .user_token("bob", "bob-password", "entry-manager")
        .await
        .unwrap_or_else(|e| panic!("user_token for bob: {e}"));
    let claims = jwt_part(&jwt, 1);
    assert_eq!(claims["groups"], serde_json::json!(["ztlab-viewers"]), "{claims}");
    assert_ne!(claims["sub"], Value::Null);

    // A wrong password fails clearly.
    let err =
        bao.user_token("alice", "not-alices-password", "entry-manager").await.expect_err("a wrong password must fail");
    let msg = err.to_string();
    eprintln!("wrong password: {msg}");
    assert!(msg.contains("userpass login of \"alice\""), "{msg}");
    assert!(msg.contains("invalid username or password"), "{msg}");
    assert!(msg.contains("openbao.log"), "the error names the log: {msg}");
    assert!(!msg.contains("not-alices-password"), "no password in errors: {msg}");

    // A role the user may not read is refused by policy.
    let err = bao
        .user_token("alice", "alice-password", "no-such-role")
        .await
        .expect_err("only the configured role is allowed");
    assert!(err.to_string().contains("permission denied"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_and_jwks_are_public_and_consistent() {
    let dir = temp_dir();
    let (guard, info) = configured(dir.path()).await;
    let bao = guard.bao();
    let prefix = format!("http://127.0.0.1:{}", bao.port);
    let path = |url: &str| -> String {
        url.strip_prefix(&prefix).unwrap_or_else(|| panic!("{url} is not on {prefix}")).to_owned()
    };
    let discovery = get_json(bao.port, &path(&info.discovery_url)).await;
    eprintln!("discovery {discovery}");
    assert_eq!(discovery["issuer"], info.issuer.as_str(), "{discovery}");
    assert_eq!(discovery["jwks_uri"], info.jwks_url.as_str(), "{discovery}");
    assert_eq!(info.discovery_url, format!("{}/.well-known/openid-configuration", info.issuer));
    let algs = discovery["id_token_signing_alg_values_supported"].as_array().expect("algs");
    assert!(algs.iter().any(|a| a == "ES256"), "{discovery}");

    let jwks_url = discovery["jwks_uri"].as_str().expect("jwks_uri");
    let jwks = get_json(bao.port, &path(jwks_url)).await;
    let keys = jwks["keys"].as_array().expect("keys");
    assert!(!keys.is_empty(), "{jwks}");
    assert!(keys.iter().all(|k| k["kty"] == "EC" && k["crv"] == "P-256" && k["use"] == "sig"), "{jwks}");
}
