//! The agent runtime: one process that hosts the three AI agents `gpt4`, `claude` and
//! `summarizer`, each with its own SPIFFE ID `spiffe://<td>/agent/<name>`.
//!
//! Identity: the process is one workload to SPIRE (one `unix:path` selector), and three
//! registration entries match it, so the Workload API issues it three X.509-SVIDs. The runtime
//! builds one [`X509Source`] per agent with [`zt_tls::source::connect_as`], which always
//! presents that agent's SVID (through rotation) and never falls back to another one. It refuses
//! to start, naming the missing SPIFFE ID and the ones that were issued, unless every agent's
//! SVID is issued within `svid_wait_secs`.
//!
//! - `agents` (or `agents serve`): holds the three identities and serves the plain-HTTP ops
//!   listener. `/healthz` lists every agent's SPIFFE ID and SVID expiry (`identities`), and
//!   answers 503 if any agent has no valid SVID. There is no application listener: agents only
//!   call out.
//! - `agents act --agent gpt4 --user-token <JWT|-> --doc DOC-001`: calls the document service as
//!   that agent over mTLS (the agent's SVID; the server must be the document service's SPIFFE
//!   ID, `document_id`) at `GET {document_url}/v1/documents/{id}` with
//!   `authorization: Bearer <user token>` when a token is given, and prints the status and body
//!   as one JSON line.
//!
//! The document service admits the three agents (its default `allowed_clients`), derives the
//! agent from the caller's SPIFFE ID, verifies the user token against the backend's JWKS, looks
//! the document up, and asks opa; `act` prints its answer as is: 200 with the document, 403 with
//! the policy's reason, 401 when the token is missing (`agent without a user (gpt4)`) or
//! rejected, 404 for a document that does not exist. The runtime itself does not check the user
//! token.
//!
//! Shape: [`Config`] (layered: defaults, TOML file, `ZT_*`), [`Application::build`] binds the
//! ops listener and connects every agent's source, [`Application::run_until_stopped`] serves
//! until shutdown; [`act`] is the one-shot call.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use zt_identity::{Rule, SpiffeId, lab};
use zt_service::workload::WorkloadSettings;
use zt_tls::client::ClientOptions;
use zt_tls::{MtlsClient, X509Source};

/// The agents this runtime hosts.
pub const AGENTS: [&str; 3] = ["gpt4", "claude", "summarizer"];

/// The SPIFFE ID path of an agent: `/agent/<name>`.
pub fn agent_path(name: &str) -> String {
    format!("/agent/{name}")
}

/// `spiffe://<trust_domain>/agent/<name>` for one of [`AGENTS`]; an unknown name is an error
/// that lists the known ones.
pub fn agent_id(trust_domain: &str, name: &str) -> anyhow::Result<SpiffeId> {
    if !AGENTS.contains(&name) {
        anyhow::bail!("unknown agent {name:?}: this runtime hosts {}", AGENTS.join(", "));
    }
    Ok(lab::id(trust_domain, &agent_path(name))?)
}

/// Configuration: defaults, then the TOML file, then `ZT_*` variables.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Workload API socket, trust domain, ops listener, SVID wait.
    #[serde(flatten)]
    pub workload: WorkloadSettings,
    /// The document service's URL (`ZT_DOCUMENT_URL`).
    pub document_url: String,
    /// The SPIFFE ID the document service must present. Empty means
    /// `spiffe://<trust domain>/ns/demo/sa/document`.
    pub document_id: String,
    /// Per-request timeout for calls to the document service, seconds.
    pub request_timeout_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            workload: WorkloadSettings::default(),
            document_url: "https://127.0.0.1:8085".into(),
            document_id: String::new(),
            request_timeout_secs: 10,
        }
    }
}

impl Config {
    /// The rule the document service's SPIFFE ID must pass.
    pub fn document_rule(&self) -> anyhow::Result<Rule> {
        let td = self.workload.trust_domain()?;
        if self.document_id.is_empty() {
            return Ok(Rule::Exact(lab::id(td.as_str(), lab::DOCUMENT)?));
        }
        Ok(Rule::Exact(zt_identity::parse_id("document_id", &self.document_id)?))
    }

    fn validate(&self) -> anyhow::Result<()> {
        self.document_rule()?;
        if !self.document_url.starts_with("https://") {
            return Err(zt_service::config::ConfigError::field(
                "document_url",
                format!("{:?} is not an https:// URL", self.document_url),
            )
            .into());
        }
        Ok(())
    }

    /// An mTLS client to the document service that presents `agent`'s SVID.
    pub fn document_client(&self, agent: &Agent) -> anyhow::Result<DocumentClient> {
        let td = self.workload.trust_domain()?;
        let options = ClientOptions { timeout: Duration::from_secs(self.request_timeout_secs), ..Default::default() };
        let client = MtlsClient::new(&agent.source, &td, Arc::new(self.document_rule()?), options)?;
        Ok(DocumentClient { client, base: self.document_url.trim_end_matches('/').to_owned() })
    }
}

/// One hosted agent: its name, SPIFFE ID, and the source that presents its SVID.
#[derive(Debug, Clone)]
pub struct Agent {
    /// `gpt4`, `claude` or `summarizer`.
    pub name: &'static str,
    /// `spiffe://<td>/agent/<name>`.
    pub spiffe_id: SpiffeId,
    /// Presents this agent's SVID and no other.
    pub source: X509Source,
}

/// Connects the source of agent `name`, waiting up to `svid_wait_secs` for its SVID.
pub async fn connect_agent(config: &Config, name: &str) -> anyhow::Result<Agent> {
    let td = config.workload.trust_domain()?;
    let spiffe_id = agent_id(td.as_str(), name)?;
    let name = AGENTS.iter().copied().find(|a| *a == name).unwrap_or("?");
    let endpoint = config.workload.endpoint()?;
    let wait = Duration::from_secs(config.workload.svid_wait_secs);
    let source = zt_tls::source::connect_as(&endpoint, &spiffe_id, wait)
        .await
        .with_context(|| format!("agent {name} ({spiffe_id})"))?;
    Ok(Agent { name, spiffe_id, source })
}

/// Connects every agent's source, concurrently. Fails (naming the agent's SPIFFE ID) if any
/// agent's SVID is not issued in time.
pub async fn connect_all(config: &Config) -> anyhow::Result<Vec<Agent>> {
    futures_util::future::try_join_all(AGENTS.iter().map(|a| connect_agent(config, a))).await
}

/// Calls the document service as one agent.
#[derive(Debug, Clone)]
pub struct DocumentClient {
    client: MtlsClient,
    base: String,
}

/// A document ID as it may appear in a URL path: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn check_document_id(doc: &str) -> anyhow::Result<()> {
    let ok = !doc.is_empty()
        && doc.len() <= 64
        && doc.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && doc != "."
        && doc != "..";
    anyhow::ensure!(ok, "invalid document ID {doc:?}: use 1 to 64 of A-Z a-z 0-9 . _ - (like DOC-001)");
    Ok(())
}

impl DocumentClient {
    /// `{document_url}/v1/documents/{doc}`.
    pub fn url(&self, doc: &str) -> String {
        format!("{}/v1/documents/{doc}", self.base)
    }

    /// `GET /v1/documents/{doc}`, with `authorization: Bearer <user_token>` when a token is
    /// given. Any HTTP answer (including 403) is `Ok`; failing to get one is an error.
    pub async fn get_document(&self, doc: &str, user_token: Option<&str>) -> anyhow::Result<zt_tls::client::Response> {
        check_document_id(doc)?;
        let bearer = user_token.map(|t| format!("Bearer {}", t.trim()));
        let headers: Vec<(&str, &str)> = bearer.iter().map(|b| ("authorization", b.as_str())).collect();
        Ok(self.client.request_with_headers(axum::http::Method::GET, &self.url(doc), &headers, None).await?)
    }
}

/// What [`act`] got back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActOutcome {
    /// The agent that called.
    pub agent: String,
    /// The SPIFFE ID it presented.
    pub spiffe_id: String,
    /// Whether a user token was sent.
    pub with_user_token: bool,
    /// The URL called.
    pub url: String,
    /// The HTTP status.
    pub status: u16,
    /// The body: JSON when it parses, else a string.
    pub body: serde_json::Value,
}

/// Calls the document service once as `agent` for document `doc`, with the user's token if
/// given (see the crate docs for the answers).
pub async fn act(config: &Config, agent: &str, user_token: Option<&str>, doc: &str) -> anyhow::Result<ActOutcome> {
    config.validate()?;
    check_document_id(doc)?;
    let agent = connect_agent(config, agent).await?;
    let client = config.document_client(&agent)?;
    let resp = client.get_document(doc, user_token).await?;
    let body = resp
        .json::<serde_json::Value>()
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&resp.body).into_owned()));
    Ok(ActOutcome {
        agent: agent.name.to_owned(),
        spiffe_id: agent.spiffe_id.to_string(),
        with_user_token: user_token.is_some(),
        url: client.url(doc),
        status: resp.status.as_u16(),
        body,
    })
}

/// A built agent runtime: ops listener bound, every agent's SVID in hand.
#[derive(Debug)]
pub struct Application {
    ops: TcpListener,
    agents: Vec<Agent>,
}

impl Application {
    /// Validates the config, binds the ops listener and connects every agent's source.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        let ops = zt_service::workload::bind("ops_addr", &config.workload.ops_addr).await?;
        let agents = connect_all(&config).await?;
        for a in &agents {
            let svid = zt_tls::source::current_svid(&a.source);
            tracing::info!(agent = a.name, spiffe_id = %a.spiffe_id, expires_at = ?svid.map(|s| s.expires_at), "agent identity ready");
        }
        Ok(Self { ops, agents })
    }

    /// The ops listener's address.
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The hosted agents.
    pub fn agents(&self) -> &[Agent] {
        &self.agents
    }

    /// Serves `/healthz` and `/metrics` until `shutdown` resolves.
    pub async fn run_until_stopped<F>(self, shutdown: F) -> anyhow::Result<()>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let identities = self
            .agents
            .iter()
            .map(|a| zt_service::ops::Identity {
                name: a.name.to_owned(),
                spiffe_id: a.spiffe_id.to_string(),
                source: a.source.clone(),
            })
            .collect();
        let _watches: Vec<_> = self.agents.iter().map(|a| zt_tls::source::watch_svid(&a.source)).collect();
        let ops = zt_service::ops::router_for_identities("agents", identities, zt_service::ops::install_metrics());
        tracing::info!(ops = %self.ops_addr(), agents = self.agents.len(), "serving");
        axum::serve(self.ops, ops).with_graceful_shutdown(shutdown).await?;
        tracing::info!("stopped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_ids() {
        assert_eq!(agent_id("ztlab.test", "gpt4").expect("id").to_string(), "spiffe://ztlab.test/agent/gpt4");
        assert_eq!(
            agent_id("ztlab.test", "summarizer").expect("id").to_string(),
            "spiffe://ztlab.test/agent/summarizer"
        );
        let err = agent_id("ztlab.test", "llama").expect_err("unknown").to_string();
        assert!(err.contains("unknown agent \"llama\"") && err.contains("gpt4, claude, summarizer"), "{err}");
    }

    #[test]
    fn document_ids() {
        for ok in ["DOC-001", "a.b_c"] {
            check_document_id(ok).expect(ok);
        }
        for bad in ["", "..", "DOC/001", "DOC 1", "DOC-001?x=1", &"x".repeat(65)] {
            assert!(check_document_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn document_rule_defaults_to_the_document_service() {
        let config = Config::default();
        assert_eq!(
            config.document_rule().expect("rule"),
            Rule::Exact(lab::id("ztlab.test", lab::DOCUMENT).expect("id"))
        );
        let other = Config { document_id: "spiffe://ztlab.test/ns/x/sa/doc".into(), ..Config::default() };
        assert_eq!(other.document_rule().expect("rule"), Rule::exact("spiffe://ztlab.test/ns/x/sa/doc").expect("rule"));
        let bad = Config { document_url: "http://127.0.0.1:1".into(), ..Config::default() };
        assert!(bad.validate().expect_err("http").to_string().contains("document_url"));
    }
}
