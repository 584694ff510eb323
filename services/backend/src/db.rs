//! PostgreSQL: the pool (TLS from spiffe-helper's files, dynamic credentials from OpenBao),
//! the schema, the seed data and every query the backend makes ([`Store`]).

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde::Serialize;
use tokio_postgres::config::SslMode;
use zt_tls::pg::MakeSvidTlsConnect;

use crate::config::DatabaseSettings;
use crate::error::{Error, pool_error, query_error};
use crate::lease::DbCreds;

/// bcrypt cost of stored password hashes.
pub const BCRYPT_COST: u32 = 12;

/// The role that owns database `app` and every object in it. Dynamic roles are members of it;
/// migrations run after `SET LOCAL ROLE app_owner` so that no object is owned by a dynamic
/// role (which OpenBao drops on revocation).
pub const OWNER_ROLE: &str = "app_owner";

/// Serializes concurrent migrations and seeding (several backends, or a restart during a
/// rotation).
const MIGRATION_LOCK: i64 = 0x7a74_6c61_6201;

/// The schema, in order. Each runs once, recorded in `schema_migrations`.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "CREATE TABLE users (
        id bigserial PRIMARY KEY,
        username text NOT NULL UNIQUE,
        email text NOT NULL,
        password_hash text NOT NULL,
        role text NOT NULL CHECK (role IN ('Detective', 'Sergeant', 'Civilian Admin')),
        created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE orders (
        id bigserial PRIMARY KEY,
        description text NOT NULL,
        status text NOT NULL CHECK (status IN ('open', 'in_progress', 'done')),
        created_at timestamptz NOT NULL DEFAULT now()
    );",
)];

/// A seeded user: (username, email, role). The password is `<username>99`.
pub const SEED_USERS: &[(&str, &str, &str)] = &[
    ("jake", "jake@99.precinct", "Detective"),
    ("amy", "amy@99.precinct", "Sergeant"),
    ("rosa", "rosa@99.precinct", "Detective"),
    ("terry", "terry@99.precinct", "Sergeant"),
    ("charles", "charles@99.precinct", "Detective"),
    ("gina", "gina@99.precinct", "Civilian Admin"),
    ("alice", "alice@ztlab.test", "Detective"),
    ("bob", "bob@ztlab.test", "Detective"),
    ("carol", "carol@ztlab.test", "Detective"),
];

/// Orders seeded into an empty `orders` table: (description, status).
pub const SEED_ORDERS: &[(&str, &str)] = &[
    ("Evidence lockers for the 99th precinct", "open"),
    ("Replacement badge for Det. Peralta", "in_progress"),
    ("Case file boxes (Pontiac Bandit)", "done"),
    ("Yoghurt for the break room fridge", "open"),
];

/// The role given to users who register themselves.
pub const DEFAULT_ROLE: &str = "Detective";

/// A user as the API shows it (no password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Id.
    pub id: i64,
    /// Name.
    pub username: String,
    /// Email.
    pub email: String,
    /// `Detective`, `Sergeant` or `Civilian Admin`.
    pub role: String,
}

/// A user with the password hash, for logging in.
#[derive(Debug, Clone)]
pub struct UserRecord {
    /// The user.
    pub user: User,
    /// bcrypt hash.
    pub password_hash: String,
}

/// An order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Order {
    /// Id.
    pub id: i64,
    /// What.
    pub description: String,
    /// `open`, `in_progress` or `done`.
    pub status: String,
}

/// What PostgreSQL saw of this connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PgEvidence {
    /// The client certificate's URI SAN, from `ssl_extension_info()` (extension sslinfo).
    pub client_spiffe_id: Option<String>,
    /// TLS version (`pg_stat_ssl.version`).
    pub ssl_version: Option<String>,
    /// Cipher (`pg_stat_ssl.cipher`).
    pub cipher: Option<String>,
    /// `current_user`: the dynamic role.
    pub db_user: String,
}

/// What [`Store::seed`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SeedReport {
    /// Users inserted now.
    pub users_added: Vec<String>,
    /// Orders inserted now.
    pub orders_added: u64,
}

/// Builds a pool that logs in as `creds` over TLS with `tls` (nothing connects until used).
pub fn build_pool(settings: &DatabaseSettings, creds: &DbCreds, tls: &MakeSvidTlsConnect) -> Result<Pool, Error> {
    let mut pg = tokio_postgres::Config::new();
    pg.host(&settings.host)
        .port(settings.port)
        .dbname(&settings.name)
        .user(&creds.username)
        .password(creds.password.expose())
        .ssl_mode(SslMode::Require)
        .connect_timeout(settings.connect_timeout)
        .application_name("backend");
    let manager = Manager::from_config(pg, tls.clone(), ManagerConfig { recycling_method: RecyclingMethod::Fast });
    let timeout = Some(settings.connect_timeout);
    Pool::builder(manager)
        .max_size(settings.pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(timeout)
        .create_timeout(timeout)
        .recycle_timeout(timeout)
        .build()
        .map_err(|e| Error::Internal(format!("cannot build the connection pool: {e}")))
}

/// Hashes a password with bcrypt (cost [`BCRYPT_COST`]) off the async threads.
pub async fn hash_password(password: String) -> Result<String, Error> {
    tokio::task::spawn_blocking(move || bcrypt::hash(password, BCRYPT_COST))
        .await
        .map_err(|e| Error::Internal(format!("hashing task failed: {e}")))?
        .map_err(|e| Error::Internal(format!("cannot hash the password: {e}")))
}

/// Checks a password against a bcrypt hash off the async threads. A malformed hash is a
/// mismatch.
pub async fn verify_password(password: String, hash: String) -> Result<bool, Error> {
    tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
        .await
        .map_err(|e| Error::Internal(format!("hashing task failed: {e}")))
}

/// Every query the backend makes, on one pool.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("status", &self.pool.status()).finish()
    }
}

fn row_user(row: &tokio_postgres::Row) -> User {
    User { id: row.get("id"), username: row.get("username"), email: row.get("email"), role: row.get("role") }
}

impl Store {
    /// Queries on `pool`.
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, Error> {
        self.pool.get().await.map_err(pool_error)
    }

    /// Connects and returns `current_user` (the login role).
    pub async fn check(&self) -> Result<String, Error> {
        let client = self.client().await?;
        let row = client.query_one("SELECT current_user::text", &[]).await.map_err(|e| query_error(e, None))?;
        Ok(row.get(0))
    }

    /// Applies the missing migrations in one transaction, as [`OWNER_ROLE`].
    pub async fn migrate(&self) -> Result<Vec<i32>, Error> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| query_error(e, None))?;
        let q = |e| query_error(e, None);
        tx.batch_execute(&format!("SET LOCAL ROLE {OWNER_ROLE}")).await.map_err(q)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(q)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version integer PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(q)?;
        let done: Vec<i32> =
            tx.query("SELECT version FROM schema_migrations", &[]).await.map_err(q)?.iter().map(|r| r.get(0)).collect();
        let mut applied = Vec::new();
        for (version, sql) in MIGRATIONS {
            if done.contains(version) {
                continue;
            }
            tx.batch_execute(sql).await.map_err(q)?;
            tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[version]).await.map_err(q)?;
            applied.push(*version);
        }
        tx.commit().await.map_err(q)?;
        if !applied.is_empty() {
            tracing::info!(?applied, "applied database migrations");
        }
        Ok(applied)
    }

    /// Inserts the seed users and orders that are missing. Only missing users are hashed
    /// (bcrypt is slow on purpose), so a second run costs one query.
    pub async fn seed(&self) -> Result<SeedReport, Error> {
        let q = |e| query_error(e, None);
        let names: Vec<String> = SEED_USERS.iter().map(|(n, _, _)| (*n).to_owned()).collect();
        let present: Vec<String> = {
            let client = self.client().await?;
            let rows =
                client.query("SELECT username FROM users WHERE username = ANY($1)", &[&names]).await.map_err(q)?;
            rows.iter().map(|r| r.get(0)).collect()
        };
        let missing: Vec<_> = SEED_USERS.iter().filter(|(n, _, _)| !present.iter().any(|p| p == n)).collect();
        let mut hashing = Vec::new();
        for (name, _, _) in &missing {
            hashing.push(tokio::spawn(hash_password(format!("{name}99"))));
        }
        let mut hashes = Vec::new();
        for h in hashing {
            hashes.push(h.await.map_err(|e| Error::Internal(format!("hashing task failed: {e}")))??);
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(q)?;
        tx.batch_execute(&format!("SET LOCAL ROLE {OWNER_ROLE}")).await.map_err(q)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(q)?;
        let mut report = SeedReport::default();
        for ((name, email, role), hash) in missing.iter().zip(hashes) {
            let n = tx
                .execute(
                    "INSERT INTO users (username, email, password_hash, role) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (username) DO NOTHING",
                    &[name, email, &hash, role],
                )
                .await
                .map_err(q)?;
            if n == 1 {
                report.users_added.push((*name).to_owned());
            }
        }
        let any: bool = tx.query_one("SELECT EXISTS (SELECT 1 FROM orders)", &[]).await.map_err(q)?.get(0);
        if !any {
            for (description, status) in SEED_ORDERS {
                tx.execute("INSERT INTO orders (description, status) VALUES ($1, $2)", &[description, status])
                    .await
                    .map_err(q)?;
                report.orders_added += 1;
            }
        }
        tx.commit().await.map_err(q)?;
        if !report.users_added.is_empty() || report.orders_added > 0 {
            tracing::info!(users = ?report.users_added, orders = report.orders_added, "seeded the database");
        }
        Ok(report)
    }

    /// Inserts a user; a taken username is [`Error::Taken`].
    pub async fn create_user(
        &self,
        username: &str,
        email: &str,
        password_hash: &str,
        role: &str,
    ) -> Result<User, Error> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "INSERT INTO users (username, email, password_hash, role) VALUES ($1, $2, $3, $4)
                 RETURNING id, username, email, role",
                &[&username, &email, &password_hash, &role],
            )
            .await
            .map_err(|e| query_error(e, Some("username")))?;
        Ok(row_user(&row))
    }

    /// Whether a username is taken.
    pub async fn username_taken(&self, username: &str) -> Result<bool, Error> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT EXISTS (SELECT 1 FROM users WHERE username = $1)", &[&username])
            .await
            .map_err(|e| query_error(e, None))?;
        Ok(row.get(0))
    }

    /// A user and their password hash, by name.
    pub async fn user_by_username(&self, username: &str) -> Result<Option<UserRecord>, Error> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT id, username, email, role, password_hash FROM users WHERE username = $1", &[&username])
            .await
            .map_err(|e| query_error(e, None))?;
        Ok(row.map(|r| UserRecord { user: row_user(&r), password_hash: r.get("password_hash") }))
    }

    /// A user by id.
    pub async fn user_by_id(&self, id: i64) -> Result<Option<User>, Error> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT id, username, email, role FROM users WHERE id = $1", &[&id])
            .await
            .map_err(|e| query_error(e, None))?;
        Ok(row.as_ref().map(row_user))
    }

    /// Every order, by id.
    pub async fn orders(&self) -> Result<Vec<Order>, Error> {
        let client = self.client().await?;
        orders_on(&client).await
    }

    /// What PostgreSQL saw of the connection (client SPIFFE ID, TLS, role), and the orders,
    /// over one connection.
    pub async fn evidence(&self) -> Result<(PgEvidence, Vec<Order>), Error> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT current_user::text, s.version, s.cipher,
                        (SELECT value FROM ssl_extension_info() WHERE name = 'subjectAltName')
                 FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()",
                &[],
            )
            .await
            .map_err(|e| query_error(e, None))?;
        let san: Option<String> = row.get(3);
        let evidence = PgEvidence {
            db_user: row.get(0),
            ssl_version: row.get(1),
            cipher: row.get(2),
            client_spiffe_id: san.as_deref().and_then(uri_from_san),
        };
        Ok((evidence, orders_on(&client).await?))
    }
}

async fn orders_on(client: &deadpool_postgres::Client) -> Result<Vec<Order>, Error> {
    let rows = client
        .query("SELECT id, description, status FROM orders ORDER BY id", &[])
        .await
        .map_err(|e| query_error(e, None))?;
    Ok(rows.iter().map(|r| Order { id: r.get(0), description: r.get(1), status: r.get(2) }).collect())
}

/// The first `URI:` entry of an OpenSSL subjectAltName string (`URI:spiffe://…, DNS:…`).
pub fn uri_from_san(san: &str) -> Option<String> {
    san.split(',').map(str::trim).find_map(|part| part.strip_prefix("URI:")).map(str::to_owned)
}

/// How long to wait for in-flight queries on a retired pool before closing it.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits until no connection of `pool` is in use (or `timeout`), then closes it.
pub async fn drain_and_close(pool: &Pool, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    let drained = loop {
        let s = pool.status();
        if s.size == s.available && s.waiting == 0 {
            break true;
        }
        if tokio::time::Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    pool.close();
    drained
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn san_uri() {
        assert_eq!(
            uri_from_san("URI:spiffe://ztlab.test/ns/demo/sa/backend").as_deref(),
            Some("spiffe://ztlab.test/ns/demo/sa/backend")
        );
        assert_eq!(uri_from_san("DNS:x, URI:spiffe://a/b").as_deref(), Some("spiffe://a/b"));
        assert_eq!(uri_from_san("DNS:x"), None);
    }

    #[test]
    fn seed_data_matches_the_schema() {
        assert_eq!(SEED_USERS.len(), 9);
        for (name, email, role) in SEED_USERS {
            assert!(crate::rules::check_username(name).is_ok(), "{name}");
            assert!(crate::rules::check_email(email).is_ok(), "{email}");
            assert!(["Detective", "Sergeant", "Civilian Admin"].contains(role), "{role}");
            assert!(MIGRATIONS[0].1.contains(&format!("'{role}'")));
        }
        for (_, status) in SEED_ORDERS {
            assert!(MIGRATIONS[0].1.contains(&format!("'{status}'")), "{status}");
        }
    }

    #[tokio::test]
    async fn passwords_hash_and_verify() {
        let hash = hash_password("jake99".into()).await.expect("hash");
        assert!(hash.starts_with("$2b$12$"), "{hash}");
        assert!(verify_password("jake99".into(), hash.clone()).await.expect("verify"));
        assert!(!verify_password("amy99".into(), hash).await.expect("verify"));
        assert!(!verify_password("x".into(), "not a hash".into()).await.expect("verify"));
    }

    #[tokio::test]
    async fn pool_to_nowhere_is_database_down() {
        zt_tls::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let files = zt_tls::pg::SvidFiles::in_dir(dir.path());
        let id = zt_identity::SpiffeId::new("spiffe://ztlab.test/ns/demo/sa/postgres").expect("id");
        let tls = zt_tls::pg::make_tls_connect(&files, &id).expect("tls");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let settings = DatabaseSettings {
            port,
            cert_dir: dir.path().into(),
            connect_timeout: Duration::from_secs(2),
            ..DatabaseSettings::default()
        };
        let creds = DbCreds {
            username: "u".into(),
            password: crate::lease::Secret::new("p"),
            lease: crate::lease::Lease {
                lease_id: "l".into(),
                duration: Duration::from_secs(60),
                renewable: false,
                issued_at: std::time::SystemTime::now(),
            },
        };
        let store = Store::new(build_pool(&settings, &creds, &tls).expect("pool"));
        let err = store.check().await.expect_err("nothing listens");
        assert!(matches!(err, Error::Database { reason: crate::error::DbReason::DatabaseDown, .. }), "{err:?}");
        assert!(drain_and_close(store.pool(), Duration::from_millis(10)).await);
        assert!(matches!(store.check().await, Err(Error::PoolClosed)));
    }
}
