//! The demo run: one call to the backend's `GET /api/demo` through the frontend's Envoy, told
//! as three hops with their evidence.
//!
//! 1. frontend → backend, via the two Envoys (SDS mTLS + RBAC). Evidence: the SPIFFE IDs the
//!    backend's Envoy verified (client and server, from the XFCC header it set).
//! 2. backend → PostgreSQL (spiffe-helper certificates + OpenBao dynamic credentials). Evidence:
//!    the client SPIFFE ID PostgreSQL saw, the database user, the TLS version and cipher.
//! 3. backend → OpenBao (JWT-SVID login, dynamic database credentials). Evidence: lease ID,
//!    TTL left, lease duration, rotations.
//!
//! How answers map (see [`hops_from_reply`] and [`hops_from_error`]):
//! - 200 with the backend's JSON: every hop green, with evidence.
//! - 403 whose body starts with `RBAC:`: Envoy RBAC refused the call; hop 1 red, reason `rbac`.
//! - the local Envoy does not answer, or its admin `/ready` is not `LIVE`: hop 1 red, reason
//!   `envoy_not_ready`.
//! - 503 from Envoy (`upstream connect error…`, `no healthy upstream`) while Envoy is live:
//!   hop 1 red, reason `backend_unreachable` (or `tls` when Envoy reports a TLS failure).
//! - the backend's JSON error (`{"error","hop","reason"}`): hop 1 green, the named hop red with
//!   the backend's reason, later hops `skipped`.
//!
//! A hop that is not reached is red with reason `skipped`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::Error;
use crate::envoy::{Readiness, Reply};

/// The backend's demo endpoint.
pub const DEMO_PATH: &str = "/api/demo";

/// One hop of the demo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hop {
    /// The caller.
    pub from: String,
    /// The callee.
    pub to: String,
    /// How the hop is secured.
    pub via: String,
    /// Whether the hop succeeded.
    pub ok: bool,
    /// What proves it (an object; empty when there is nothing to show).
    pub evidence: Value,
    /// What went wrong, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A short machine-readable reason: `rbac`, `envoy_not_ready`, `backend_unreachable`,
    /// `tls`, `skipped`, `bad_response`, or the backend's own (`database_down`,
    /// `openbao_sealed`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The answer of `POST /api/run-demo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemoReport {
    /// Whether every hop succeeded.
    pub ok: bool,
    /// How long the run took, in milliseconds.
    pub took_ms: u64,
    /// The hops, in order.
    pub hops: Vec<Hop>,
}

impl DemoReport {
    /// A report from `hops`.
    pub fn new(hops: Vec<Hop>, took_ms: u64) -> Self {
        Self { ok: hops.iter().all(|h| h.ok), took_ms, hops }
    }
}

/// The three hops: (index in the response of `GET /api/demo`, from, to, via).
const HOPS: [(&str, &str, &str, &str); 3] = [
    ("envoy", "frontend", "backend", "envoy (SDS mTLS + RBAC)"),
    ("postgres", "backend", "postgres", "TLS with spiffe-helper certificates + OpenBao dynamic credentials"),
    ("openbao", "backend", "openbao", "JWT-SVID login, dynamic database credentials"),
];

fn hop(i: usize) -> Hop {
    let (_, from, to, via) = HOPS[i];
    Hop { from: from.into(), to: to.into(), via: via.into(), ok: false, evidence: json!({}), error: None, reason: None }
}

fn passed(i: usize, evidence: Value) -> Hop {
    Hop { ok: true, evidence, ..hop(i) }
}

fn failed(i: usize, reason: &str, error: impl Into<String>, evidence: Value) -> Hop {
    Hop { reason: Some(reason.into()), error: Some(error.into()), evidence, ..hop(i) }
}

fn skipped(i: usize, because: &str) -> Hop {
    failed(i, "skipped", format!("not reached: {because}"), json!({}))
}

/// Hop 1 failed: the other two are skipped.
fn first_hop_failed(reason: &str, error: impl Into<String>, evidence: Value) -> Vec<Hop> {
    let error = error.into();
    vec![
        failed(0, reason, error, evidence),
        skipped(1, "the call to the backend failed"),
        skipped(2, "the call to the backend failed"),
    ]
}

/// Parses an `x-forwarded-client-cert` value into its `By` (the server) and `URI` (the client)
/// SPIFFE IDs (first element only).
pub fn parse_xfcc(xfcc: &str) -> (Option<String>, Option<String>) {
    let first = xfcc.split(',').next().unwrap_or_default();
    let (mut by, mut uri) = (None, None);
    for pair in first.split(';') {
        let Some((key, value)) = pair.split_once('=') else { continue };
        let value = value.trim().trim_matches('"').to_owned();
        match key.trim().to_ascii_lowercase().as_str() {
            "by" if by.is_none() => by = Some(value),
            "uri" if uri.is_none() => uri = Some(value),
            _ => {}
        }
    }
    (by, uri)
}

/// Hop 1's evidence: the backend's `envoy` section, with the client and server SPIFFE IDs
/// filled in from the XFCC header when the backend did not parse them.
fn envoy_evidence(section: &Map<String, Value>) -> Value {
    let mut evidence = section.clone();
    if let Some(xfcc) = section.get("xfcc").and_then(Value::as_str) {
        let (by, uri) = parse_xfcc(xfcc);
        for (key, value) in [("server_spiffe_id", by), ("client_spiffe_id", uri)] {
            if evidence.get(key).is_none_or(Value::is_null)
                && let Some(v) = value
            {
                evidence.insert(key.into(), v.into());
            }
        }
    }
    Value::Object(evidence)
}

/// The hops from a 200 answer of `GET /api/demo`.
fn hops_from_success(body: &Map<String, Value>) -> Vec<Hop> {
    HOPS.iter()
        .enumerate()
        .map(|(i, (key, ..))| match body.get(*key).and_then(Value::as_object) {
            Some(section) if i == 0 => passed(i, envoy_evidence(section)),
            Some(section) => {
                let mut evidence = section.clone();
                if *key == "postgres"
                    && let Some(orders) = body.get("orders").and_then(Value::as_array)
                {
                    evidence.insert("orders_read".into(), orders.len().into());
                }
                passed(i, Value::Object(evidence))
            }
            None => failed(i, "bad_response", format!("the backend answered 200 without a {key:?} section"), json!({})),
        })
        .collect()
}

/// The hops from the backend's JSON error (`{"error","hop","reason"}`), when it names a hop.
fn hops_from_backend_error(status: u16, body: &Map<String, Value>) -> Option<Vec<Hop>> {
    let at = body.get("hop").and_then(Value::as_str)?;
    let failing = HOPS.iter().skip(1).position(|(key, ..)| *key == at)? + 1;
    let reason = body.get("reason").and_then(Value::as_str).unwrap_or("backend_error");
    let error = body.get("error").and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| format!("{at} failed"));
    let mut hops = Vec::with_capacity(3);
    let first = match body.get("envoy").and_then(Value::as_object) {
        Some(section) => envoy_evidence(section),
        None => json!({"http_status": status, "note": "the request passed both Envoys and reached the backend"}),
    };
    hops.push(passed(0, first));
    for (i, (key, ..)) in HOPS.iter().enumerate().skip(1) {
        let section = body.get(*key).and_then(Value::as_object);
        hops.push(match i.cmp(&failing) {
            std::cmp::Ordering::Less => match section {
                Some(s) => passed(i, Value::Object(s.clone())),
                None => skipped(i, &format!("the backend stopped at the {at} hop")),
            },
            std::cmp::Ordering::Equal => {
                failed(i, reason, error.clone(), section.map(|s| Value::Object(s.clone())).unwrap_or(json!({})))
            }
            std::cmp::Ordering::Greater => skipped(i, &format!("the {at} hop failed first")),
        });
    }
    Some(hops)
}

/// Whether a body is one of Envoy's own upstream failure replies.
fn is_upstream_failure(body: &str) -> bool {
    let b = body.to_ascii_lowercase();
    b.starts_with("upstream connect error")
        || b.contains("no healthy upstream")
        || b.contains("upstream request timeout")
        || b.contains("disconnect/reset before headers")
}

/// The hops from an HTTP answer of `GET /api/demo` through the local Envoy. `readiness` is
/// asked only when the answer may mean that the local Envoy is not ready (a 503 of Envoy's own).
pub async fn hops_from_reply<F, Fut>(reply: &Reply, readiness: F) -> Vec<Hop>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Readiness>,
{
    let status = reply.status.as_u16();
    let text = reply.text();
    let json = reply.json();
    if status == 200 {
        return match json.as_ref().and_then(Value::as_object) {
            Some(body) => hops_from_success(body),
            None => first_hop_failed(
                "bad_response",
                format!("the backend answered 200 without its JSON: {}", excerpt(&text)),
                json!({"http_status": status}),
            ),
        };
    }
    if status == 403 && text.starts_with("RBAC:") {
        let mut evidence = json!({"http_status": status, "enforced_by": "the backend's Envoy (RBAC filter)"});
        if let Some((_, id)) = text.split_once("denied for ") {
            evidence["denied_spiffe_id"] = id.trim().into();
        }
        return first_hop_failed("rbac", text.trim(), evidence);
    }
    if let Some(body) = json.as_ref().and_then(Value::as_object)
        && let Some(hops) = hops_from_backend_error(status, body)
    {
        return hops;
    }
    if status == 503 && is_upstream_failure(&text) {
        if let Readiness::NotReady(why) = readiness().await {
            return first_hop_failed(
                "envoy_not_ready",
                format!("the frontend's Envoy is not ready: {why}"),
                json!({"http_status": status, "envoy_reply": text.trim()}),
            );
        }
        let lower = text.to_ascii_lowercase();
        let reason = if lower.contains("tls error") || lower.contains("certificate") || lower.contains("ssl") {
            "tls"
        } else {
            "backend_unreachable"
        };
        return first_hop_failed(reason, text.trim(), json!({"http_status": status}));
    }
    // Any other answer: the backend's JSON error without a hop, or something unexpected.
    let (reason, error) = match json.as_ref().and_then(Value::as_object) {
        Some(body) => (
            body.get("reason").and_then(Value::as_str).unwrap_or("backend_error").to_owned(),
            body.get("error").and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| excerpt(&text)),
        ),
        None => ("unexpected_status".to_owned(), format!("HTTP {status}: {}", excerpt(&text))),
    };
    first_hop_failed(&reason, error, json!({"http_status": status}))
}

/// The hops when no HTTP answer came back from the local Envoy.
pub fn hops_from_error(err: &Error, readiness: Readiness) -> Vec<Hop> {
    match (err, readiness) {
        (Error::Timeout { .. }, Readiness::Live) => first_hop_failed("timeout", err.to_string(), json!({})),
        (_, Readiness::NotReady(why)) => first_hop_failed(
            "envoy_not_ready",
            format!("the frontend's Envoy is not ready: {why}; the call failed: {err}"),
            json!({}),
        ),
        (_, Readiness::Live) => first_hop_failed(
            "envoy_not_ready",
            format!("the frontend's Envoy is live but the call failed: {err}"),
            json!({}),
        ),
    }
}

/// At most 300 characters of `text`, trimmed.
fn excerpt(text: &str) -> String {
    let t = text.trim();
    if t.chars().count() <= 300 { t.to_owned() } else { format!("{}…", t.chars().take(300).collect::<String>()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use hyper::StatusCode;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).expect("status"),
            content_type: None,
            body: Bytes::from(body.to_owned()),
        }
    }

    async fn live() -> Readiness {
        Readiness::Live
    }

    fn reasons(hops: &[Hop]) -> Vec<Option<&str>> {
        hops.iter().map(|h| h.reason.as_deref()).collect()
    }

    #[test]
    fn xfcc_parsing() {
        let xfcc = "By=spiffe://ztlab.test/ns/demo/sa/backend;Hash=ab12;URI=spiffe://ztlab.test/ns/demo/sa/frontend";
        assert_eq!(
            parse_xfcc(xfcc),
            (
                Some("spiffe://ztlab.test/ns/demo/sa/backend".into()),
                Some("spiffe://ztlab.test/ns/demo/sa/frontend".into())
            )
        );
        assert_eq!(parse_xfcc("By=\"spiffe://a/b\";URI=spiffe://a/c,By=x;URI=y").0.as_deref(), Some("spiffe://a/b"));
        assert_eq!(parse_xfcc(""), (None, None));
    }

    #[tokio::test]
    async fn a_success_fills_every_hop() {
        let body = json!({
            "envoy": {"xfcc": "By=spiffe://ztlab.test/ns/demo/sa/backend;Hash=00;URI=spiffe://ztlab.test/ns/demo/sa/frontend"},
            "postgres": {"client_spiffe_id": "spiffe://ztlab.test/ns/demo/sa/backend", "ssl_version": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384", "db_user": "v-jwt-backend-abc"},
            "openbao": {"lease_id": "database/creds/backend/xyz", "ttl_left_secs": 50, "lease_duration_secs": 60, "rotations": 2},
            "orders": [{"id": 1}, {"id": 2}]
        });
        let hops = hops_from_reply(&reply(200, &body.to_string()), live).await;
        assert!(hops.iter().all(|h| h.ok), "{hops:?}");
        assert_eq!(hops[0].evidence["client_spiffe_id"], "spiffe://ztlab.test/ns/demo/sa/frontend");
        assert_eq!(hops[0].evidence["server_spiffe_id"], "spiffe://ztlab.test/ns/demo/sa/backend");
        assert_eq!(hops[1].evidence["db_user"], "v-jwt-backend-abc");
        assert_eq!(hops[1].evidence["orders_read"], 2);
        assert_eq!(hops[2].evidence["rotations"], 2);
        assert_eq!(
            hops.iter().map(|h| (h.from.as_str(), h.to.as_str())).collect::<Vec<_>>(),
            [("frontend", "backend"), ("backend", "postgres"), ("backend", "openbao")]
        );
        assert_eq!(hops[0].via, "envoy (SDS mTLS + RBAC)");
        let json = serde_json::to_value(&hops[0]).expect("json");
        assert!(json.get("error").is_none() && json.get("reason").is_none(), "{json}");
    }

    #[tokio::test]
    async fn a_missing_section_is_a_bad_response() {
        let body = json!({"envoy": {"client_spiffe_id": "a", "server_spiffe_id": "b", "xfcc": ""}, "postgres": {}});
        let hops = hops_from_reply(&reply(200, &body.to_string()), live).await;
        assert_eq!(reasons(&hops), [None, None, Some("bad_response")]);
        // The backend's own IDs win over the XFCC.
        assert_eq!(hops[0].evidence["client_spiffe_id"], "a");
        let hops = hops_from_reply(&reply(200, "<html>"), live).await;
        assert_eq!(reasons(&hops), [Some("bad_response"), Some("skipped"), Some("skipped")]);
    }

    #[tokio::test]
    async fn rbac_denial() {
        let body = "RBAC: denied for spiffe://ztlab.test/ns/demo/sa/intruder";
        let hops = hops_from_reply(&reply(403, body), live).await;
        assert_eq!(reasons(&hops), [Some("rbac"), Some("skipped"), Some("skipped")]);
        assert_eq!(hops[0].error.as_deref(), Some(body));
        assert_eq!(hops[0].evidence["denied_spiffe_id"], "spiffe://ztlab.test/ns/demo/sa/intruder");
        assert!(!hops[1].ok && !hops[2].ok);
    }

    #[tokio::test]
    async fn upstream_failures() {
        let body = "upstream connect error or disconnect/reset before headers. reset reason: connection failure, \
                    transport failure reason: delayed connect error: Connection refused";
        let hops = hops_from_reply(&reply(503, body), live).await;
        assert_eq!(reasons(&hops), [Some("backend_unreachable"), Some("skipped"), Some("skipped")]);
        assert_eq!(hops[0].error.as_deref(), Some(body));

        let tls = "upstream connect error or disconnect/reset before headers. reset reason: connection failure, \
                   transport failure reason: TLS_error:|268435581:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED";
        assert_eq!(reasons(&hops_from_reply(&reply(503, tls), live).await)[0], Some("tls"));

        let not_ready = || async { Readiness::NotReady("Envoy reports PRE_INITIALIZING".into()) };
        let hops = hops_from_reply(&reply(503, "no healthy upstream"), not_ready).await;
        assert_eq!(reasons(&hops)[0], Some("envoy_not_ready"));
        assert!(hops[0].error.as_deref().unwrap_or_default().contains("PRE_INITIALIZING"), "{hops:?}");
    }

    #[tokio::test]
    async fn backend_errors_name_their_hop() {
        let body = json!({"error": "connection refused", "hop": "postgres", "reason": "database_down"});
        let hops = hops_from_reply(&reply(503, &body.to_string()), live).await;
        assert_eq!(reasons(&hops), [None, Some("database_down"), Some("skipped")]);
        assert!(hops[0].ok);
        assert_eq!(hops[1].error.as_deref(), Some("connection refused"));

        let body = json!({"error": "Vault is sealed", "hop": "openbao", "reason": "openbao_sealed",
                          "postgres": {"db_user": "u"}});
        let hops = hops_from_reply(&reply(503, &body.to_string()), live).await;
        assert_eq!(reasons(&hops), [None, None, Some("openbao_sealed")]);
        assert!(hops[0].ok && hops[1].ok && !hops[2].ok);

        // Without the earlier hop's evidence, the earlier hop is not claimed to have worked.
        let body = json!({"error": "connection refused", "hop": "openbao", "reason": "openbao_unreachable"});
        let hops = hops_from_reply(&reply(503, &body.to_string()), live).await;
        assert_eq!(reasons(&hops), [None, Some("skipped"), Some("openbao_unreachable")]);

        // A JSON error that names no hop is the backend's own failure.
        let body = json!({"error": "boom", "reason": "internal"});
        let hops = hops_from_reply(&reply(500, &body.to_string()), live).await;
        assert_eq!(reasons(&hops), [Some("internal"), Some("skipped"), Some("skipped")]);
        let hops = hops_from_reply(&reply(404, ""), live).await;
        assert_eq!(reasons(&hops)[0], Some("unexpected_status"));
    }

    #[test]
    fn no_answer() {
        let err = Error::Connect { url: "http://127.0.0.1:1/api/demo".into(), reason: "refused".into() };
        let hops = hops_from_error(&err, Readiness::NotReady("admin down".into()));
        assert_eq!(reasons(&hops), [Some("envoy_not_ready"), Some("skipped"), Some("skipped")]);
        let err = Error::Timeout { url: "u".into(), timeout: std::time::Duration::from_secs(1) };
        assert_eq!(reasons(&hops_from_error(&err, Readiness::Live))[0], Some("timeout"));
        let report = DemoReport::new(hops, 3);
        assert!(!report.ok);
    }
}
