//! The handler logic with real user tokens (an `Issuer` in a temporary directory, verified from
//! its JWKS) and the repository's Rego policy evaluated in-process (the opa crate's engine).
//! mTLS and the opa service itself are covered by the end-to-end tests.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode};
use axum::response::IntoResponse as _;
use serde_json::{Value, json};
use zt_identity::{SpiffeId, TrustDomain};
use zt_usertoken::{Issuer, Verifier};

use super::*;

const TD: &str = "ztlab.test";

struct Fixture {
    _dir: tempfile::TempDir,
    key_file: std::path::PathBuf,
    issuer: Issuer,
    cx: Context,
    policy: opa::Policy,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("user-token.pem");
    let issuer = Issuer::load_or_create(&key_file, "ztlab-backend", Duration::from_secs(600)).expect("issuer");
    let verifier = Verifier::from_jwks(&issuer.jwks(), "ztlab-backend").expect("verifier");
    let cx = Context {
        trust_domain: TrustDomain::new(TD).expect("td"),
        verifier,
        catalogue: Catalogue::lab().expect("catalogue"),
    };
    let policies = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/rego");
    let policy = opa::Policy::load(&policies).expect("policies/rego loads");
    Fixture { _dir: dir, key_file, issuer, cx, policy }
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).expect("id")
}

fn caller(agent: Option<&str>) -> SpiffeId {
    id(&opa::scenarios::caller_id(TD, agent))
}

fn bearer(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("Bearer {token}")).expect("header")
}

impl Fixture {
    fn token(&self, user: &str) -> HeaderValue {
        bearer(&self.issuer.issue(1, user).expect("issue").0)
    }

    /// One read, decided by the repository's policy in-process.
    async fn read(&self, caller: &SpiffeId, auth: Option<&HeaderValue>, doc: &str) -> Result<Granted, Error> {
        read(&self.cx, caller, auth, doc, |input| async move {
            let input = serde_json::to_value(&input).expect("input");
            let path = opa::DataPath::parse(opa::scenarios::DECISION_PATH);
            let result = self.policy.eval(&path, Some(input)).map_err(|e| Error::Opa(e.to_string()))?;
            let result = result.ok_or_else(|| Error::Opa("no decision".into()))?;
            serde_json::from_value(result).map_err(|e| Error::Opa(e.to_string()))
        })
        .await
    }

    /// Signs `claims` with the issuer's key and kid (for tokens `Issuer` would never issue).
    fn sign(&self, claims: Value) -> String {
        let pem = std::fs::read(&self.key_file).expect("key");
        let key = jsonwebtoken::EncodingKey::from_ec_pem(&pem).expect("pem");
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.issuer.kid().to_owned());
        jsonwebtoken::encode(&header, &claims, &key).expect("sign")
    }
}

async fn answer(e: Error) -> (StatusCode, Value) {
    let resp = e.into_response();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    (status, serde_json::from_slice(&bytes).expect("json"))
}

#[test]
fn agents_come_from_the_caller_id() {
    let td = TrustDomain::new(TD).expect("td");
    assert_eq!(agent_of(&td, &id("spiffe://ztlab.test/agent/gpt4")).as_deref(), Some("gpt4"));
    assert_eq!(agent_of(&td, &id("spiffe://ztlab.test/agent/summarizer")).as_deref(), Some("summarizer"));
    for not_agent in [
        "spiffe://ztlab.test/ns/demo/sa/frontend",
        "spiffe://other.test/agent/gpt4",
        "spiffe://ztlab.test/agent/gpt4/extra",
        "spiffe://ztlab.test/agents/gpt4",
        "spiffe://ztlab.test/x/agent/gpt4",
    ] {
        assert_eq!(agent_of(&td, &id(not_agent)), None, "{not_agent}");
    }
}

#[test]
fn document_ids_are_checked() {
    for ok in ["DOC-001", "a.b_c"] {
        check_document_id(ok).expect(ok);
    }
    for bad in ["", "..", "DOC 1", "DOC-001?x", &"x".repeat(65)] {
        assert!(matches!(check_document_id(bad), Err(Error::InvalidDocumentId(_))), "{bad:?}");
    }
}

#[tokio::test]
async fn the_nine_scenarios_with_real_tokens() {
    let f = fixture();
    for s in opa::scenarios::NINE {
        let token = s.user.map(|u| f.token(u));
        let got = f.read(&caller(s.agent), token.as_ref(), s.document).await;
        match got {
            Ok(granted) => {
                assert!(s.allow, "{}: granted but the policy says no", s.title());
                assert_eq!(granted.decision, Decision { allow: true, reason: s.reason.into() }, "{}", s.title());
                assert_eq!(granted.document.id, s.document);
                let json = serde_json::to_value(&granted).expect("json");
                for field in ["id", "title", "department", "body"] {
                    assert!(json[field].is_string(), "{}: {field} in {json}", s.title());
                }
                assert_eq!(json["decision"], json!({"allow": true, "reason": s.reason}));
            }
            Err(e) => {
                assert!(!s.allow, "{}: refused: {e}", s.title());
                let (status, body) = answer(e).await;
                // Without a user the read is refused at authentication, before opa.
                let want = if s.user.is_none() { StatusCode::UNAUTHORIZED } else { StatusCode::FORBIDDEN };
                assert_eq!(status, want, "{}", s.title());
                assert_eq!(body, json!({"allow": false, "reason": s.reason}), "{}", s.title());
            }
        }
    }
}

#[tokio::test]
async fn departments_come_from_the_policy_data() {
    let f = fixture();
    let alice = f.token("alice");
    let granted = f.read(&caller(None), Some(&alice), "DOC-002").await.expect("alice has finance");
    assert_eq!(granted.document.department, "finance");
}

#[tokio::test]
async fn an_unknown_document_is_404_after_authentication_and_never_reaches_opa() {
    let f = fixture();
    let alice = f.token("alice");
    for agent in [None, Some("gpt4")] {
        let asked = AtomicBool::new(false);
        let err = read(&f.cx, &caller(agent), Some(&alice), "DOC-999", |_| async {
            asked.store(true, Ordering::SeqCst);
            Ok(Decision { allow: false, reason: "must not be asked".into() })
        })
        .await
        .expect_err("unknown");
        assert!(!asked.load(Ordering::SeqCst), "{agent:?}: opa was asked about a document that does not exist");
        let (status, body) = answer(err).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{agent:?}: {body}");
        assert_eq!(body["reason"], "document DOC-999 does not exist", "{agent:?}");
    }
}

#[tokio::test]
async fn without_a_user_the_answer_is_the_same_whether_or_not_the_document_exists() {
    let f = fixture();
    let garbage = bearer("not-a-jwt");
    for (agent, auth, want) in [
        (None, None, "no user in the request"),
        (Some("gpt4"), None, "agent without a user (gpt4)"),
        (None, Some(&garbage), "user token rejected: malformed token"),
    ] {
        let mut answers = Vec::new();
        for doc in ["DOC-001", "DOC-999"] {
            let asked = AtomicBool::new(false);
            let err = read(&f.cx, &caller(agent), auth, doc, |_| async {
                asked.store(true, Ordering::SeqCst);
                Ok(Decision { allow: true, reason: "must not be asked".into() })
            })
            .await
            .expect_err("no user");
            assert!(!asked.load(Ordering::SeqCst), "{doc}: opa was asked without a user");
            let (status, body) = answer(err).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{doc}: {body}");
            assert!(body["reason"].as_str().unwrap_or_default().starts_with(want), "{doc}: {body}");
            answers.push((status, body));
        }
        assert_eq!(answers[0], answers[1], "{agent:?}: the answers differ, so they tell which documents exist");
    }
    let resp = Error::UserRequired("no user in the request".into()).into_response();
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
}

#[tokio::test]
async fn bad_tokens_are_rejected_before_opa_is_asked() {
    let f = fixture();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    let other_dir = tempfile::tempdir().expect("tempdir");
    let stranger =
        Issuer::load_or_create(&other_dir.path().join("k.pem"), "ztlab-backend", Duration::from_secs(60)).expect("k");
    let wrong_issuer =
        Issuer::load_or_create(&f.key_file, "someone-else", Duration::from_secs(60)).expect("same key, other iss");
    let good = f.issuer.issue(1, "alice").expect("issue").0;
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[1] = f
        .sign(json!({"user_id": 1, "username": "bob", "iat": now, "exp": now + 60, "iss": "ztlab-backend"}))
        .split('.')
        .nth(1)
        .expect("payload")
        .to_owned();
    let tampered = parts.join(".");

    let cases: Vec<(&str, HeaderValue, &str)> = vec![
        ("garbage", bearer("not-a-jwt"), "user token rejected: malformed token"),
        (
            "expired",
            bearer(&f.sign(
                json!({"user_id": 1, "username": "alice", "iat": now - 600, "exp": now - 300, "iss": "ztlab-backend"}),
            )),
            "user token rejected: token expired",
        ),
        (
            "forged (unknown key)",
            bearer(&stranger.issue(1, "alice").expect("issue").0),
            "user token rejected: token key id",
        ),
        ("tampered", bearer(&tampered), "user token rejected: token signature does not verify"),
        (
            "wrong issuer",
            bearer(&wrong_issuer.issue(1, "alice").expect("issue").0),
            "user token rejected: token issuer",
        ),
        (
            "not bearer",
            HeaderValue::from_static("Basic YWxpY2U6cHc="),
            "user token rejected: expected 'Bearer <token>'",
        ),
        ("empty bearer", HeaderValue::from_static("Bearer "), "user token rejected: expected 'Bearer <token>'"),
    ];
    for (name, header, want) in cases {
        let asked = AtomicBool::new(false);
        let got = read(&f.cx, &caller(Some("gpt4")), Some(&header), "DOC-001", |_| async {
            asked.store(true, Ordering::SeqCst);
            Ok(Decision { allow: true, reason: "must not be asked".into() })
        })
        .await;
        let err = got.expect_err(name);
        assert!(!asked.load(Ordering::SeqCst), "{name}: opa was asked");
        let (status, body) = answer(err).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {body}");
        assert_eq!(body["allow"], false);
        let reason = body["reason"].as_str().expect("reason");
        assert!(reason.starts_with(want), "{name}: {reason}");
        assert!(!body.to_string().contains("eyJ"), "{name}: the token is never echoed: {body}");
    }
}

#[tokio::test]
async fn a_rejected_token_answers_401_with_www_authenticate() {
    let resp = Error::TokenRejected("token expired".into()).into_response();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["www-authenticate"], r#"Bearer error="invalid_token""#);
}

#[tokio::test]
async fn opa_and_jwks_failures_are_503_and_named() {
    let f = fixture();
    let alice = f.token("alice");
    let err = read(&f.cx, &caller(None), Some(&alice), "DOC-001", |_| async {
        Err(Error::Opa("cannot connect to https://127.0.0.1:1/v1/data/ztlab/documents/decision: refused".into()))
    })
    .await
    .expect_err("no opa");
    let (status, body) = answer(err).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["reason"].as_str().unwrap_or_default().contains("policy service (opa)"), "{body}");

    // The backend's JWKS is down: the token cannot be checked, which is not the caller's fault.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let cx = Context {
        verifier: Verifier::new(&format!("http://127.0.0.1:{port}/.well-known/jwks.json"), "ztlab-backend"),
        ..f.cx.clone()
    };
    let err = read(&cx, &caller(None), Some(&alice), "DOC-001", |_| async { Err(Error::Opa("not asked".into())) })
        .await
        .expect_err("no jwks");
    let (status, body) = answer(err).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body["reason"].as_str().unwrap_or_default().starts_with("cannot verify the user token"), "{body}");
}

#[tokio::test]
async fn the_decision_input_names_caller_user_and_agent() {
    let f = fixture();
    let seen = std::sync::Mutex::new(None);
    let bob = f.token("bob");
    let _ = read(&f.cx, &caller(Some("claude")), Some(&bob), "DOC-003", |input| {
        *seen.lock().expect("lock") = Some(input);
        async { Ok(Decision { allow: false, reason: "test".into() }) }
    })
    .await;
    let input = seen.lock().expect("lock").clone().expect("asked");
    assert_eq!(
        input,
        DecisionInput {
            caller_spiffe_id: "spiffe://ztlab.test/agent/claude".into(),
            user: Some("bob".into()),
            agent: Some("claude".into()),
            document: "DOC-003".into(),
        }
    );
    // The frontend reading for a user: not an agent.
    let alice = f.token("alice");
    let _ = read(&f.cx, &caller(None), Some(&alice), "DOC-001", |input| {
        *seen.lock().expect("lock") = Some(input);
        async { Ok(Decision { allow: false, reason: "test".into() }) }
    })
    .await;
    let input = seen.lock().expect("lock").clone().expect("asked");
    assert_eq!((input.user.as_deref(), input.agent), (Some("alice"), None));
}

#[test]
fn default_callers_are_the_frontend_and_the_agents() {
    let rule = crate::Config::default().client_rule().expect("rule");
    let text = rule.to_string();
    for allowed in [
        "spiffe://ztlab.test/ns/demo/sa/frontend",
        "spiffe://ztlab.test/agent/gpt4",
        "spiffe://ztlab.test/agent/claude",
        "spiffe://ztlab.test/agent/summarizer",
    ] {
        assert!(zt_identity::Authorizer::authorize(&rule, &id(allowed)).is_ok(), "{allowed}: {text}");
    }
    for refused in
        ["spiffe://ztlab.test/ns/demo/sa/backend", "spiffe://ztlab.test/agent/llama", "spiffe://other.test/agent/gpt4"]
    {
        assert!(zt_identity::Authorizer::authorize(&rule, &id(refused)).is_err(), "{refused}");
    }
    let config = crate::Config { allowed_clients: vec!["spiffe://ztlab.test/agent/gpt4".into()], ..Default::default() };
    let rule = config.client_rule().expect("rule");
    assert!(zt_identity::Authorizer::authorize(&rule, &id("spiffe://ztlab.test/ns/demo/sa/frontend")).is_err());
}

#[test]
fn config_is_validated() {
    assert!(crate::Config::default().validate().is_ok());
    let bad = crate::Config { user_jwks_url: "127.0.0.1:9090/jwks".into(), ..Default::default() };
    assert!(bad.validate().expect_err("no scheme").to_string().contains("user_jwks_url"));
    let bad = crate::Config { opa_url: "http://127.0.0.1:8181".into(), ..Default::default() };
    assert!(bad.validate().expect_err("http").to_string().contains("opa_url"));
    let bad = crate::Config { user_token_issuer: " ".into(), ..Default::default() };
    assert!(bad.validate().expect_err("empty").to_string().contains("user_token_issuer"));
}
