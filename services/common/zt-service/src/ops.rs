//! The plain-HTTP operations listener: `/healthz` and `/metrics`. It carries no application
//! data, so it needs no mTLS; bind it to loopback.

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use zt_tls::X509Source;

/// `/healthz` and `/metrics` for a workload whose identity is `source`.
pub fn router(component: &'static str, source: X509Source, metrics: Option<PrometheusHandle>) -> Router {
    Router::new().route("/healthz", get(move || healthz(component, source.clone()))).route(
        "/metrics",
        get(move || {
            let body = metrics.as_ref().map(PrometheusHandle::render).unwrap_or_default();
            async move { ([("content-type", "text/plain; version=0.0.4")], body) }
        }),
    )
}

async fn healthz(component: &'static str, source: X509Source) -> impl IntoResponse {
    match zt_tls::source::current_svid(&source) {
        Some(svid) if svid.seconds_left() > 0 => (
            StatusCode::OK,
            Json(serde_json::json!({
                "status": "ok",
                "component": component,
                "spiffe_id": svid.spiffe_id,
                "svid_serial": svid.serial,
                "svid_expires_at": svid.expires_at,
                "svid_seconds_left": svid.seconds_left(),
            })),
        ),
        Some(svid) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({
                "status": "unhealthy",
                "component": component,
                "reason": format!("SVID expired at {}", svid.expires_at),
                "spiffe_id": svid.spiffe_id,
                "svid_expires_at": svid.expires_at,
            })),
        ),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({
                "status": "unhealthy",
                "component": component,
                "reason": "no X.509-SVID from the Workload API",
            })),
        ),
    }
}

/// Installs the Prometheus recorder for this process and returns its handle.
pub fn install_metrics() -> Option<PrometheusHandle> {
    metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder().ok()
}
