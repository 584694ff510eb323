//! The drills' HTTP: one plain request through [`zt_tls::client::web_send`], answering
//! `(status, body)` with status 0 when nothing answered (the drills report that, they do not
//! fail on it).

use std::time::Duration;

use serde_json::Value;

/// Per-request timeout.
const HTTP_TIMEOUT: Duration = Duration::from_secs(20);

/// One request with `headers`: (status, body). Status 0 when nothing answered.
pub async fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Option<Value>) -> (u16, String) {
    let Ok(method) = hyper::Method::from_bytes(method.as_bytes()) else { return (0, "bad method".into()) };
    let client = zt_tls::client::web_client();
    match zt_tls::client::web_send(&client, method, url, headers, body.as_ref(), HTTP_TIMEOUT).await {
        Ok(r) => (r.status.as_u16(), String::from_utf8_lossy(&r.body).into_owned()),
        Err(e) => (0, e.to_string()),
    }
}

/// One request, with a bearer `token` if any.
pub async fn request(method: &str, url: &str, body: Option<Value>, token: Option<&str>) -> (u16, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    send(method, url, &headers, body).await
}

/// `GET url` as JSON (`null` when it is not); status 0 when nothing answered.
pub async fn get_json(url: &str) -> (u16, Value) {
    let (status, text) = request("GET", url, None, None).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}
