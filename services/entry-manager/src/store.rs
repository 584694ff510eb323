//! The central store: PostgreSQL (the `mgmt` database). Every mutation and its audit event are
//! written in one transaction, so a crash leaves either both or neither.

use std::collections::HashMap;

use deadpool_postgres::{GenericClient, Pool, Transaction};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;
use zt_entry_api::pb;
use zt_entry_api::validate::{FieldError, ValidEntry};

const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("../migrations/0001_initial.sql"))];

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
    match s {
        pb::SyncState::Synced => "SYNCED",
        pb::SyncState::Failed => "FAILED",
        pb::SyncState::Deleting => "DELETING",
        _ => "PENDING",
    }
}

fn state_of(s: &str) -> pb::SyncState {
    match s {
        "SYNCED" => pb::SyncState::Synced,
        "FAILED" => pb::SyncState::Failed,
        "DELETING" => pb::SyncState::Deleting,
        _ => pb::SyncState::Pending,
    }
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

    // ---------------------------------------------------------------- sites

    fn site_row(r: &Row) -> pb::Site {
        pb::Site {
            id: r.get("id"),
            trust_domain: r.get("trust_domain"),
            description: r.get("description"),
            revision: r.get("revision"),
            created_at: Some(ts(r.get("created_at"))),
            updated_at: Some(ts(r.get("updated_at"))),
        }
    }

    /// Creates a site.
    pub async fn create_site(&self, actor: &Actor, site: &pb::Site) -> Result<pb::Site> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                "INSERT INTO sites (id, trust_domain, description) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING RETURNING *",
                &[&site.id, &site.trust_domain, &site.description],
            )
            .await?
            .ok_or_else(|| StoreError::AlreadyExists(format!("site {:?} already exists", site.id)))?;
        let created = Self::site_row(&row);
        Self::audit(&tx, actor, "site.create", "site", &created.id, None, Some(site_json(&created))).await?;
        tx.commit().await?;
        Ok(created)
    }

    /// A site by ID.
    pub async fn get_site(&self, id: &str) -> Result<pb::Site> {
        let client = self.pool.get().await?;
        let row = client.query_opt("SELECT * FROM sites WHERE id = $1", &[&id]).await?;
        row.map(|r| Self::site_row(&r)).ok_or_else(|| StoreError::NotFound(format!("site {id:?} does not exist")))
    }

    /// Updates a site's description and trust domain; `site.revision` must be current. The trust
    /// domain cannot change while entries target the site.
    pub async fn update_site(&self, actor: &Actor, site: &pb::Site) -> Result<pb::Site> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let before = tx
            .query_opt("SELECT * FROM sites WHERE id = $1 FOR UPDATE", &[&site.id])
            .await?
            .map(|r| Self::site_row(&r))
            .ok_or_else(|| StoreError::NotFound(format!("site {:?} does not exist", site.id)))?;
        if before.revision != site.revision {
            return Err(StoreError::Aborted(format!(
                "site {:?} is at revision {}, not {}: read it again and retry",
                site.id, before.revision, site.revision
            )));
        }
        if before.trust_domain != site.trust_domain {
            let used: i64 =
                tx.query_one("SELECT count(*) FROM entry_sites WHERE site_id = $1", &[&site.id]).await?.get(0);
            if used > 0 {
                return Err(StoreError::FailedPrecondition(format!(
                    "site {:?}: the trust domain cannot change while {used} entries target the site",
                    site.id
                )));
            }
        }
        let row = tx
            .query_one(
                "UPDATE sites SET trust_domain = $2, description = $3, revision = revision + 1, updated_at = now() WHERE id = $1 RETURNING *",
                &[&site.id, &site.trust_domain, &site.description],
            )
            .await?;
        let after = Self::site_row(&row);
        Self::audit(&tx, actor, "site.update", "site", &site.id, Some(site_json(&before)), Some(site_json(&after)))
            .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Deletes a site; refused while entries target it.
    pub async fn delete_site(&self, actor: &Actor, id: &str) -> Result<pb::Site> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let before = tx
            .query_opt("SELECT * FROM sites WHERE id = $1 FOR UPDATE", &[&id])
            .await?
            .map(|r| Self::site_row(&r))
            .ok_or_else(|| StoreError::NotFound(format!("site {id:?} does not exist")))?;
        let used: i64 = tx.query_one("SELECT count(*) FROM entry_sites WHERE site_id = $1", &[&id]).await?.get(0);
        if used > 0 {
            return Err(StoreError::FailedPrecondition(format!(
                "site {id:?} is still targeted by {used} entries: remove it from them (or delete them) first"
            )));
        }
        tx.execute("DELETE FROM sites WHERE id = $1", &[&id]).await?;
        Self::audit(&tx, actor, "site.delete", "site", id, Some(site_json(&before)), None).await?;
        tx.commit().await?;
        Ok(before)
    }

    /// Every site.
    pub async fn list_sites(&self) -> Result<Vec<pb::Site>> {
        let client = self.pool.get().await?;
        Ok(client.query("SELECT * FROM sites ORDER BY id", &[]).await?.iter().map(Self::site_row).collect())
    }

    /// Counts and lag per site.
    pub async fn site_counts(&self) -> Result<HashMap<String, SiteCounts>> {
        let client = self.pool.get().await?;
        let mut out: HashMap<String, SiteCounts> = HashMap::new();
        for s in client.query("SELECT id FROM sites", &[]).await? {
            out.entry(s.get(0)).or_default();
        }
        let rows = client
            .query(
                "SELECT site_id, state, count(*), count(*) FILTER (WHERE attempts >= $1),
                        COALESCE(EXTRACT(EPOCH FROM now() - min(changed_at) FILTER (WHERE state <> 'SYNCED')), 0)::float8
                   FROM entry_sites GROUP BY site_id, state",
                &[&ALERT_AFTER],
            )
            .await?;
        for r in rows {
            let c = out.entry(r.get(0)).or_default();
            c.by_state.insert(r.get(1), r.get(2));
            c.alerting += r.get::<_, i64>(3);
            c.lag_seconds = c.lag_seconds.max(r.get::<_, f64>(4));
        }
        Ok(out)
    }

    /// Health of one site. Whether its agent is connected is not the store's to say: the
    /// caller fills in `agent_connected` and `disconnected_since` (see `presence`).
    pub async fn site_health(&self, id: &str) -> Result<pb::SiteHealth> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt("SELECT last_contact_at, unmanaged_entry_ids FROM sites WHERE id = $1", &[&id])
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("site {id:?} does not exist")))?;
        let last: Option<OffsetDateTime> = row.get(0);
        let unmanaged: Vec<String> = row.get(1);
        drop(client);
        let counts = self.site_counts().await?.remove(id).unwrap_or_default();
        let n = |s: &str| counts.by_state.get(s).copied().unwrap_or(0) as u32;
        Ok(pb::SiteHealth {
            site_id: id.to_owned(),
            agent_connected: false,
            disconnected_since: None,
            last_contact_at: ts_opt(last),
            sync_lag_seconds: counts.lag_seconds,
            pending: n("PENDING"),
            failed: n("FAILED"),
            deleting: n("DELETING"),
            synced: n("SYNCED"),
            alerting: counts.alerting as u32,
            unmanaged_entries: unmanaged.len() as u32,
            unmanaged_entry_ids: unmanaged,
        })
    }

    // -------------------------------------------------------------- entries

    async fn statuses<C: GenericClient>(client: &C, ids: &[Uuid]) -> Result<HashMap<Uuid, Vec<pb::SiteStatus>>> {
        let rows = client.query("SELECT * FROM entry_sites WHERE entry_id = ANY($1) ORDER BY site_id", &[&ids]).await?;
        let mut out: HashMap<Uuid, Vec<pb::SiteStatus>> = HashMap::new();
        for r in rows {
            let entry_id: Uuid = r.get("entry_id");
            let attempts: i32 = r.get("attempts");
            out.entry(entry_id).or_default().push(pb::SiteStatus {
                site_id: r.get("site_id"),
                state: state_of(r.get("state")) as i32,
                spire_entry_id: zt_entry_api::spire_entry_id(&entry_id.to_string()),
                last_error: r.get("last_error"),
                last_sync_at: ts_opt(r.get("last_sync_at")),
                attempts: attempts as u32,
                next_retry_at: ts_opt(r.get("next_retry_at")),
                alerting: attempts >= ALERT_AFTER,
                synced_revision: r.get("synced_revision"),
            });
        }
        Ok(out)
    }

    fn entry_row(r: &Row, status: Vec<pb::SiteStatus>) -> pb::Entry {
        let id: Uuid = r.get("id");
        let selectors: Value = r.get("selectors");
        let selectors = selectors
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| pb::Selector {
                        r#type: s["type"].as_str().unwrap_or_default().to_owned(),
                        value: s["value"].as_str().unwrap_or_default().to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut site_ids: Vec<String> = status.iter().map(|s| s.site_id.clone()).collect();
        site_ids.sort();
        pb::Entry {
            id: id.to_string(),
            spiffe_id: r.get("spiffe_id"),
            parent_id: r.get("parent_id"),
            selectors,
            x509_svid_ttl: r.get("x509_svid_ttl"),
            jwt_svid_ttl: r.get("jwt_svid_ttl"),
            dns_names: r.get("dns_names"),
            admin: r.get("admin"),
            downstream: r.get("downstream"),
            hint: r.get("hint"),
            site_ids,
            revision: r.get("revision"),
            created_by: r.get("created_by"),
            created_at: Some(ts(r.get("created_at"))),
            updated_at: Some(ts(r.get("updated_at"))),
            site_status: status,
        }
    }

    async fn load_entries<C: GenericClient>(client: &C, rows: &[Row]) -> Result<Vec<pb::Entry>> {
        let ids: Vec<Uuid> = rows.iter().map(|r| r.get("id")).collect();
        let mut statuses = Self::statuses(client, &ids).await?;
        Ok(rows
            .iter()
            .map(|r| {
                let id: Uuid = r.get("id");
                Self::entry_row(r, statuses.remove(&id).unwrap_or_default())
            })
            .collect())
    }

    /// Every site's trust domain, read once per transaction.
    async fn site_tds(tx: &Transaction<'_>) -> Result<HashMap<String, String>> {
        Ok(tx.query("SELECT id, trust_domain FROM sites", &[]).await?.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Checks the sites exist and share the entry's trust domain.
    fn check_sites(tds: &HashMap<String, String>, field: &str, e: &ValidEntry) -> Result<()> {
        for (i, s) in e.spec().site_ids.iter().enumerate() {
            match tds.get(s) {
                None => {
                    return Err(FieldError::new(
                        format!("{field}.site_ids[{i}]"),
                        format!("site {s:?} does not exist"),
                    )
                    .into());
                }
                Some(td) if td != e.trust_domain() => {
                    return Err(FieldError::new(
                        format!("{field}.spiffe_id"),
                        format!("trust domain {} is not site {s:?}'s trust domain {td}", e.trust_domain()),
                    )
                    .into());
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn map_unique(field: &str, e: tokio_postgres::Error) -> StoreError {
        if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
            StoreError::Duplicate(FieldError::new(
                field,
                "an entry with the same SPIFFE ID, parent ID and selectors already exists",
            ))
        } else {
            StoreError::Db(e)
        }
    }

    /// Creates entries, all or nothing. `fields[i]` names entry i in errors.
    pub async fn create_entries(
        &self,
        actor: &Actor,
        entries: &[(String, ValidEntry)],
    ) -> Result<(Vec<pb::Entry>, Updates)> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let insert = tx
            .prepare(
                "INSERT INTO entries (id, spiffe_id, parent_id, selectors, selector_key, x509_svid_ttl, jwt_svid_ttl, dns_names, admin, downstream, hint, revision, created_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1, $12) RETURNING *",
            )
            .await?;
        let insert_site =
            tx.prepare("INSERT INTO entry_sites (entry_id, site_id, state) VALUES ($1, $2, 'PENDING')").await?;
        let tds = Self::site_tds(&tx).await?;
        let mut created = Vec::with_capacity(entries.len());
        let mut updates = Vec::new();
        let mut touched = std::collections::BTreeSet::new();
        for (field, e) in entries {
            Self::check_sites(&tds, field, e)?;
            let s = e.spec();
            let id = Uuid::now_v7();
            let selectors =
                Value::Array(s.selectors.iter().map(|x| json!({"type": x.r#type, "value": x.value})).collect());
            let row = tx
                .query_one(
                    &insert,
                    &[
                        &id,
                        &s.spiffe_id,
                        &s.parent_id,
                        &selectors,
                        &selector_key(s),
                        &s.x509_svid_ttl,
                        &s.jwt_svid_ttl,
                        &s.dns_names,
                        &s.admin,
                        &s.downstream,
                        &s.hint,
                        &actor.name,
                    ],
                )
                .await
                .map_err(|err| Self::map_unique(field, err))?;
            let mut status = Vec::new();
            for site in &s.site_ids {
                tx.execute(&insert_site, &[&id, site]).await?;
                touched.insert(site.clone());
                updates.push(update(&id.to_string(), site, pb::SyncState::Pending, 1, "", false));
                status.push(pb::SiteStatus {
                    site_id: site.clone(),
                    state: pb::SyncState::Pending as i32,
                    spire_entry_id: zt_entry_api::spire_entry_id(&id.to_string()),
                    ..Default::default()
                });
            }
            let entry = Self::entry_row(&row, status);
            Self::audit(&tx, actor, "entry.create", "entry", &entry.id, None, Some(entry_json(&entry))).await?;
            created.push(entry);
        }
        Self::bump_sites(&tx, &touched.into_iter().collect::<Vec<_>>()).await?;
        tx.commit().await?;
        Ok((created, updates))
    }

    /// An entry by ID (also while it is being deleted).
    pub async fn get_entry(&self, id: &str) -> Result<pb::Entry> {
        let uuid = parse_uuid("id", id, ENTRY_ID)?;
        let client = self.pool.get().await?;
        let row = client
            .query_opt("SELECT * FROM entries WHERE id = $1", &[&uuid])
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("entry {id} does not exist")))?;
        Ok(Self::load_entries(&client, &[row]).await?.remove(0))
    }

    /// Replaces an entry's fields if `revision` is current.
    pub async fn update_entry(
        &self,
        actor: &Actor,
        id: &str,
        revision: i64,
        e: &ValidEntry,
    ) -> Result<(pb::Entry, Updates)> {
        let uuid = parse_uuid("id", id, ENTRY_ID)?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt("SELECT * FROM entries WHERE id = $1 FOR UPDATE", &[&uuid])
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("entry {id} does not exist")))?;
        let before = Self::load_entries(&tx, &[row]).await?.remove(0);
        let deleted = tx.query_one("SELECT deleted FROM entries WHERE id = $1", &[&uuid]).await?.get::<_, bool>(0);
        if deleted {
            return Err(StoreError::FailedPrecondition(format!("entry {id} is being deleted")));
        }
        if before.revision != revision {
            return Err(StoreError::Aborted(format!(
                "entry {id} is at revision {}, not {revision}: read it again and retry",
                before.revision
            )));
        }
        Self::check_sites(&Self::site_tds(&tx).await?, "entry", e)?;
        let s = e.spec();
        let selectors = Value::Array(s.selectors.iter().map(|x| json!({"type": x.r#type, "value": x.value})).collect());
        tx.execute(
            "UPDATE entries SET spiffe_id = $2, parent_id = $3, selectors = $4, selector_key = $5, x509_svid_ttl = $6, jwt_svid_ttl = $7,
                    dns_names = $8, admin = $9, downstream = $10, hint = $11, revision = revision + 1, updated_at = now()
              WHERE id = $1",
            &[&uuid, &s.spiffe_id, &s.parent_id, &selectors, &selector_key(s), &s.x509_svid_ttl, &s.jwt_svid_ttl, &s.dns_names, &s.admin, &s.downstream, &s.hint],
        )
        .await
        .map_err(|err| Self::map_unique("entry", err))?;
        let new_rev = revision + 1;
        let mut updates = Vec::new();
        let mut touched: Vec<String> = before.site_ids.clone();
        for site in &s.site_ids {
            // New sites and changed ones go back to PENDING.
            tx.execute(
                "INSERT INTO entry_sites (entry_id, site_id, state) VALUES ($1, $2, 'PENDING')
                 ON CONFLICT (entry_id, site_id) DO UPDATE SET state = 'PENDING', attempts = 0, next_retry_at = NULL, last_error = '', changed_at = now()",
                &[&uuid, site],
            )
            .await?;
            updates.push(update(id, site, pb::SyncState::Pending, new_rev, "", false));
            if !touched.contains(site) {
                touched.push(site.clone());
            }
        }
        for site in before.site_ids.iter().filter(|x| !s.site_ids.contains(x)) {
            tx.execute(
                "UPDATE entry_sites SET state = 'DELETING', attempts = 0, next_retry_at = NULL, last_error = '', changed_at = now() WHERE entry_id = $1 AND site_id = $2",
                &[&uuid, site],
            )
            .await?;
            updates.push(update(id, site, pb::SyncState::Deleting, new_rev, "", false));
        }
        let row = tx.query_one("SELECT * FROM entries WHERE id = $1", &[&uuid]).await?;
        let after = Self::load_entries(&tx, &[row]).await?.remove(0);
        Self::audit(&tx, actor, "entry.update", "entry", id, Some(entry_json(&before)), Some(entry_json(&after)))
            .await?;
        Self::bump_sites(&tx, &touched).await?;
        tx.commit().await?;
        Ok((after, updates))
    }

    /// Marks entries deleted: every site goes DELETING until its agent reports them gone.
    pub async fn delete_entries(&self, actor: &Actor, ids: &[(String, String)]) -> Result<(Vec<pb::Entry>, Updates)> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let mut out = Vec::new();
        let mut updates = Vec::new();
        let mut touched = std::collections::BTreeSet::new();
        for (field, id) in ids {
            let uuid = parse_uuid(field, id, ENTRY_ID)?;
            let row = tx
                .query_opt("SELECT * FROM entries WHERE id = $1 FOR UPDATE", &[&uuid])
                .await?
                .ok_or_else(|| StoreError::UnknownRef(FieldError::new(field, format!("entry {id} does not exist"))))?;
            if row.get::<_, bool>("deleted") {
                return Err(StoreError::UnknownRef(FieldError::new(
                    field,
                    format!("entry {id} is already being deleted"),
                )));
            }
            let before = Self::load_entries(&tx, &[row]).await?.remove(0);
            tx.execute("UPDATE entries SET deleted = true, updated_at = now() WHERE id = $1", &[&uuid]).await?;
            tx.execute(
                "UPDATE entry_sites SET state = 'DELETING', attempts = 0, next_retry_at = NULL, last_error = '', changed_at = now() WHERE entry_id = $1",
                &[&uuid],
            )
            .await?;
            for site in &before.site_ids {
                touched.insert(site.clone());
                updates.push(update(id, site, pb::SyncState::Deleting, before.revision, "", false));
            }
            Self::audit(&tx, actor, "entry.delete", "entry", id, Some(entry_json(&before)), None).await?;
            let row = tx.query_one("SELECT * FROM entries WHERE id = $1", &[&uuid]).await?;
            out.push(Self::load_entries(&tx, &[row]).await?.remove(0));
        }
        Self::bump_sites(&tx, &touched.into_iter().collect::<Vec<_>>()).await?;
        tx.commit().await?;
        Ok((out, updates))
    }

    /// Lists entries by `filter`, ordered by ID (creation order), after `page_token`.
    pub async fn list_entries(
        &self,
        filter: &EntryFilter,
        page_size: usize,
        page_token: &str,
    ) -> Result<(Vec<pb::Entry>, String)> {
        let mut sql = String::from("SELECT e.* FROM entries e WHERE true");
        let mut params: Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>> = Vec::new();
        let mut add = |cond: &str, p: Box<dyn tokio_postgres::types::ToSql + Sync + Send>| {
            params.push(p);
            sql.push_str(&cond.replace("$$", &format!("${}", params.len())));
        };
        if !page_token.is_empty() {
            add(" AND e.id > $$", Box::new(parse_uuid("page_token", page_token, "a page token this server issued")?));
        }
        if let Some(v) = &filter.spiffe_id {
            add(" AND e.spiffe_id = $$", Box::new(v.clone()));
        }
        if let Some(v) = &filter.spiffe_id_prefix {
            let escaped = v.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            add(" AND e.spiffe_id LIKE $$", Box::new(format!("{escaped}%")));
        }
        if let Some(v) = &filter.parent_id {
            add(" AND e.parent_id = $$", Box::new(v.clone()));
        }
        if let Some(v) = &filter.selector {
            add(" AND e.selectors @> $$", Box::new(json!([{"type": v.r#type, "value": v.value}])));
        }
        match (&filter.site_id, filter.state) {
            (Some(site), Some(state)) => {
                add(
                    " AND EXISTS (SELECT 1 FROM entry_sites s WHERE s.entry_id = e.id AND s.site_id = $$",
                    Box::new(site.clone()),
                );
                add(" AND s.state = $$)", Box::new(state_name(state).to_owned()));
            }
            (Some(site), None) => add(
                " AND EXISTS (SELECT 1 FROM entry_sites s WHERE s.entry_id = e.id AND s.site_id = $$)",
                Box::new(site.clone()),
            ),
            (None, Some(state)) => add(
                " AND EXISTS (SELECT 1 FROM entry_sites s WHERE s.entry_id = e.id AND s.state = $$)",
                Box::new(state_name(state).to_owned()),
            ),
            (None, None) => {}
        }
        params.push(Box::new(page_size as i64 + 1));
        sql.push_str(&format!(" ORDER BY e.id LIMIT ${}", params.len()));
        let client = self.pool.get().await?;
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params.iter().map(|p| p.as_ref() as _).collect();
        let mut rows = client.query(&sql, &refs).await?;
        let next = if rows.len() > page_size {
            rows.truncate(page_size);
            rows.last().map(|r| r.get::<_, Uuid>("id").to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok((Self::load_entries(&client, &rows).await?, next))
    }

    /// The number of live (not deleted) entries.
    pub async fn count_entries(&self) -> Result<i64> {
        let client = self.pool.get().await?;
        Ok(client.query_one("SELECT count(*) FROM entries WHERE NOT deleted", &[]).await?.get(0))
    }

    // ----------------------------------------------------------------- sync

    /// The site's desired-state version and whether a resync was requested.
    pub async fn site_version(&self, site: &str) -> Result<(u64, bool)> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt("SELECT desired_version, resync_requested FROM sites WHERE id = $1", &[&site])
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("site {site:?} does not exist")))?;
        Ok((row.get::<_, i64>(0) as u64, row.get(1)))
    }

    /// The site's whole desired state; also records the agent's contact and clears a pending
    /// resync request.
    pub async fn desired_entries(&self, site: &str) -> Result<(u64, Vec<pb::DesiredEntry>, bool)> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "UPDATE sites SET last_contact_at = now(), resync_requested = false WHERE id = $1
                 RETURNING desired_version, (SELECT resync_requested FROM sites WHERE id = $1)",
                &[&site],
            )
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("site {site:?} does not exist")))?;
        let version = row.get::<_, i64>(0) as u64;
        let resync: bool = row.get(1);
        let rows = client
            .query(
                "SELECT e.*, s.state, s.next_retry_at, s.synced_revision FROM entry_sites s JOIN entries e ON e.id = s.entry_id
                  WHERE s.site_id = $1 ORDER BY e.id",
                &[&site],
            )
            .await?;
        let entries = rows
            .iter()
            .map(|r| {
                let e = Self::entry_row(r, vec![]);
                let state = state_of(r.get("state"));
                pb::DesiredEntry {
                    spire_entry_id: zt_entry_api::spire_entry_id(&e.id),
                    entry_id: e.id.clone(),
                    revision: e.revision,
                    deleting: state == pb::SyncState::Deleting,
                    next_retry_at: ts_opt(r.get("next_retry_at")),
                    state: state as i32,
                    synced_revision: r.get("synced_revision"),
                    spec: Some(pb::EntrySpec {
                        spiffe_id: e.spiffe_id,
                        parent_id: e.parent_id,
                        selectors: e.selectors,
                        x509_svid_ttl: e.x509_svid_ttl,
                        jwt_svid_ttl: e.jwt_svid_ttl,
                        dns_names: e.dns_names,
                        admin: e.admin,
                        downstream: e.downstream,
                        hint: e.hint,
                        site_ids: vec![site.to_owned()],
                    }),
                }
            })
            .collect();
        Ok((version, entries, resync))
    }

    /// Applies a site agent's report. Results for an older revision than the entry's current one
    /// change nothing (a newer change is on its way).
    pub async fn report(&self, site: &str, results: &[pb::SyncResult], unmanaged: &[String]) -> Result<Updates> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let found = tx
            .execute(
                "UPDATE sites SET last_contact_at = now(), unmanaged_entry_ids = $2 WHERE id = $1",
                &[&site, &unmanaged],
            )
            .await?;
        if found == 0 {
            return Err(StoreError::NotFound(format!("site {site:?} does not exist")));
        }
        let mut updates = Vec::new();
        let mut bump = false;
        // Lock entries in one global order (by ID): two sites reporting on the same entries
        // serialize instead of deadlocking, and the last site to report a delete sees the
        // others' and removes the entry row.
        let select = tx
            .prepare_cached(
                "SELECT e.revision, e.deleted, s.state, s.attempts FROM entry_sites s JOIN entries e ON e.id = s.entry_id
                  WHERE s.entry_id = $1 AND s.site_id = $2 FOR UPDATE OF s, e",
            )
            .await?;
        let mark_synced = tx
            .prepare_cached(
                "UPDATE entry_sites SET state = 'SYNCED', synced_revision = $3, last_sync_at = now(), attempts = 0,
                        next_retry_at = NULL, last_error = '' WHERE entry_id = $1 AND site_id = $2",
            )
            .await?;
        let delete_site = tx.prepare_cached("DELETE FROM entry_sites WHERE entry_id = $1 AND site_id = $2").await?;
        let delete_entry = tx
            .prepare_cached(
                "DELETE FROM entries e WHERE e.id = $1 AND e.deleted AND NOT EXISTS (SELECT 1 FROM entry_sites s WHERE s.entry_id = e.id)",
            )
            .await?;
        let mut order: Vec<(usize, &pb::SyncResult)> = results.iter().enumerate().collect();
        order.sort_by(|a, b| a.1.entry_id.cmp(&b.1.entry_id));
        for (i, r) in order {
            let uuid = parse_uuid(&format!("results[{i}].entry_id"), &r.entry_id, ENTRY_ID)?;
            let Some(cur) = tx.query_opt(&select, &[&uuid, &site]).await? else {
                continue;
            };
            let revision: i64 = cur.get(0);
            let state = state_of(cur.get(2));
            let attempts: i32 = cur.get(3);
            match pb::SyncOutcome::try_from(r.outcome).unwrap_or(pb::SyncOutcome::Unspecified) {
                pb::SyncOutcome::Synced if state != pb::SyncState::Deleting && r.revision == revision => {
                    tx.execute(&mark_synced, &[&uuid, &site, &revision]).await?;
                    if state != pb::SyncState::Synced {
                        updates.push(update(&r.entry_id, site, pb::SyncState::Synced, revision, "", false));
                    }
                }
                pb::SyncOutcome::Deleted if state == pb::SyncState::Deleting => {
                    tx.execute(&delete_site, &[&uuid, &site]).await?;
                    let gone = tx.execute(&delete_entry, &[&uuid]).await?;
                    updates.push(update(&r.entry_id, site, pb::SyncState::Deleting, revision, "", true));
                    if gone > 0 {
                        tracing::info!(entry_id = %r.entry_id, "entry removed from every site");
                    }
                    bump = true;
                }
                pb::SyncOutcome::Failed if r.revision == revision || state == pb::SyncState::Deleting => {
                    let attempts = attempts + 1;
                    let next = OffsetDateTime::now_utc() + backoff(attempts as u32);
                    let new_state = if state == pb::SyncState::Deleting { "DELETING" } else { "FAILED" };
                    tx.execute(
                        "UPDATE entry_sites SET state = $3, attempts = $4, next_retry_at = $5, last_error = $6, last_sync_at = now()
                          WHERE entry_id = $1 AND site_id = $2",
                        &[&uuid, &site, &new_state, &attempts, &next, &r.error],
                    )
                    .await?;
                    if attempts >= ALERT_AFTER {
                        tracing::warn!(entry_id = %r.entry_id, site, attempts, error = %r.error, "entry sync failing repeatedly");
                    }
                    updates.push(update(&r.entry_id, site, state_of(new_state), revision, &r.error, false));
                }
                _ => {}
            }
        }
        if bump {
            Self::bump_sites(&tx, &[site.to_owned()]).await?;
        }
        tx.commit().await?;
        Ok(updates)
    }

    /// Asks the site's agent for a full resync on its next poll.
    pub async fn request_resync(&self, actor: &Actor, site: &str) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute("UPDATE sites SET resync_requested = true, desired_version = nextval('desired_version_seq') WHERE id = $1", &[&site])
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("site {site:?} does not exist")));
        }
        Self::audit(&tx, actor, "site.trigger_sync", "site", site, None, None).await?;
        tx.commit().await?;
        Ok(())
    }

    // ---------------------------------------------------------------- audit

    /// Audit events, newest first.
    pub async fn list_audit(
        &self,
        f: &AuditFilter,
        page_size: usize,
        page_token: &str,
    ) -> Result<(Vec<pb::AuditEvent>, String)> {
        let before: i64 = if page_token.is_empty() {
            i64::MAX
        } else {
            page_token.parse().map_err(|_| FieldError::new("page_token", "is not a token this server issued"))?
        };
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT * FROM audit_events WHERE id < $1
                   AND ($2::text IS NULL OR resource_id = $2) AND ($3::text IS NULL OR actor = $3)
                   AND ($4::timestamptz IS NULL OR at >= $4) AND ($5::timestamptz IS NULL OR at < $5)
                 ORDER BY id DESC LIMIT $6",
                &[&before, &f.resource_id, &f.actor, &f.since, &f.until, &(page_size as i64 + 1)],
            )
            .await?;
        let mut events: Vec<pb::AuditEvent> = rows
            .iter()
            .map(|r| {
                let b: Option<Value> = r.get("before");
                let a: Option<Value> = r.get("after");
                pb::AuditEvent {
                    id: r.get("id"),
                    at: Some(ts(r.get("at"))),
                    actor: r.get("actor"),
                    action: r.get("action"),
                    resource_type: r.get("resource_type"),
                    resource_id: r.get("resource_id"),
                    before_json: b.map(|v| v.to_string()).unwrap_or_default(),
                    after_json: a.map(|v| v.to_string()).unwrap_or_default(),
                    trace_id: r.get("trace_id"),
                }
            })
            .collect();
        let next = if events.len() > page_size {
            events.truncate(page_size);
            events.last().map(|e| e.id.to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok((events, next))
    }

    // ------------------------------------------------------------- api keys

    /// Stores a new API key (its secret's hash only).
    pub async fn create_api_key(
        &self,
        actor: &Actor,
        key: &pb::ApiKey,
        role: &str,
        secret_sha256: &[u8],
    ) -> Result<pb::ApiKey> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let id = Uuid::parse_str(&key.id).map_err(|_| StoreError::Invalid(FieldError::new("id", "bad key id")))?;
        let row = tx
            .query_opt(
                "INSERT INTO api_keys (id, name, secret_sha256, role, path_prefixes, created_by) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (name) DO NOTHING RETURNING created_at",
                &[&id, &key.name, &secret_sha256, &role, &key.path_prefixes, &actor.name],
            )
            .await?
            .ok_or_else(|| StoreError::Duplicate(FieldError::new("name", format!("an API key named {:?} already exists", key.name))))?;
        let mut out = key.clone();
        out.created_by = actor.name.clone();
        out.created_at = Some(ts(row.get(0)));
        Self::audit(
            &tx,
            actor,
            "apikey.create",
            "apikey",
            &key.name,
            None,
            Some(json!({"name": key.name, "role": role, "path_prefixes": key.path_prefixes})),
        )
        .await?;
        tx.commit().await?;
        Ok(out)
    }

    /// A key by ID, for authentication.
    pub async fn api_key(&self, id: &Uuid) -> Result<Option<StoredKey>> {
        let client = self.pool.get().await?;
        Ok(client.query_opt("SELECT * FROM api_keys WHERE id = $1", &[id]).await?.map(|r| StoredKey {
            name: r.get("name"),
            secret_sha256: r.get("secret_sha256"),
            role: r.get("role"),
            path_prefixes: r.get("path_prefixes"),
            revoked: r.get::<_, Option<OffsetDateTime>>("revoked_at").is_some(),
        }))
    }

    /// Every key (without secrets), with its role name.
    pub async fn list_api_keys(&self) -> Result<Vec<(pb::ApiKey, String)>> {
        let client = self.pool.get().await?;
        Ok(client
            .query("SELECT * FROM api_keys ORDER BY created_at", &[])
            .await?
            .iter()
            .map(|r| {
                (
                    pb::ApiKey {
                        id: r.get::<_, Uuid>("id").to_string(),
                        name: r.get("name"),
                        role: 0,
                        path_prefixes: r.get("path_prefixes"),
                        created_by: r.get("created_by"),
                        created_at: Some(ts(r.get("created_at"))),
                        revoked: r.get::<_, Option<OffsetDateTime>>("revoked_at").is_some(),
                    },
                    r.get("role"),
                )
            })
            .collect())
    }

    /// Revokes a key.
    pub async fn revoke_api_key(&self, actor: &Actor, id: &str) -> Result<String> {
        let uuid = parse_uuid("id", id, "an API key ID (a UUID)")?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let name: String = tx
            .query_opt(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1 RETURNING name",
                &[&uuid],
            )
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("API key {id} does not exist")))?
            .get(0);
        Self::audit(&tx, actor, "apikey.revoke", "apikey", &name, None, None).await?;
        tx.commit().await?;
        Ok(name)
    }

    /// Whether any API key exists (the bootstrap admin key is made only when none does).
    pub async fn has_api_keys(&self) -> Result<bool> {
        let client = self.pool.get().await?;
        Ok(client.query_one("SELECT EXISTS (SELECT 1 FROM api_keys)", &[]).await?.get(0))
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
