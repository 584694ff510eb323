//! The current database pool and the rotation of its dynamic credentials.
//!
//! [`Rotator::run`] gets credentials from OpenBao, builds a pool over TLS, checks it, runs the
//! migrations and seeds once, and installs it in [`Database`]. At `rotate_at` × the lease's
//! TTL it rotates: new credentials, a new pool that must answer a query, a swap, then the old
//! pool is drained (in-flight queries finish), closed, and its lease revoked so that OpenBao
//! drops the old PostgreSQL role. A request that picked the old pool just before it closed is
//! retried on the new one ([`Database::run`]), so rotation never fails a request.
//!
//! Recovery: when PostgreSQL rejects the credentials in use (the lease was revoked in OpenBao, or
//! the role is otherwise gone), the request that saw it reports the generation to the rotator and
//! waits up to [`RECOVERY_WAIT`] for a new one; the rotator logs in to OpenBao again, gets new
//! credentials and swaps the pool at once, without waiting for the timer. Only the generation
//! still installed is ever replaced, so a burst of failing requests causes one recovery.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, watch};

use zt_tls::pg::MakeSvidTlsConnect;

use crate::config::DatabaseSettings;
use crate::db::{self, Store};
use crate::error::{BaoReason, DbReason, Error};
use crate::lease::{DbCreds, LeaseInfo};
use crate::openbao::OpenBao;

/// One pool and the credentials it logs in with.
#[derive(Debug)]
pub struct Generation {
    /// Queries on this pool.
    pub store: Store,
    /// The credentials and their lease.
    pub creds: DbCreds,
}

/// How long a request whose credentials PostgreSQL rejected waits for new ones.
pub const RECOVERY_WAIT: Duration = Duration::from_secs(4);

#[derive(Debug)]
struct Shared {
    current: RwLock<Option<Arc<Generation>>>,
    last_error: RwLock<Option<Error>>,
    rotations: AtomicU64,
    rotate_at: f64,
    /// The lease of the generation PostgreSQL rejected, for the rotator.
    rejected: Mutex<Option<String>>,
    /// Wakes the rotator to recover.
    recover: Notify,
    /// Bumped at every install; requests waiting for a recovery watch it.
    installed: watch::Sender<u64>,
}

/// The current pool, shared by every request. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Database {
    shared: Arc<Shared>,
}

impl Database {
    /// No pool yet; `rotate_at` is the fraction of the lease TTL at which to rotate.
    pub fn new(rotate_at: f64) -> Self {
        Self {
            shared: Arc::new(Shared {
                current: RwLock::new(None),
                last_error: RwLock::new(None),
                rotations: AtomicU64::new(0),
                rotate_at,
                rejected: Mutex::new(None),
                recover: Notify::new(),
                installed: watch::Sender::new(0),
            }),
        }
    }

    /// The current generation, or why there is none.
    pub fn current(&self) -> Result<Arc<Generation>, Error> {
        if let Some(g) = self.shared.current.read().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(g);
        }
        Err(self.shared.last_error.read().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_else(|| {
            Error::OpenBao {
                reason: BaoReason::Failed,
                message: "no database credentials from OpenBao yet (starting up)".into(),
            }
        }))
    }

    /// Runs `f` with the current [`Store`]; if its pool was closed by a rotation meanwhile, runs
    /// it again with the new one; if PostgreSQL had closed the connection it ran on, runs it again
    /// on a new connection (the closed one is not handed out again); if PostgreSQL rejected the
    /// credentials, asks the rotator for new ones and runs it again on them.
    pub async fn run<T, F, Fut>(&self, f: F) -> Result<T, Error>
    where
        F: Fn(Store) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let generation = self.current()?;
            match f(generation.store.clone()).await {
                Err(Error::PoolClosed | Error::ConnectionLost(_)) if attempts < 3 => continue,
                Err(e @ Error::Database { reason: DbReason::CredentialsRejected, .. }) if attempts < 3 => {
                    if !self.recover_from(&generation).await {
                        return Err(e);
                    }
                }
                other => return other,
            }
        }
    }

    /// Reports that PostgreSQL rejected `generation`'s credentials and waits (at most
    /// [`RECOVERY_WAIT`]) until another generation is installed. True when one is.
    async fn recover_from(&self, generation: &Arc<Generation>) -> bool {
        let mut installed = self.shared.installed.subscribe();
        let replaced = || self.current().is_ok_and(|g| !Arc::ptr_eq(&g, generation));
        if replaced() {
            return true;
        }
        *self.shared.rejected.lock().unwrap_or_else(|p| p.into_inner()) = Some(generation.creds.lease.lease_id.clone());
        self.shared.recover.notify_one();
        tokio::time::timeout(RECOVERY_WAIT, async {
            while !replaced() {
                if installed.changed().await.is_err() {
                    return;
                }
            }
        })
        .await
        .is_ok()
            && replaced()
    }

    /// Takes the rejected lease if it is still the current one (else it was already replaced).
    fn take_rejected(&self) -> Option<String> {
        let rejected = self.shared.rejected.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        let current = self.current().ok()?;
        (current.creds.lease.lease_id == rejected).then_some(rejected)
    }

    /// Installs `generation`, returning the one it replaces.
    pub fn install(&self, generation: Generation) -> Option<Arc<Generation>> {
        *self.shared.last_error.write().unwrap_or_else(|p| p.into_inner()) = None;
        let old = self.shared.current.write().unwrap_or_else(|p| p.into_inner()).replace(Arc::new(generation));
        self.shared.installed.send_modify(|n| *n += 1);
        old
    }

    /// Removes the current generation (shutdown).
    pub fn take(&self) -> Option<Arc<Generation>> {
        self.shared.current.write().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Records why there is no pool (shown by requests while there is none).
    pub fn set_error(&self, error: Error) {
        *self.shared.last_error.write().unwrap_or_else(|p| p.into_inner()) = Some(error);
    }

    /// Rotations since start.
    pub fn rotations(&self) -> u64 {
        self.shared.rotations.load(Ordering::Relaxed)
    }

    /// The fraction of the TTL at which leases rotate.
    pub fn rotate_at(&self) -> f64 {
        self.shared.rotate_at
    }

    /// The current lease, for evidence.
    pub fn lease_info(&self) -> Option<LeaseInfo> {
        let g = self.current().ok()?;
        Some(LeaseInfo::new(&g.creds, self.shared.rotate_at, self.rotations(), SystemTime::now()))
    }
}

/// Gets, checks, rotates and retires database credentials.
#[derive(Debug)]
pub struct Rotator {
    db: Database,
    openbao: Arc<OpenBao>,
    settings: DatabaseSettings,
    tls: MakeSvidTlsConnect,
    migrated: bool,
}

impl Rotator {
    /// A rotator that installs pools into `db`.
    pub fn new(db: Database, openbao: Arc<OpenBao>, settings: DatabaseSettings, tls: MakeSvidTlsConnect) -> Self {
        Self { db, openbao, settings, tls, migrated: false }
    }

    /// New credentials and a pool that has answered a query. If the pool fails, the new lease
    /// is revoked.
    pub async fn connect(&self) -> Result<Generation, Error> {
        let creds = self.openbao.db_creds().await?;
        tracing::info!(
            db_user = %creds.username, lease_id = %creds.lease.lease_id,
            ttl_secs = creds.lease.duration.as_secs(), "got database credentials from OpenBao"
        );
        let checked = async {
            let store = Store::new(db::build_pool(&self.settings, &creds, &self.tls)?);
            let user = store.check().await?;
            Ok::<_, Error>((store, user))
        }
        .await;
        match checked {
            Ok((store, user)) => {
                tracing::info!(db_user = %user, "connected to PostgreSQL over TLS");
                Ok(Generation { store, creds })
            }
            Err(e) => {
                self.revoke(&creds.lease.lease_id).await;
                Err(e)
            }
        }
    }

    async fn revoke(&self, lease_id: &str) {
        match self.openbao.revoke(lease_id).await {
            Ok(()) => tracing::info!(lease_id, "revoked database lease"),
            Err(e) => tracing::warn!(lease_id, error = %e, "cannot revoke database lease"),
        }
    }

    /// The first pool: connect, migrate and seed (once per process), install.
    pub async fn start(&mut self) -> Result<(), Error> {
        let generation = self.connect().await?;
        if !self.migrated {
            let prepared = async {
                generation.store.migrate().await?;
                generation.store.seed().await
            }
            .await;
            if let Err(e) = prepared {
                generation.store.pool().close();
                self.revoke(&generation.creds.lease.lease_id).await;
                return Err(e);
            }
            self.migrated = true;
        }
        if let Some(old) = self.db.install(generation) {
            self.retire(old).await;
        }
        Ok(())
    }

    /// Replaces the current pool with one on new credentials, then retires the old one.
    pub async fn rotate(&mut self) -> Result<(), Error> {
        self.replace("rotated database credentials").await
    }

    /// PostgreSQL rejected the credentials of lease `rejected`: logs in to OpenBao again with a
    /// fresh JWT-SVID, gets new credentials and swaps the pool now.
    pub async fn recover(&mut self, rejected: &str) -> Result<(), Error> {
        tracing::warn!(lease_id = rejected, "PostgreSQL rejected the database credentials; getting new ones now");
        metrics::counter!("backend_db_credential_recoveries_total").increment(1);
        self.openbao.forget_token().await;
        self.replace("recovered: new database credentials after PostgreSQL rejected the old ones").await
    }

    async fn replace(&mut self, what: &'static str) -> Result<(), Error> {
        let generation = self.connect().await?;
        let (new_user, new_lease) = (generation.creds.username.clone(), generation.creds.lease.lease_id.clone());
        let old = self.db.install(generation);
        let n = self.db.shared.rotations.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::counter!("backend_db_credential_rotations_total").increment(1);
        tracing::info!(
            rotations = n, db_user = %new_user, lease_id = %new_lease,
            old_db_user = old.as_ref().map(|o| o.creds.username.as_str()).unwrap_or(""),
            "{what}"
        );
        if let Some(old) = old {
            self.retire(old).await;
        }
        Ok(())
    }

    /// Lets in-flight queries on `old` finish, closes its pool and revokes its lease.
    async fn retire(&self, old: Arc<Generation>) {
        let timeout =
            old.creds.lease.ttl_left(SystemTime::now()).map_or(db::DRAIN_TIMEOUT, |left| left.min(db::DRAIN_TIMEOUT));
        if !db::drain_and_close(old.store.pool(), timeout).await {
            tracing::warn!(db_user = %old.creds.username, "closed the old pool with queries still running");
        }
        self.revoke(&old.creds.lease.lease_id).await;
    }

    /// Keeps a pool installed until `stop` fires: retries the start with backoff, rotates on
    /// time, retries failed rotations. On stop, closes the pool and revokes its lease.
    pub async fn run<F>(mut self, stop: F)
    where
        F: Future<Output = ()> + Send,
    {
        let mut stop = std::pin::pin!(stop);
        let mut backoff = Duration::from_secs(1);
        loop {
            let wait = match self.db.current() {
                Err(_) => match self.start().await {
                    Ok(()) => {
                        backoff = Duration::from_secs(1);
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?backoff, "no database pool yet");
                        self.db.set_error(e);
                        let wait = backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(15));
                        wait
                    }
                },
                Ok(g) => match g.creds.lease.until_rotation(self.db.rotate_at(), SystemTime::now()) {
                    Some(wait) if !wait.is_zero() => wait,
                    Some(_) => match self.rotate().await {
                        Ok(()) => continue,
                        Err(e) => {
                            tracing::warn!(error = %e, "database credential rotation failed; retrying in 2 s");
                            Duration::from_secs(2)
                        }
                    },
                    None => Duration::from_secs(3600),
                },
            };
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(wait) => {}
                _ = self.db.shared.recover.notified() => {
                    if let Some(lease) = self.db.take_rejected()
                        && let Err(e) = self.recover(&lease).await
                    {
                        tracing::warn!(error = %e, "could not get new database credentials; retrying in 2 s");
                        self.db.set_error(e);
                        tokio::select! {
                            _ = &mut stop => break,
                            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                        }
                        // Still rejected: the next failing request asks again.
                    }
                }
            }
        }
        if let Some(g) = self.db.take() {
            g.store.pool().close();
            let revoke = self.revoke(&g.creds.lease.lease_id);
            if tokio::time::timeout(Duration::from_secs(3), revoke).await.is_err() {
                tracing::warn!("revoking the database lease on shutdown timed out");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    use crate::config::DatabaseSettings;
    use crate::lease::{Lease, Secret};

    /// A generation whose pool points nowhere (pools connect lazily).
    fn generation(user: &str, dir: &std::path::Path) -> Generation {
        zt_tls::install_crypto_provider();
        let files = zt_tls::pg::SvidFiles::in_dir(dir);
        let id = zt_identity::SpiffeId::new("spiffe://ztlab.test/ns/demo/sa/postgres").expect("id");
        let tls = zt_tls::pg::make_tls_connect(&files, &id).expect("tls");
        let creds = DbCreds {
            username: user.into(),
            password: Secret::new("p"),
            lease: Lease {
                lease_id: format!("database/creds/backend/{user}"),
                duration: Duration::from_secs(60),
                renewable: true,
                issued_at: SystemTime::now(),
            },
        };
        let settings = DatabaseSettings { port: 1, ..DatabaseSettings::default() };
        Generation { store: Store::new(db::build_pool(&settings, &creds, &tls).expect("pool")), creds }
    }

    #[tokio::test]
    async fn no_pool_reports_the_last_error() {
        let db = Database::new(0.5);
        let err = db.current().expect_err("nothing yet");
        assert!(err.to_string().contains("starting up"), "{err}");
        db.set_error(Error::OpenBao { reason: BaoReason::Sealed, message: "OpenBao is sealed".into() });
        let err = db.run(|_s| async { Ok::<_, Error>(()) }).await.expect_err("no pool");
        assert_eq!(err.body()["reason"], "openbao_sealed");
        assert!(db.lease_info().is_none());
    }

    #[tokio::test]
    async fn install_swaps_and_requests_retry_on_a_closed_pool() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Database::new(0.5);
        assert!(db.install(generation("v-old", dir.path())).is_none());
        let info = db.lease_info().expect("lease");
        assert_eq!(info.db_user, "v-old");
        assert_eq!(info.rotate_after_secs, Some(30));

        // A request that started on the old pool, which a rotation closes under it.
        let old = db.current().expect("current");
        let replaced = db.install(generation("v-new", dir.path())).expect("old returned");
        assert_eq!(replaced.creds.username, "v-old");
        assert!(db::drain_and_close(old.store.pool(), Duration::from_secs(1)).await, "nothing in flight");
        let calls = AtomicUsize::new(0);
        let user = db
            .run(|s: Store| {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                let pool = if n == 0 { old.store.clone() } else { s };
                async move {
                    if pool.pool().is_closed() { Err(Error::PoolClosed) } else { Ok("served by the new pool") }
                }
            })
            .await
            .expect("retried on the new pool");
        assert_eq!(user, "served by the new pool");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(db.lease_info().expect("lease").db_user, "v-new");
    }

    #[tokio::test]
    async fn requests_retry_when_postgresql_closed_their_connection_but_not_forever() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Database::new(0.5);
        db.install(generation("v-1", dir.path()));
        let calls = AtomicUsize::new(0);
        let got = db
            .run(|_s: Store| {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move { if n == 0 { Err(Error::ConnectionLost("terminating connection".into())) } else { Ok(n) } }
            })
            .await
            .expect("retried on a new connection");
        assert_eq!(got, 1);
        // Lost every time: the third error is the answer, as database_down.
        let calls = AtomicUsize::new(0);
        let err = db
            .run(|_s: Store| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>(Error::ConnectionLost("terminating connection".into())) }
            })
            .await
            .expect_err("gives up");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(err.body()["reason"], "database_down");
    }

    fn rejected(user: &str) -> Error {
        Error::Database { reason: DbReason::CredentialsRejected, message: format!("invalid role OID ({user})") }
    }

    #[tokio::test]
    async fn rejected_credentials_are_replaced_at_once_and_the_request_retried() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Database::new(0.5);
        db.install(generation("v-revoked", dir.path()));
        // The rotator's part: woken by the request, told which lease, installs a new generation.
        let rotator = {
            let db = db.clone();
            let path = dir.path().to_owned();
            tokio::spawn(async move {
                db.shared.recover.notified().await;
                let lease = db.take_rejected();
                db.install(generation("v-fresh", &path));
                lease
            })
        };
        let calls = AtomicUsize::new(0);
        let user = db
            .run(|s: Store| {
                calls.fetch_add(1, Ordering::SeqCst);
                let user = db.lease_info().map(|l| l.db_user).unwrap_or_default();
                let _ = s;
                async move { if user == "v-revoked" { Err(rejected(&user)) } else { Ok(user) } }
            })
            .await
            .expect("served on the new credentials");
        assert_eq!(user, "v-fresh");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(rotator.await.expect("rotator").as_deref(), Some("database/creds/backend/v-revoked"));
        // A late report about the replaced generation does not trigger another recovery.
        *db.shared.rejected.lock().expect("lock") = Some("database/creds/backend/v-revoked".into());
        assert_eq!(db.take_rejected(), None);
    }

    #[tokio::test]
    async fn without_a_recovery_the_request_fails_naming_the_rejected_credentials() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Database::new(0.5);
        db.install(generation("v-revoked", dir.path()));
        let err = db.run(|_s: Store| async { Err::<(), _>(rejected("v-revoked")) }).await.expect_err("no new pool");
        assert_eq!(err.body()["reason"], "credentials_rejected");
        assert_eq!(err.body()["hop"], "postgres");
    }
}
