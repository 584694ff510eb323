//! The user-token negatives of the delegation work, on a lab started with `ztlab up`: expired,
//! forged, wrong-issuer and truncated tokens are refused by the document service, read directly
//! through the frontend or through an agent; an unknown document is 404 only to a caller with a
//! user, and never reaches opa. (The catalogue's scenarios themselves, the nine
//! delegation cases included, run through `ztlab demo` and `demo.sh`: tests/demo.rs.)

use std::time::Duration;

use e2e::applab::{AppLab, AppLabOptions, http_json};
use serde_json::{Value, json};

/// Logs `user` in through the frontend (seeded password `<user>99`).
async fn login(lab: &AppLab, user: &str) -> String {
    let (s, body) = http_json(
        "POST",
        &lab.frontend("/api/login"),
        Some(json!({"username": user, "password": format!("{user}99")})),
        None,
    )
    .await;
    assert_eq!(s, 200, "login {user}: {body}");
    body["token"].as_str().expect("token").to_owned()
}

/// The `agents` runtime's binary as the lab installed it (its path is the agents' selector).
fn act(lab: &AppLab, agent: &str, token: Option<&str>, doc: &str) -> (u16, Value) {
    let mut cmd = std::process::Command::new(lab.state().join("bin/agents"));
    cmd.args(["act", "--agent", agent, "--doc", doc])
        .env("SPIFFE_ENDPOINT_SOCKET", format!("unix://{}", lab.lab().workload_socket("a").expect("socket").display()))
        .env("ZT_TRUST_DOMAIN", "ztlab.test")
        .env("ZT_DOCUMENT_URL", format!("https://127.0.0.1:{}", lab.ports.document))
        .env("ZT_OPS_ADDR", "127.0.0.1:0");
    if let Some(t) = token {
        cmd.args(["--user-token", t]);
    }
    let out = cmd.output().expect("run agents act");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!("agents act: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    (v["status"].as_u64().unwrap_or(0) as u16, v["body"].clone())
}

fn reason(body: &Value) -> String {
    body["reason"].as_str().or_else(|| body["decision"]["reason"].as_str()).unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_forged_and_wrong_issuer_user_tokens_are_refused() {
    let lab = tokio::task::spawn_blocking(|| AppLab::start(AppLabOptions::default())).await.expect("start");
    let good = login(&lab, "alice").await;
    let doc = |t: String| {
        let url = lab.frontend("/api/documents/DOC-001");
        async move { http_json("GET", &url, None, Some(&t)).await }
    };
    let (s, body) = doc(good.clone()).await;
    assert_eq!(s, 200, "the real token works (so the refusals below are about the token): {body}");

    // The backend's own key, but a token that is already expired.
    let key = lab.state().join("backend/user-token.pem");
    let expired = zt_usertoken::Issuer::load_or_create(&key, "ztlab-backend", Duration::from_secs(0))
        .expect("backend key")
        .issue(2, "alice")
        .expect("issue")
        .0;
    tokio::time::sleep(Duration::from_secs(zt_usertoken::LEEWAY_SECS as u64 + 1)).await;
    // Another key: forged.
    let other = e2e::state_dir();
    let forged =
        zt_usertoken::Issuer::load_or_create(&other.path().join("k.pem"), "ztlab-backend", Duration::from_secs(600))
            .expect("key")
            .issue(2, "alice")
            .expect("issue")
            .0;
    // The backend's key, another issuer.
    let wrong_issuer = zt_usertoken::Issuer::load_or_create(&key, "evil", Duration::from_secs(600))
        .expect("key")
        .issue(2, "alice")
        .expect("issue")
        .0;
    // A good token with its signature cut off.
    let truncated = good.rsplit_once('.').map(|(h, _)| format!("{h}.")).unwrap_or_default();
    for (name, token, want) in [
        ("expired", expired, "expired"),
        ("forged", forged, "token"),
        ("wrong issuer", wrong_issuer, "issuer"),
        ("truncated", truncated, "token"),
    ] {
        let (s, body) = doc(token.clone()).await;
        assert!(s == 401 || s == 403, "{name} token must be refused: {s} {body}");
        assert!(reason(&body).contains(want) || body.to_string().contains(want), "{name}: {body}");
        assert!(body.get("body").is_none(), "{name}: no document: {body}");
        // The same token through an agent.
        let (s, body) = tokio::task::block_in_place(|| act(&lab, "gpt4", Some(&token), "DOC-001"));
        assert!(s == 401 || s == 403, "{name} token via gpt4 must be refused: {s} {body}");
    }

    // An unknown document: 404 once caller and user are authenticated, with no policy decision;
    // without a user, the same 401 whether or not the document exists.
    let (s, body) = http_json("GET", &lab.frontend("/api/documents/DOC-999"), None, Some(&good)).await;
    assert_eq!((s, reason(&body).as_str()), (404, "document DOC-999 does not exist"), "{body}");
    let (s, body) = tokio::task::block_in_place(|| act(&lab, "gpt4", Some(&good), "DOC-999"));
    assert_eq!((s, reason(&body).as_str()), (404, "document DOC-999 does not exist"), "via gpt4: {body}");
    let direct = |doc: &'static str| {
        let url = lab.frontend(&format!("/api/documents/{doc}"));
        async move { http_json("GET", &url, None, None).await }
    };
    let (known, unknown) = (direct("DOC-001").await, direct("DOC-999").await);
    assert_eq!(known.0, 401, "{known:?}");
    assert_eq!(known, unknown, "without a user the answers must not tell which documents exist");
    let (known, unknown) =
        tokio::task::block_in_place(|| (act(&lab, "gpt4", None, "DOC-001"), act(&lab, "gpt4", None, "DOC-999")));
    assert_eq!((known.0, reason(&known.1).as_str()), (401, "agent without a user (gpt4)"), "{known:?}");
    assert_eq!(known, unknown, "via gpt4, without a user");
    let opa_log = std::fs::read_to_string(lab.state().join("logs/opa.log")).expect("opa log");
    let decisions: Vec<&str> = opa_log.lines().filter(|l| l.contains(r#""msg":"decision""#)).collect();
    assert!(!decisions.is_empty(), "opa logged the decisions above:\n{opa_log}");
    assert!(!decisions.iter().any(|l| l.contains("DOC-999")), "no decision for an unknown document: {decisions:#?}");
}
