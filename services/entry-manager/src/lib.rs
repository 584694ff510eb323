//! `entry-manager`: the central SPIRE workload-entry management API.
//!
//! One gRPC API (`ztlab.entry.v1`) for every SPIRE deployment ("site"). Entries live in the
//! central PostgreSQL store with revisions and an audit trail; each site's agent long-polls its
//! desired entries, reconciles its SPIRE server and reports per-entry results.
//!
//! Module map:
//! - [`store`]: PostgreSQL, migrations, every read and write (mutations + audit in one tx).
//! - [`auth`]: authentication (mTLS SVID, OIDC JWT, API keys) and the role × operation table.
//! - [`oidc`]: OIDC discovery, JWKS and token verification.
//! - [`service`]: the gRPC services.
//! - [`hub`]: wakes long-polls and streams status changes.
//! - [`presence`]: whether each site agent is connected (its long-poll open or broken off).
//! - [`metrics`]: Prometheus metrics.
//!
//! Listeners: `listen_addr` is mTLS (SVID callers: site agents, ztlab services);
//! `operator_addr` is TLS with the server's SVID and bearer tokens (people and CI); `ops_addr`
//! serves `/healthz` and `/metrics`.

pub mod auth;
pub mod hub;
pub mod metrics;
pub mod oidc;
pub mod presence;
pub mod service;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use zt_entry_api::pb;
use zt_service::workload::{WorkloadSettings, bind};
use zt_tls::{MtlsServer, X509Source};

use crate::auth::{Authenticator, GroupRule, IdentityRule};
use crate::hub::Hub;
use crate::oidc::OidcConfig;
use crate::service::Api;
use crate::store::Store;

/// Configuration: defaults, then the TOML file, then `ZT_*` variables.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Workload API socket, trust domain, ops listener.
    #[serde(flatten)]
    pub workload: WorkloadSettings,
    /// The mTLS gRPC listener (SVID callers).
    pub listen_addr: String,
    /// The TLS gRPC listener for bearer-token callers (people, CI).
    pub operator_addr: String,
    /// libpq connection string of the mgmt database.
    pub database_url: String,
    /// Database pool size.
    pub db_pool_size: usize,
    /// mTLS identities and their roles.
    pub identities: Vec<IdentityRule>,
    /// OIDC for people; none disables OIDC.
    pub oidc: Option<OidcConfig>,
    /// OIDC groups and their roles.
    pub group_roles: Vec<GroupRule>,
    /// Where to write the bootstrap admin API key when it is missing; empty: never.
    pub bootstrap_admin_key_file: Option<PathBuf>,
    /// Sites to create at start-up if they do not exist (the lab's own sites).
    pub sites: Vec<SeedSite>,
}

/// A site created at start-up when missing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SeedSite {
    /// Site ID.
    pub id: String,
    /// Its trust domain.
    pub trust_domain: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            workload: WorkloadSettings::default(),
            listen_addr: "127.0.0.1:8444".into(),
            operator_addr: "127.0.0.1:8443".into(),
            database_url: String::new(),
            db_pool_size: 16,
            identities: vec![],
            oidc: None,
            group_roles: vec![],
            bootstrap_admin_key_file: None,
            sites: vec![],
        }
    }
}

/// A built, bound, not yet serving entry-manager.
pub struct Application {
    mtls: tokio::net::TcpListener,
    operator: tokio::net::TcpListener,
    ops: tokio::net::TcpListener,
    source: X509Source,
    api: Api,
    store: Store,
    config: Config,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application").finish_non_exhaustive()
    }
}

impl Application {
    /// Validates the config, connects to the database (running migrations), binds the listeners
    /// and waits for this workload's SVID.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        if config.database_url.is_empty() {
            return Err(zt_service::config::ConfigError::field(
                "database_url",
                "is required (a libpq connection string)",
            )
            .into());
        }
        config.workload.trust_domain()?;
        for (i, r) in config.identities.iter().enumerate() {
            zt_identity::parse_id(&format!("identities[{i}].spiffe_id"), &r.spiffe_id)?;
            if r.role == auth::Role::SiteAgent && r.site.is_none() {
                return Err(zt_service::config::ConfigError::field(
                    &format!("identities[{i}].site"),
                    "a SiteAgent needs its site",
                )
                .into());
            }
        }
        let mtls = bind("listen_addr", &config.listen_addr).await?;
        let operator = bind("operator_addr", &config.operator_addr).await?;
        let ops = bind("ops_addr", &config.workload.ops_addr).await?;
        let store = Store::connect(&config.database_url, config.db_pool_size).await?;
        if let Some(path) = &config.bootstrap_admin_key_file {
            service::bootstrap_admin_key(&store, path).await?;
        }
        let boot = store::Actor { name: "entry-manager:bootstrap".into(), trace_id: String::new() };
        for (i, seed) in config.sites.iter().enumerate() {
            zt_entry_api::validate::site_id(&format!("sites[{i}].id"), &seed.id)?;
            zt_entry_api::validate::trust_domain(&format!("sites[{i}].trust_domain"), &seed.trust_domain)?;
            match store.get_site(&seed.id).await {
                Ok(existing) if existing.trust_domain != seed.trust_domain => tracing::warn!(
                    site = %seed.id, stored = %existing.trust_domain, configured = %seed.trust_domain,
                    "site exists with another trust domain; keeping the stored one"
                ),
                Ok(_) => {}
                Err(store::StoreError::NotFound(_)) => {
                    let site =
                        pb::Site { id: seed.id.clone(), trust_domain: seed.trust_domain.clone(), ..Default::default() };
                    store.create_site(&boot, &site).await?;
                    tracing::info!(site = %seed.id, "created site");
                }
                Err(e) => return Err(e.into()),
            }
        }
        let source = config.workload.connect().await?;
        let auth = Authenticator::new(&config.identities, &config.group_roles, config.oidc.clone(), store.clone());
        let api = Api::new(store.clone(), auth, Hub::new());
        Ok(Self { mtls, operator, ops, source, api, store, config })
    }

    /// The mTLS gRPC address.
    pub fn mtls_addr(&self) -> SocketAddr {
        self.mtls.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The operator (TLS + bearer) gRPC address.
    pub fn operator_addr(&self) -> SocketAddr {
        self.operator.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves until `shutdown` resolves.
    pub async fn run_until_stopped<F>(self, shutdown: F) -> anyhow::Result<()>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let td = self.config.workload.trust_domain()?;
        // The TLS layer admits any SVID of this trust domain (asked for explicitly); roles come
        // from `identities`, and unknown IDs get PERMISSION_DENIED naming them.
        let members = Arc::new(zt_identity::Rule::member_of(td.as_str())?);
        let mtls = MtlsServer::grpc(&self.source, &td, members)?;
        let operator = MtlsServer::server_auth_only_grpc(&self.source);
        let handle = zt_service::ops::install_metrics();
        let ops = zt_service::ops::router("entry-manager", self.source.clone(), handle);
        let _svid = zt_tls::source::watch_svid(&self.source);
        tokio::spawn(metrics::refresh_gauges(self.store.clone(), Duration::from_secs(5)));

        let stop = zt_service::Stop::on(shutdown);
        tracing::info!(mtls = %self.mtls_addr(), operator = %self.operator_addr(), "serving");
        let ops_task = tokio::spawn(axum::serve(self.ops, ops).with_graceful_shutdown(stop.wait()).into_future());
        let a = grpc_router(&self.api).serve_with_incoming_shutdown(mtls.incoming(self.mtls), stop.wait());
        let b = grpc_router(&self.api).serve_with_incoming_shutdown(operator.incoming(self.operator), stop.wait());
        let (ra, rb) = tokio::join!(a, b);
        ra?;
        rb?;
        ops_task.await??;
        tracing::info!("stopped");
        Ok(())
    }
}

const MAX_MESSAGE: usize = 64 * 1024 * 1024;

fn grpc_router(
    api: &Api,
) -> tonic::transport::server::Router<tower::layer::util::Stack<RequestLayer, tower::layer::util::Identity>> {
    let (reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(async move {
        for n in zt_entry_api::SERVICES {
            reporter.set_service_status(n, tonic_health::ServingStatus::Serving).await;
        }
    });
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(zt_entry_api::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the compiled-in descriptors are valid");
    tonic::transport::Server::builder()
        .layer(RequestLayer)
        .add_service(health)
        .add_service(reflection)
        .add_service(
            pb::workload_entry_service_server::WorkloadEntryServiceServer::new(api.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
        .add_service(pb::site_service_server::SiteServiceServer::new(api.clone()))
        .add_service(
            pb::sync_service_server::SyncServiceServer::new(api.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
        .add_service(pb::audit_service_server::AuditServiceServer::new(api.clone()))
        .add_service(pb::api_key_service_server::ApiKeyServiceServer::new(api.clone()))
        .add_service(pb::identity_service_server::IdentityServiceServer::new(api.clone()))
}

/// For every call: its request span (`trace_id`, `actor`; see `zt_service::request`), with the
/// trace ID as a `TraceId` extension for the handlers, and `grpc_requests_total` and
/// `grpc_request_duration_seconds`.
#[derive(Debug, Clone, Copy)]
pub struct RequestLayer;

impl<S> tower::Layer<S> for RequestLayer {
    type Service = RequestService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestService { inner }
    }
}

/// See [`RequestLayer`].
#[derive(Debug, Clone)]
pub struct RequestService<S> {
    inner: S,
}

impl<S, B, RB> tower::Service<hyper::Request<B>> for RequestService<S>
where
    S: tower::Service<hyper::Request<B>, Response = hyper::Response<RB>> + Send,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: hyper::Request<B>) -> Self::Future {
        use tracing::Instrument as _;
        let method = req.uri().path().to_owned();
        let trace_id = zt_service::request::trace_id(req.headers());
        let peer = req.extensions().get::<zt_tls::PeerInfo>().and_then(|i| i.peer.as_ref());
        let span = zt_service::request::span(
            &trace_id,
            peer.map(|p| p.spiffe_id.to_string()).as_deref(),
            req.method().as_str(),
            &method,
        );
        req.extensions_mut().insert(zt_service::request::TraceId(trace_id));
        let start = Instant::now();
        let fut = span.in_scope(|| self.inner.call(req));
        let done = async move {
            let res = fut.await;
            let code = match &res {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|s| s.parse::<i32>().ok())
                    .map(tonic::Code::from)
                    .unwrap_or(tonic::Code::Ok),
                Err(_) => tonic::Code::Unknown,
            };
            metrics::record_rpc(&method, code, start.elapsed());
            res
        };
        Box::pin(done.instrument(span))
    }
}
