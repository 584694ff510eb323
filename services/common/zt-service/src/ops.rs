//! The plain-HTTP operations listener: `/healthz` and `/metrics`. It carries no application
//! data, so it needs no mTLS; bind it to loopback. [`router`] is for a workload with one
//! identity, [`router_for_identities`] for a process that holds several (the agent runtime).

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use zt_tls::X509Source;

/// `/healthz` and `/metrics` for a workload whose identity is `source`.
pub fn router(component: &'static str, source: X509Source, metrics: Option<PrometheusHandle>) -> Router {
    with_metrics(Router::new().route("/healthz", get(move || healthz(component, source.clone()))), metrics)
}

/// One of several identities a process holds (for example one per hosted agent), as
/// [`router_for_identities`] reports it.
#[derive(Debug, Clone)]
pub struct Identity {
    /// A short name (`gpt4`).
    pub name: String,
    /// The SPIFFE ID this identity must have.
    pub spiffe_id: String,
    /// The source that presents it (see `zt_tls::source::connect_as`).
    pub source: X509Source,
}

/// `/healthz` and `/metrics` for a process that holds several identities. `/healthz` lists each
/// one's SPIFFE ID and SVID expiry under `identities`, with the earliest expiry at the top level;
/// it answers 503 if any identity has no SVID, an expired one, or one with another SPIFFE ID.
pub fn router_for_identities(
    component: &'static str,
    identities: Vec<Identity>,
    metrics: Option<PrometheusHandle>,
) -> Router {
    let identities = std::sync::Arc::new(identities);
    with_metrics(
        Router::new().route("/healthz", get(move || healthz_identities(component, identities.clone()))),
        metrics,
    )
}

fn with_metrics(router: Router, metrics: Option<PrometheusHandle>) -> Router {
    router.route(
        "/metrics",
        get(move || {
            let body = metrics.as_ref().map(PrometheusHandle::render).unwrap_or_default();
            async move { ([("content-type", "text/plain; version=0.0.4")], body) }
        }),
    )
}

/// The state of one source's SVID: `Ok` with its fields when valid, `Err` with a reason and
/// what is known otherwise.
fn svid_state(source: &X509Source) -> Result<serde_json::Map<String, serde_json::Value>, (String, serde_json::Value)> {
    use serde_json::json;
    match zt_tls::source::current_svid(source) {
        Some(svid) if svid.seconds_left() > 0 => {
            let mut fields = serde_json::Map::new();
            fields.insert("svid_seconds_left".into(), svid.seconds_left().into());
            fields.insert("spiffe_id".into(), svid.spiffe_id.into());
            fields.insert("svid_serial".into(), svid.serial.into());
            fields.insert("svid_expires_at".into(), svid.expires_at.into());
            Ok(fields)
        }
        Some(svid) => Err((
            format!("SVID expired at {}", svid.expires_at),
            json!({"spiffe_id": svid.spiffe_id, "svid_expires_at": svid.expires_at}),
        )),
        None => Err(("no X.509-SVID from the Workload API".into(), json!({}))),
    }
}

async fn healthz(component: &'static str, source: X509Source) -> impl IntoResponse {
    let mut body = serde_json::Map::new();
    let code = match svid_state(&source) {
        Ok(fields) => {
            body.insert("status".into(), "ok".into());
            body.insert("component".into(), component.into());
            body.extend(fields);
            StatusCode::OK
        }
        Err((reason, known)) => {
            body.insert("status".into(), "unhealthy".into());
            body.insert("component".into(), component.into());
            body.insert("reason".into(), reason.into());
            if let serde_json::Value::Object(known) = known {
                body.extend(known);
            }
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    (code, Json(serde_json::Value::Object(body)))
}

async fn healthz_identities(component: &'static str, identities: std::sync::Arc<Vec<Identity>>) -> impl IntoResponse {
    let mut list = Vec::new();
    let mut reasons = Vec::new();
    let mut earliest: Option<(i64, serde_json::Value)> = None;
    for id in identities.iter() {
        let mut entry = serde_json::Map::new();
        entry.insert("name".into(), id.name.clone().into());
        match svid_state(&id.source) {
            Ok(fields) if fields.get("spiffe_id").and_then(|v| v.as_str()) == Some(id.spiffe_id.as_str()) => {
                let left = fields.get("svid_seconds_left").and_then(serde_json::Value::as_i64).unwrap_or(0);
                if earliest.as_ref().is_none_or(|(l, _)| left < *l) {
                    earliest = Some((left, fields.get("svid_expires_at").cloned().unwrap_or_default()));
                }
                entry.insert("status".into(), "ok".into());
                entry.extend(fields);
            }
            Ok(fields) => {
                let got = fields.get("spiffe_id").cloned().unwrap_or_default();
                let reason = format!("the SVID presented is {got}, not {}", id.spiffe_id);
                reasons.push(format!("{}: {reason}", id.name));
                entry.insert("status".into(), "unhealthy".into());
                entry.insert("reason".into(), reason.into());
                entry.extend(fields);
                entry.insert("spiffe_id".into(), id.spiffe_id.clone().into());
            }
            Err((reason, known)) => {
                reasons.push(format!("{} ({}): {reason}", id.name, id.spiffe_id));
                entry.insert("status".into(), "unhealthy".into());
                entry.insert("reason".into(), reason.into());
                if let serde_json::Value::Object(known) = known {
                    entry.extend(known);
                }
                entry.insert("spiffe_id".into(), id.spiffe_id.clone().into());
            }
        }
        list.push(serde_json::Value::Object(entry));
    }
    if identities.is_empty() {
        reasons.push("no identities configured".into());
    }
    let mut body = serde_json::json!({
        "status": if reasons.is_empty() { "ok" } else { "unhealthy" },
        "component": component,
        "identities": list,
    });
    if let Some((left, at)) = earliest {
        body["svid_expires_at"] = at;
        body["svid_seconds_left"] = left.into();
    }
    if reasons.is_empty() {
        (StatusCode::OK, Json(body))
    } else {
        body["reason"] = reasons.join("; ").into();
        (StatusCode::SERVICE_UNAVAILABLE, Json(body))
    }
}

/// Bucket bounds, in seconds, of every histogram of every service (`*_seconds`). They span the
/// figures in docs/perf.md: tens of microseconds (a decision in process) and sub-millisecond
/// requests (mTLS, the Envoy chain, opa), milliseconds (create→SYNCED, a Run Demo), and seconds
/// (a 10,000-entry sync round, long-polls).
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The exporter every service uses: histograms with [`LATENCY_BUCKETS`] (`_bucket`, `_sum`,
/// `_count` lines), not summaries.
fn metrics_builder() -> metrics_exporter_prometheus::PrometheusBuilder {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)
        .expect("LATENCY_BUCKETS is not empty")
}

/// Installs the Prometheus recorder for this process and returns its handle; `None` (and a
/// warning) when a recorder is installed already.
pub fn install_metrics() -> Option<PrometheusHandle> {
    match metrics_builder().install_recorder() {
        Ok(handle) => Some(handle),
        Err(e) => {
            tracing::warn!(error = %e, "no Prometheus recorder: /metrics stays empty");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_exported_with_the_latency_buckets() {
        let recorder = metrics_builder().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::histogram!("request_duration_seconds", "method" => "m").record(0.0003);
            metrics::histogram!("request_duration_seconds", "method" => "m").record(2.0);
        });
        let text = handle.render();
        assert!(text.contains("# TYPE request_duration_seconds histogram"), "{text}");
        assert!(!text.contains("quantile="), "a summary, not a histogram:\n{text}");
        for (le, count) in [("0.0001", 0), ("0.0005", 1), ("1", 1), ("2.5", 2), ("+Inf", 2)] {
            let line = format!("request_duration_seconds_bucket{{method=\"m\",le=\"{le}\"}} {count}");
            assert!(text.lines().any(|l| l == line), "no line {line:?} in:\n{text}");
        }
        assert!(text.contains("request_duration_seconds_count{method=\"m\"} 2"), "{text}");
    }
}
