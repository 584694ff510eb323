//! The ztlab `backend` service (`spiffe://<td>/ns/demo/sa/backend`).
//!
//! It serves a JSON API over plain HTTP on loopback (`listen_addr`); only its Envoy sidecar
//! talks to it, terminates mTLS and adds `x-forwarded-client-cert`. Its data lives in
//! PostgreSQL, reached over TLS with the SVID files spiffe-helper writes
//! ([`zt_tls::pg`]) and dynamic credentials from OpenBao, which it logs in to with its
//! JWT-SVID. Credentials are rotated at `openbao.rotate_at` × the lease TTL without failing
//! requests (see [`rotation`]). User tokens are ES256 JWTs ([`zt_usertoken`]); their public
//! JWKS is served on the ops listener so that other services verify them without a secret.
//!
//! # API
//!
//! | route | auth | answer |
//! |---|---|---|
//! | `POST /api/register {username,email,password}` | | 201 `{user}`; 400 names the field; 409 if the username is taken |
//! | `POST /api/login {username,password}` | | `{token, token_type, expires_at, expires_in, user:{id,username,email,role}}`; 401 `invalid username or password` |
//! | `GET /api/me` | Bearer | `{user, token_expires_at}` |
//! | `PUT /api/github/token {token}` | Bearer | `{stored: true, fixture}`; stored in OpenBao KV v2 at `<kv_mount>/data/github/<username>` |
//! | `GET /api/github/profile` | Bearer | `{fixture, profile}`; 404 `no GitHub token configured` |
//! | `GET /api/github/repos` | Bearer | `{fixture, repos}`; 404 `no GitHub token configured` |
//! | `GET /api/orders` | | `{orders:[{id,description,status}]}` |
//! | `GET /api/demo` | | `{envoy, postgres, openbao, orders}`, or 503 `{error, hop, reason}` |
//!
//! Errors are `{"error": ..., "field"?: ..., "hop"?: ..., "reason"?: ...}` ([`error`]).
//!
//! Ops listener (`ops_addr`): `/healthz`, `/metrics`, `/.well-known/jwks.json`, `/readyz`
//! (200 once a database pool is up), `/lease` (current lease: id, db user, TTL left, rotations).
//!
//! # Registration rules
//!
//! - username: `^[a-z][a-z0-9_]{2,31}$`;
//! - email: exactly one `@` with text on both sides, no spaces;
//! - password: at least 10 characters, at least one letter and one digit, not containing the
//!   username (ignoring case), at most 72 bytes (bcrypt's limit).
//!
//! New users get the role `Detective`. Passwords are stored as bcrypt hashes (cost 12).
//!
//! # Seed data
//!
//! Created once if absent: jake, amy, rosa, terry, charles, gina (`<name>@99.precinct`,
//! password `<name>99`; jake, rosa, charles Detective; amy, terry Sergeant; gina Civilian
//! Admin), alice, bob, carol (`<name>@ztlab.test`, password `<name>99`, Detective), and four
//! orders. Seed passwords predate the registration rules.
//!
//! # Configuration
//!
//! See [`Config`]; every field can be set with `ZT_<FIELD>` (nested with `__`, for example
//! `ZT_DATABASE__CERT_DIR`, `ZT_OPENBAO__ROTATE_AT`).

pub mod api;
pub mod config;
pub mod db;
pub mod error;
pub mod github;
mod http;
pub mod lease;
pub mod openbao;
pub mod rotation;
pub mod rules;
pub mod xfcc;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use zt_tls::X509Source;

pub use api::AppState;
pub use config::Config;
pub use error::Error;

/// A built, bound, not yet serving backend.
#[derive(Debug)]
pub struct Application {
    api: TcpListener,
    ops: TcpListener,
    source: X509Source,
    state: AppState,
    rotator: rotation::Rotator,
}

impl Application {
    /// Validates the config, binds both listeners, waits for this workload's X.509-SVID and
    /// loads (or creates) the user-token key. The database pool comes up in the background
    /// once serving (see `/readyz`).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        let api = zt_service::workload::bind("listen_addr", &config.listen_addr).await?;
        let ops = zt_service::workload::bind("ops_addr", &config.workload.ops_addr).await?;
        let endpoint = config.workload.endpoint()?;
        let source = config.workload.connect().await?;
        let issuer =
            zt_usertoken::Issuer::load_or_create(&config.tokens.key_file, &config.tokens.issuer, config.tokens.ttl)
                .with_context(|| format!("tokens.key_file {}", config.tokens.key_file.display()))?;
        let server_id = config.pg_server_id()?;
        let files = zt_tls::pg::SvidFiles::in_dir(&config.database.cert_dir);
        let tls = zt_tls::pg::make_tls_connect(&files, &server_id).context("database TLS")?;
        let openbao = Arc::new(openbao::OpenBao::new(&config.openbao, &endpoint));
        let db = rotation::Database::new(config.openbao.rotate_at);
        let rotator = rotation::Rotator::new(db.clone(), openbao.clone(), config.database.clone(), tls);
        let state = AppState {
            db,
            openbao,
            verifier: issuer.verifier(),
            issuer: Arc::new(issuer),
            github: github::GithubClient::new(&config.github),
        };
        Ok(Self { api, ops, source, state, rotator })
    }

    /// The API address.
    pub fn addr(&self) -> SocketAddr {
        self.api.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The ops address.
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The state handlers share (database, OpenBao, token issuer).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves. The API drains first; then the database pool closes
    /// and its lease is revoked.
    pub async fn run_until_stopped<F>(self, shutdown: F) -> anyhow::Result<()>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let stop = zt_service::Stop::on(shutdown);
        let ops = zt_service::ops::router("backend", self.source.clone(), zt_service::ops::install_metrics())
            .merge(api::ops_routes(self.state.clone()));
        let _svid = zt_tls::source::watch_svid(&self.source);
        let (api_done, api_done_rx) = tokio::sync::oneshot::channel::<()>();
        let rotator = tokio::spawn(self.rotator.run(async {
            let _ = api_done_rx.await;
        }));
        tracing::info!(api = %self.api.local_addr()?, ops = %self.ops.local_addr()?, "serving");
        let ops_task = tokio::spawn(axum::serve(self.ops, ops).with_graceful_shutdown(stop.wait()).into_future());
        let served = axum::serve(self.api, api::router(self.state)).with_graceful_shutdown(stop.wait()).await;
        let _ = api_done.send(());
        rotator.await.context("database rotation task")?;
        ops_task.await.context("ops listener task")??;
        served.context("API listener")?;
        tracing::info!("stopped");
        Ok(())
    }
}
