//! Request spans: every request a service serves runs in one `request` span, so each log line
//! written while serving it carries the span's fields (see [`crate::telemetry`]):
//! - `trace_id`: the caller's `x-trace-id` (1 to 64 visible ASCII characters), else Envoy's
//!   `x-request-id`, else a new one. Handlers find it as the [`TraceId`] extension, to pass it on
//!   as `x-trace-id` when they call another service; the answer carries it in `x-trace-id`.
//! - `actor`: who asks, as far as the service has authenticated it: the peer's SPIFFE ID on an
//!   mTLS listener, else `anonymous`, until a handler or middleware that authenticates the
//!   caller further (a signed-in person, an API key, the SPIFFE ID Envoy forwards) names it with
//!   [`set_actor`].
//! - `http_method` and `path`.
//!
//! [`trace`] does this for axum routers; entry-manager's gRPC layer uses [`span`] and
//! [`trace_id`] directly.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;

/// The header that carries a trace ID between services.
pub const TRACE_HEADER: &str = "x-trace-id";

/// The actor of a request nobody has authenticated (yet).
pub const ANONYMOUS: &str = "anonymous";

/// The trace ID of the request being served (a request extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceId(pub String);

/// The trace ID a caller sent in `x-trace-id` (or Envoy's `x-request-id`), when it is 1 to 64
/// visible ASCII characters; otherwise a new one.
pub fn trace_id(headers: &HeaderMap) -> String {
    [TRACE_HEADER, "x-request-id"]
        .iter()
        .filter_map(|h| headers.get(*h)?.to_str().ok())
        .find(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned)
}

/// The span of one request. Its level is ERROR so that it is recorded whatever `RUST_LOG` says
/// (the filter still decides which events are written).
pub fn span(trace_id: &str, actor: Option<&str>, http_method: &str, path: &str) -> tracing::Span {
    tracing::error_span!("request", trace_id, actor = actor.unwrap_or(ANONYMOUS), http_method, path)
}

/// Names the actor of the request being served (call it inside the request, once the caller is
/// authenticated).
pub fn set_actor(actor: &str) {
    tracing::Span::current().record("actor", actor);
}

/// Axum middleware that runs each request in its [`span`]: add it outermost, as
/// `.layer(axum::middleware::from_fn(zt_service::request::trace))`.
pub async fn trace(mut req: Request, next: Next) -> Response {
    let id = trace_id(req.headers());
    let peer = req.extensions().get::<zt_tls::PeerIdentity>().map(|p| p.spiffe_id.to_string());
    let span = span(&id, peer.as_deref(), req.method().as_str(), req.uri().path());
    req.extensions_mut().insert(TraceId(id.clone()));
    let mut resp = next.run(req).instrument(span).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(TRACE_HEADER, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_id_is_the_callers_when_it_is_sane() {
        let mut h = HeaderMap::new();
        let new = trace_id(&h);
        assert_eq!(new.len(), 32, "{new}");
        assert_ne!(trace_id(&h), new, "a new one each time");
        h.insert("x-request-id", HeaderValue::from_static("envoy-1"));
        assert_eq!(trace_id(&h), "envoy-1");
        h.insert(TRACE_HEADER, HeaderValue::from_static("abc-123"));
        assert_eq!(trace_id(&h), "abc-123", "x-trace-id first");
        h.insert(TRACE_HEADER, HeaderValue::from_static("has space"));
        assert_eq!(trace_id(&h), "envoy-1", "not visible ASCII");
        h.insert(TRACE_HEADER, HeaderValue::from_str(&"x".repeat(65)).expect("value"));
        h.remove("x-request-id");
        assert_eq!(trace_id(&h).len(), 32, "too long: a new one");
    }
}
