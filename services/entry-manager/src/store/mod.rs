//! The central store: PostgreSQL (the `mgmt` database). Every mutation and its audit event are
//! written in one transaction, so a crash leaves either both or neither.

use std::collections::HashMap;

use deadpool_postgres::{GenericClient, Pool, Transaction};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;
use zt_entry_api::pb;
use zt_entry_api::state::SyncState;
use zt_entry_api::validate::{FieldError, ValidEntry};

mod audit;
mod entries;
mod sites;
mod sync;

const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("../../migrations/0001_initial.sql"))];

/// Store errors. Each maps to one gRPC status (see `From<StoreError> for tonic::Status`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// It exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The caller's revision is stale.
    #[error("{0}")]
    Aborted(String),
    /// The operation is not allowed in the current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// An input is invalid.
    #[error("{0}")]
    Invalid(#[from] FieldError),
    /// A field of the request names something that does not exist.
    #[error("{0}")]
    UnknownRef(FieldError),
    /// A field of the request would duplicate something that exists.
    #[error("{0}")]
    Duplicate(FieldError),
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// No connection could be had.
    #[error("database unavailable: {0}")]
    Pool(String),
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Pool(e.to_string())
    }
}

impl From<StoreError> for tonic::Status {
    fn from(e: StoreError) -> Self {
        use tonic::Status;
        match e {
            StoreError::NotFound(m) => Status::not_found(m),
            StoreError::AlreadyExists(m) => Status::already_exists(m),
            StoreError::Aborted(m) => Status::aborted(m),
            StoreError::FailedPrecondition(m) => Status::failed_precondition(m),
            StoreError::Invalid(f) => f.into(),
            StoreError::UnknownRef(f) => f.into_status(tonic::Code::NotFound),
            StoreError::Duplicate(f) => f.into_status(tonic::Code::AlreadyExists),
            StoreError::Db(e) => {
                tracing::error!(error = %e, "database error");
                Status::internal("database error")
            }
            StoreError::Pool(m) => Status::unavailable(format!("database unavailable: {m}")),
        }
    }
}

/// Result alias.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Who did it, for the audit trail.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The authenticated caller.
    pub name: String,
    /// The request's trace ID.
    pub trace_id: String,
}

/// A status change to publish once its transaction has committed.
pub type Updates = Vec<pb::SyncUpdate>;

/// Retry backoff after `attempts` consecutive failures: 5 s doubling to 5 min, ±20 % jitter.
pub fn backoff(attempts: u32) -> std::time::Duration {
    let base = 5.0 * 2f64.powi(attempts.saturating_sub(1).min(16) as i32);
    let capped = base.min(300.0);
    let jitter = 1.0 + (rand::random::<f64>() * 0.4 - 0.2);
    std::time::Duration::from_secs_f64(capped * jitter)
}

/// Consecutive failures at which an entry is flagged for alerting.
pub const ALERT_AFTER: i32 = 10;

/// The PostgreSQL-backed store.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// A time as a protobuf timestamp.
pub fn ts(t: OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.unix_timestamp(), nanos: t.nanosecond() as i32 }
}

fn ts_opt(t: Option<OffsetDateTime>) -> Option<prost_types::Timestamp> {
    t.map(ts)
}

fn state_name(s: pb::SyncState) -> &'static str {
    SyncState::from_pb(s as i32).unwrap_or(SyncState::Pending).as_str()
}

fn state_of(s: &str) -> pb::SyncState {
    SyncState::from_name(s).unwrap_or(SyncState::Pending).to_pb()
}

fn selector_key(spec: &pb::EntrySpec) -> String {
    spec.selectors.iter().map(|s| format!("{}:{}", s.r#type, s.value)).collect::<Vec<_>>().join("\n")
}

/// The JSON form of an entry in the audit trail.
pub fn entry_json(e: &pb::Entry) -> Value {
    zt_entry_api::json::entry_fields(e)
}

fn site_json(s: &pb::Site) -> Value {
    json!({"id": s.id, "trust_domain": s.trust_domain, "description": s.description, "revision": s.revision})
}

fn update(
    entry_id: &str,
    site_id: &str,
    state: pb::SyncState,
    revision: i64,
    error: &str,
    removed: bool,
) -> pb::SyncUpdate {
    pb::SyncUpdate {
        entry_id: entry_id.to_owned(),
        site_id: site_id.to_owned(),
        state: state as i32,
        revision,
        error: error.to_owned(),
        removed,
        at: Some(ts(OffsetDateTime::now_utc())),
    }
}

/// Parses a UUID; `what` names the kind of ID in the error (`an entry ID (a UUID)`).
fn parse_uuid(field: &str, id: &str, what: &str) -> Result<Uuid> {
    Uuid::parse_str(id).map_err(|_| StoreError::Invalid(FieldError::new(field, format!("{id:?} is not {what}"))))
}

const ENTRY_ID: &str = "an entry ID (a UUID)";

/// Filters for `list_entries`.
#[derive(Debug, Default, Clone)]
pub struct EntryFilter {
    /// Entries targeting this site.
    pub site_id: Option<String>,
    /// Entries with this selector.
    pub selector: Option<pb::Selector>,
    /// Exactly this SPIFFE ID.
    pub spiffe_id: Option<String>,
    /// SPIFFE IDs starting with this.
    pub spiffe_id_prefix: Option<String>,
    /// This parent.
    pub parent_id: Option<String>,
    /// With this state (at `site_id`, or any site).
    pub state: Option<pb::SyncState>,
}

/// Filters for `list_audit`.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    /// Events about this resource.
    pub resource_id: Option<String>,
    /// Events by this actor.
    pub actor: Option<String>,
    /// At or after.
    pub since: Option<OffsetDateTime>,
    /// Before.
    pub until: Option<OffsetDateTime>,
}

/// A stored API key, as authentication needs it.
#[derive(Debug, Clone)]
pub struct StoredKey {
    /// Its name.
    pub name: String,
    /// SHA-256 of the secret.
    pub secret_sha256: Vec<u8>,
    /// Its role name.
    pub role: String,
    /// Developer path prefixes.
    pub path_prefixes: Vec<String>,
    /// Revoked keys never authenticate.
    pub revoked: bool,
}

/// Counts per site and state, for metrics and health.
#[derive(Debug, Default, Clone)]
pub struct SiteCounts {
    /// By state name.
    pub by_state: HashMap<String, i64>,
    /// Entries at ten or more failures.
    pub alerting: i64,
    /// Age of the oldest unsynced change, seconds.
    pub lag_seconds: f64,
}

impl Store {
    /// Connects a pool to `conn` (a libpq connection string) and runs pending migrations.
    pub async fn connect(conn: &str, max_size: usize) -> Result<Self> {
        let pg: tokio_postgres::Config =
            conn.parse().map_err(|e: tokio_postgres::Error| StoreError::Pool(format!("invalid database_url: {e}")))?;
        let mgr = deadpool_postgres::Manager::from_config(
            pg,
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig { recycling_method: deadpool_postgres::RecyclingMethod::Fast },
        );
        let pool = Pool::builder(mgr).max_size(max_size).build().map_err(|e| StoreError::Pool(e.to_string()))?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        let mut client = self.pool.get().await?;
        client.batch_execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())").await?;
        let tx = client.transaction().await?;
        // One migrator at a time, even with several replicas starting together.
        tx.execute("LOCK TABLE schema_migrations IN EXCLUSIVE MODE", &[]).await?;
        for (version, sql) in MIGRATIONS {
            let done = tx.query_opt("SELECT 1 FROM schema_migrations WHERE version = $1", &[version]).await?.is_some();
            if !done {
                tracing::info!(version, "applying migration");
                tx.batch_execute(sql).await?;
                tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[version]).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn audit(
        tx: &Transaction<'_>,
        actor: &Actor,
        action: &str,
        resource_type: &str,
        resource_id: &str,
        before: Option<Value>,
        after: Option<Value>,
    ) -> Result<()> {
        let stmt = tx
            .prepare_cached(
                "INSERT INTO audit_events (actor, action, resource_type, resource_id, before, after, trace_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .await?;
        tx.execute(&stmt, &[&actor.name, &action, &resource_type, &resource_id, &before, &after, &actor.trace_id])
            .await?;
        Ok(())
    }

    async fn bump_sites(tx: &Transaction<'_>, sites: &[String]) -> Result<()> {
        if !sites.is_empty() {
            tx.execute(
                "UPDATE sites SET desired_version = nextval('desired_version_seq') WHERE id = ANY($1)",
                &[&sites],
            )
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_five_minutes_with_jitter() {
        for _ in 0..50 {
            let b1 = backoff(1).as_secs_f64();
            assert!((4.0..=6.0).contains(&b1), "{b1}");
            let b2 = backoff(2).as_secs_f64();
            assert!((8.0..=12.0).contains(&b2), "{b2}");
            let b20 = backoff(20).as_secs_f64();
            assert!((240.0..=360.0).contains(&b20), "{b20}");
        }
    }
}
