//! `GET /v1/documents/{id}`: who is asking, for whom, and what opa says.
//!
//! 1. The caller is the SPIFFE ID of the client certificate (mTLS). The listener already
//!    refused callers outside `allowed_clients` (403 naming the caller) and callers of other
//!    trust domains (TLS handshake).
//! 2. The user comes from `authorization: Bearer <user token>`, a JWT the backend issued,
//!    verified against the backend's JWKS. Every read is for a user: no header, or a token that
//!    does not verify, is 401 (`agent without a user (gpt4)` when an agent called without one).
//! 3. Only then is the document looked up: 404 when it does not exist, with no policy decision.
//!    So a caller who proves no user learns nothing about which documents exist.
//! 4. The agent is derived from the caller's SPIFFE ID (`spiffe://<td>/agent/<name>`), never
//!    from the request.
//! 5. opa decides; the answer is the document (200), opa's reason (403), or 503 when opa gives
//!    no decision. Every outcome is logged as one JSON line (never the token); only outcomes
//!    that reached opa count as decisions.

use axum::extract::{Path, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;
use zt_identity::{SpiffeId, TrustDomain};
use zt_tls::PeerIdentity;
use zt_usertoken::{TokenError, Verifier};

use crate::Error;
use crate::catalogue::{Catalogue, Document};
use crate::opa::{Decision, DecisionInput, OpaClient};

/// What the document handler needs besides opa.
#[derive(Debug, Clone)]
pub struct Context {
    /// This service's trust domain (agents are `spiffe://<td>/agent/<name>`).
    pub trust_domain: TrustDomain,
    /// Verifies user tokens.
    pub verifier: Verifier,
    /// The documents.
    pub catalogue: Catalogue,
}

/// The router's state.
#[derive(Debug, Clone)]
pub struct AppState {
    /// See [`Context`].
    pub context: Context,
    /// The opa client.
    pub opa: OpaClient,
}

/// The mTLS application router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/documents/{id}", axum::routing::get(get_document))
        .route("/v1/opa/peer", axum::routing::get(opa_peer))
        .with_state(state)
        .layer(axum::middleware::from_fn(zt_service::request::trace))
}

/// A granted read: the document and opa's decision.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Granted {
    /// The document's fields.
    #[serde(flatten)]
    pub document: Document,
    /// opa's decision (`allow` is true).
    pub decision: Decision,
}

impl IntoResponse for Granted {
    fn into_response(self) -> Response {
        (StatusCode::OK, Json(self)).into_response()
    }
}

/// The agent a caller is: `name` for `spiffe://<trust_domain>/agent/<name>` (one path segment),
/// `None` for any other ID.
pub fn agent_of(trust_domain: &TrustDomain, caller: &SpiffeId) -> Option<String> {
    if caller.trust_domain_name() != trust_domain.as_str() {
        return None;
    }
    let name = caller.path().strip_prefix("/agent/")?;
    (!name.is_empty() && !name.contains('/')).then(|| name.to_owned())
}

/// A document ID as it may appear in a URL path: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn check_document_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && id != "."
        && id != "..";
    if ok { Ok(()) } else { Err(Error::InvalidDocumentId(id.chars().take(80).collect())) }
}

/// The bearer token of an `authorization` header value.
fn bearer(value: &HeaderValue) -> Result<&str, Error> {
    let rejected = |why: &str| Error::TokenRejected(why.to_owned());
    let value = value.to_str().map_err(|_| rejected("the authorization header is not text"))?;
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(|| rejected("expected 'Bearer <token>'"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(rejected("expected 'Bearer <token>'"));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(rejected("the bearer token is empty"));
    }
    Ok(token)
}

/// The verified user of a request: `None` without an `authorization` header.
pub async fn user_of(verifier: &Verifier, authorization: Option<&HeaderValue>) -> Result<Option<String>, Error> {
    let Some(value) = authorization else { return Ok(None) };
    let token = bearer(value)?;
    match verifier.verify(token).await {
        Ok(claims) => Ok(Some(claims.username)),
        // The keys could not be had: not the caller's fault.
        Err(e @ (TokenError::JwksUnavailable { .. } | TokenError::Key(_))) => {
            Err(Error::TokenUnverifiable(e.to_string()))
        }
        Err(e) => Err(Error::TokenRejected(e.to_string())),
    }
}

/// Serves one read of `doc` by `caller` with the request's `authorization` header; `decide`
/// asks the policy. Logs the outcome.
pub async fn read<F, Fut>(
    cx: &Context,
    caller: &SpiffeId,
    authorization: Option<&HeaderValue>,
    doc: &str,
    decide: F,
) -> Result<Granted, Error>
where
    F: FnOnce(DecisionInput) -> Fut,
    Fut: std::future::Future<Output = Result<Decision, Error>>,
{
    let agent = agent_of(&cx.trust_domain, caller);
    let mut user = None;
    let mut asked = false;
    let result = async {
        user = user_of(&cx.verifier, authorization).await?;
        let Some(username) = user.clone() else {
            return Err(Error::UserRequired(match &agent {
                Some(a) => format!("agent without a user ({a})"),
                None => "no user in the request".to_owned(),
            }));
        };
        check_document_id(doc)?;
        let document = cx.catalogue.get(doc).cloned().ok_or_else(|| Error::NotFound(doc.to_owned()))?;
        let input = DecisionInput {
            caller_spiffe_id: caller.to_string(),
            user: Some(username),
            agent: agent.clone(),
            document: doc.to_owned(),
        };
        asked = true;
        let decision = decide(input).await?;
        if !decision.allow {
            return Err(Error::Denied(decision.reason));
        }
        Ok(Granted { document, decision })
    }
    .await;
    log(caller, user.as_deref(), agent.as_deref(), doc, asked, &result);
    result
}

/// Logs one read. `decided`: opa was asked, so this is a policy decision (counted as one);
/// otherwise the request was refused before any decision.
fn log(
    caller: &SpiffeId,
    user: Option<&str>,
    agent: Option<&str>,
    doc: &str,
    decided: bool,
    result: &Result<Granted, Error>,
) {
    let (allow, reason) = match result {
        Ok(g) => (true, g.decision.reason.clone()),
        Err(e) => (false, e.reason()),
    };
    let status = match result {
        Ok(_) => StatusCode::OK.as_u16(),
        Err(e) => e.status().as_u16(),
    };
    if decided {
        metrics::counter!("document_decisions_total", "allow" => allow.to_string()).increment(1);
        tracing::info!(caller = %caller, user, agent, doc, allow, reason, status, "document decision");
    } else {
        tracing::info!(caller = %caller, user, agent, doc, reason, status, "document request refused before a decision");
    }
}

async fn get_document(
    State(state): State<AppState>,
    peer: PeerIdentity,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let opa = state.opa.clone();
    let result = read(&state.context, &peer.spiffe_id, headers.get(AUTHORIZATION), &id, |input| async move {
        opa.decide(&input).await
    })
    .await;
    match result {
        Ok(granted) => granted.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn opa_peer(State(state): State<AppState>) -> Response {
    match state.opa.whoami().await {
        Ok(peer) => Json(peer).into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, Json(json!({"error": "opa_unavailable", "message": e.to_string()})))
            .into_response(),
    }
}

impl Error {
    /// The HTTP status of this error (the one place that maps them).
    pub fn status(&self) -> StatusCode {
        match self {
            Error::InvalidDocumentId(_) => StatusCode::BAD_REQUEST,
            Error::TokenRejected(_) | Error::UserRequired(_) => StatusCode::UNAUTHORIZED,
            Error::Denied(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::TokenUnverifiable(_) | Error::Opa(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Catalogue(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The reason shown to the caller: the policy's own reason for a denial, else the message.
    pub fn reason(&self) -> String {
        match self {
            Error::Denied(reason) => reason.clone(),
            other => other.to_string(),
        }
    }
}

#[cfg(test)]
#[path = "api_tests.rs"]
mod tests;

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(json!({"allow": false, "reason": self.reason()}))).into_response();
        // RFC 6750: no credentials get a bare challenge, bad ones name the error.
        let challenge = match self {
            Error::TokenRejected(_) => Some(r#"Bearer error="invalid_token""#),
            Error::UserRequired(_) => Some("Bearer"),
            _ => None,
        };
        if let Some(challenge) = challenge {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        response
    }
}
