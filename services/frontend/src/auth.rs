//! Signing in to the presenter UI.
//!
//! `GET /login` is a form (username, password); `POST /login` checks them with the backend
//! (`POST /api/login` through Envoy, like any other call of the app) and keeps the backend's
//! user token in an `HttpOnly; SameSite=Strict` cookie ([`COOKIE`]) that lives as long as the
//! token. [`require`] guards every UI page, stream and action: it verifies the cookie's token
//! with the backend's JWKS (the same ES256 keys the document service trusts) and puts a
//! [`Session`] in the request's extensions, which handlers take as an argument (`Session` is an
//! extractor); without a valid one a page is redirected to `/login?next=…` and an API call
//! answers 401 `{"error","todo"}`. `POST /logout` drops the cookie.

use axum::Router;
use axum::extract::{Form, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use serde_json::json;

use crate::error::{ApiError, Failure};
use crate::ui;
use crate::{AppState, Error};

/// The session cookie's name.
pub const COOKIE: &str = "ztlab_session";

/// A signed-in presenter, from a verified user token.
#[derive(Debug, Clone)]
pub struct Session {
    /// The user's name (the token's `username`).
    pub user: String,
    /// The backend-issued user token, for calls made on the user's behalf.
    pub token: String,
    /// When the token expires (seconds since the Unix epoch).
    pub exp: i64,
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = ApiError;

    /// The session [`require`] put on the request: a handler behind the login takes the
    /// signed-in user as an argument.
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Session>().cloned().ok_or_else(not_signed_in)
    }
}

/// 401 for an API call without a session.
fn not_signed_in() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "not signed in").todo("sign in at /login, then try again")
}

/// The value of cookie `name` in `headers`, if any.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// Why there is no session.
#[derive(Debug)]
enum NoSession {
    /// No cookie: never signed in (or signed out).
    Missing,
    /// A cookie whose token the backend's keys refuse (expired, another key, malformed).
    Refused(String),
}

async fn session(state: &AppState, headers: &HeaderMap) -> Result<Session, NoSession> {
    let token = cookie(headers, COOKIE).ok_or(NoSession::Missing)?;
    match state.tokens.verify(token).await {
        Ok(claims) => Ok(Session { user: claims.username, token: token.to_owned(), exp: claims.exp }),
        Err(e) => Err(NoSession::Refused(e.to_string())),
    }
}

/// A `next` target that stays on this site: a path, not `//host` or a URL.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') && n.len() <= 512 => n.to_owned(),
        _ => "/dashboard".to_owned(),
    }
}

/// Middleware for the UI's routes: a valid session or no entry (see the module docs).
pub async fn require(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    match session(&state, req.headers()).await {
        Ok(s) => {
            zt_service::request::set_actor(&s.user);
            req.extensions_mut().insert(s);
            next.run(req).await
        }
        Err(why) => {
            let path = req.uri().path();
            let wants_page = req.method() == axum::http::Method::GET
                && !path.starts_with("/api/")
                && !path.starts_with("/events")
                && req
                    .headers()
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_none_or(|a| a.contains("html") || a.contains("*/*"));
            if wants_page {
                let target = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or(path);
                let mut to = format!("/login?next={}", ui::query_value(target));
                if matches!(why, NoSession::Refused(_)) {
                    to.push_str("&expired=1");
                }
                let mut resp = Redirect::to(&to).into_response();
                if matches!(why, NoSession::Refused(_)) {
                    resp.headers_mut().insert(header::SET_COOKIE, clear_cookie());
                }
                resp
            } else {
                match why {
                    NoSession::Missing => not_signed_in(),
                    NoSession::Refused(e) => {
                        ApiError { error: format!("your session is no longer valid ({e})"), ..not_signed_in() }
                    }
                }
                .into_response()
            }
        }
    }
}

fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("ztlab_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

/// `GET /login`'s query.
#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    expired: Option<String>,
}

/// The login form's fields.
#[derive(Debug, Default, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

/// What the login page says above or next to its fields.
#[derive(Debug, Default)]
struct Problems {
    /// A message for the whole form (role="alert").
    form: Option<Failure>,
    username: Option<String>,
    password: Option<String>,
    notice: Option<String>,
}

fn login_page(next: &str, username: &str, p: &Problems) -> String {
    let field = |id: &str, label: &str, kind: &str, value: &str, auto: &str, err: &Option<String>| {
        html! {
            div class="field" {
                label for=(id) { (label) }
                input id=(id) name=(id) type=(kind) value=(value) autocomplete=(auto) required
                    aria-invalid=[err.as_ref().map(|_| "true")] aria-describedby=[err.as_ref().map(|_| format!("{id}-error"))];
                @if let Some(e) = err { p class="field-error" id={ (id) "-error" } { (e) } }
            }
        }
    };
    let body = html! {
        h1 { "Sign in" }
        p class="lead" {
            "Sign in as one of the lab's users to run the scenarios. The backend checks the password (bcrypt) and \
             issues an ES256 user token, which this browser keeps in an HttpOnly cookie."
        }
        @if let Some(n) = &p.notice { p class="notice" role="status" { (n) } }
        @if let Some(f) = &p.form { (f) }
        form class="panel form" method="post" action="/login" {
            input type="hidden" name="next" value=(next);
            (field("username", "Username", "text", username, "username", &p.username))
            (field("password", "Password", "password", "", "current-password", &p.password))
            button type="submit" class="primary" id="login-submit" { "Sign in" }
        }
        p class="muted" {
            "The seeded users are jake, amy, rosa, terry, charles, gina, alice, bob and carol; each one's password is \
             its name followed by 99."
        }
    };
    ui::layout("Sign in", "login", None, &[], body)
}

/// `GET /login`.
pub async fn login_form(Query(q): Query<LoginQuery>) -> Response {
    let notice = q.expired.is_some().then(|| "Your session has ended. Sign in again to go on.".to_owned());
    let next = safe_next(q.next.as_deref());
    ui::html(StatusCode::OK, login_page(&next, "", &Problems { notice, ..Default::default() }))
}

/// `POST /login`: asks the backend, sets the cookie and goes on to `next`, or shows the form again
/// with the problem next to its field.
pub async fn login(State(state): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    let next = safe_next(form.next.as_deref());
    let username = form.username.trim().to_owned();
    let mut p = Problems::default();
    if username.is_empty() {
        p.username = Some("Enter your username.".into());
    }
    if form.password.is_empty() {
        p.password = Some("Enter your password.".into());
    }
    if p.username.is_some() || p.password.is_some() {
        return ui::html(StatusCode::BAD_REQUEST, login_page(&next, &username, &p));
    }
    let body = json!({"username": username, "password": form.password}).to_string();
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let reply = match state.backend.send(axum::http::Method::POST, "/api/login", &headers, body.into()).await {
        Ok(r) => r,
        Err(e) => {
            let todo = match e {
                Error::Timeout { .. } => {
                    "The backend is slow or stuck: check `ztlab status` and the backend's log, then try again."
                }
                _ => {
                    "The frontend's Envoy does not answer: check `ztlab status` (envoy-frontend, envoy-backend, backend) and start the lab with `ztlab up`."
                }
            };
            p.form = Some(Failure::new(format!("cannot reach the backend to check the password: {e}"), todo));
            return ui::html(StatusCode::BAD_GATEWAY, login_page(&next, &username, &p));
        }
    };
    let answer: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
    if reply.status == StatusCode::UNAUTHORIZED {
        p.password = Some("Wrong username or password.".into());
        return ui::html(StatusCode::UNAUTHORIZED, login_page(&next, &username, &p));
    }
    let token = answer["token"].as_str().filter(|_| reply.status.is_success());
    let Some(token) = token else {
        let what = answer["error"].as_str().map(str::to_owned).unwrap_or_else(|| {
            let text = reply.text();
            format!("HTTP {}: {}", reply.status, text.trim())
        });
        let todo = if reply.status == StatusCode::FORBIDDEN {
            "Envoy's RBAC refused the frontend: put the policy back with `ztlab policy rbac allow-frontend`."
        } else {
            "Check `ztlab status` and the backend's log (database, OpenBao), then try again."
        };
        p.form = Some(Failure::new(format!("the backend did not sign you in: {what}"), todo));
        return ui::html(StatusCode::BAD_GATEWAY, login_page(&next, &username, &p));
    };
    let max_age = answer["expires_in"].as_i64().unwrap_or(3600).max(1);
    let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}");
    let mut resp = Redirect::to(&next).into_response();
    match HeaderValue::from_str(&cookie) {
        Ok(v) => {
            resp.headers_mut().insert(header::SET_COOKIE, v);
            tracing::info!(user = %username, "signed in to the UI");
            resp
        }
        Err(_) => {
            p.form = Some(Failure::new(
                "the backend's token is not a valid cookie value",
                "Report this: the token should be a JWT.",
            ));
            ui::html(StatusCode::BAD_GATEWAY, login_page(&next, &username, &p))
        }
    }
}

/// `POST /logout`.
pub async fn logout() -> Response {
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().insert(header::SET_COOKIE, clear_cookie());
    resp
}

/// `/login` and `/logout` (open to everyone).
pub fn routes() -> Router<AppState> {
    use axum::routing::{get, post};
    Router::new().route("/login", get(login_form).post(login)).route("/logout", post(logout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; ztlab_session=tok.en; b=2"));
        assert_eq!(cookie(&h, COOKIE), Some("tok.en"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
        let mut empty = HeaderMap::new();
        empty.append(header::COOKIE, HeaderValue::from_static("ztlab_session="));
        assert_eq!(cookie(&empty, COOKIE), None);
    }

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/scenarios/rotation")), "/scenarios/rotation");
        for bad in ["//evil.example/x", "https://evil.example/", "/\\evil", "", "x"] {
            assert_eq!(safe_next(Some(bad)), "/dashboard", "{bad}");
        }
        assert_eq!(safe_next(None), "/dashboard");
        assert_eq!(ui::query_value("/scenarios?x=1&y"), "/scenarios%3Fx%3D1%26y");
    }
}

/// For in-process tests: a state whose session tokens come from a fresh local key.
#[cfg(test)]
pub(crate) mod testing {
    use std::time::Duration;

    use super::COOKIE;
    use crate::AppState;

    /// Makes `state` accept tokens of a new key and returns a `cookie` header value signed in as
    /// `user`.
    pub(crate) fn sign_in(state: &mut AppState, user: &str) -> String {
        let dir = std::env::temp_dir().join(format!(
            "ztlab-frontend-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let issuer =
            zt_usertoken::Issuer::load_or_create(&dir.join("key.pem"), "ztlab-backend", Duration::from_secs(600))
                .expect("issuer");
        let (token, _) = issuer.issue(1, user).expect("token");
        state.tokens = issuer.verifier();
        let _ = std::fs::remove_dir_all(&dir);
        format!("{COOKIE}={token}")
    }
}
