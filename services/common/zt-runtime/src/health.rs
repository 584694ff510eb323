//! Readiness probes.

use std::time::Duration;

/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET http://127.0.0.1:<port><path>` with a short timeout: the status and body (lossy UTF-8),
/// or `None` if nothing answered.
pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    // A client per probe: probes run from many runtimes (tests), and a pooled connection
    // outlives neither.
    let client = zt_tls::client::web_client();
    let url = format!("http://127.0.0.1:{port}{path}");
    let resp = zt_tls::client::web_get(&client, &url, PROBE_TIMEOUT).await.ok()?;
    Some((resp.status.as_u16(), String::from_utf8_lossy(&resp.body).into_owned()))
}
