//! The store against a real PostgreSQL: each test starts its own throwaway cluster (`initdb` in a
//! temp dir, unix socket only, through zt-runtime's `postgres` module), migrates a fresh database
//! and checks what callers rely on: revisions, per-site states through a sync round, the audit
//! trail written with each change, and field-named errors.

use std::time::Duration;

use entry_manager::store::{Actor, AuditFilter, EntryFilter, Store, StoreError};
use zt_entry_api::pb;
use zt_entry_api::validate::ValidEntry;
use zt_runtime::postgres::Cluster;
use zt_runtime::process::ProcessRecord;

/// A PostgreSQL cluster of its own, stopped when dropped.
struct Db {
    _dir: tempfile::TempDir,
    cluster: Cluster,
    record: ProcessRecord,
}

impl Db {
    async fn start() -> Db {
        let dir = tempfile::Builder::new().prefix("zt-store-").tempdir_in("/tmp").expect("tempdir");
        let cluster = Cluster::new(&dir.path().join("pg"), 5432);
        let log = dir.path().join("postgres.log");
        cluster.init(&dir.path().join("initdb.log")).await.expect("initdb");
        let record = cluster.spawn(log, &[]).expect("start postgres");
        cluster.wait_ready("postgres", &record, Duration::from_secs(60)).await.expect("postgres ready");
        cluster.ensure_database("store_test").await.expect("database");
        Db { _dir: dir, cluster, record }
    }

    async fn store(&self) -> Store {
        Store::connect(&self.cluster.conn_string("store_test"), 4).await.expect("connect and migrate")
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        self.record.stop_blocking(nix::sys::signal::Signal::SIGINT, Duration::from_secs(10));
    }
}

fn actor() -> Actor {
    Actor { name: "test:admin".into(), trace_id: "trace-1".into() }
}

fn site(id: &str) -> pb::Site {
    pb::Site {
        id: id.into(),
        trust_domain: "ztlab.test".into(),
        description: format!("site {id}"),
        ..Default::default()
    }
}

fn entry(path: &str, sites: &[&str]) -> (String, ValidEntry) {
    let spec = pb::EntrySpec {
        spiffe_id: format!("spiffe://ztlab.test{path}"),
        parent_id: "spiffe://ztlab.test/ztlab/nodes/local".into(),
        selectors: vec![pb::Selector { r#type: "unix".into(), value: format!("path:/opt{path}") }],
        site_ids: sites.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    };
    ("entry".to_owned(), ValidEntry::parse("entry", &spec).expect("valid entry"))
}

fn states(e: &pb::Entry) -> Vec<(String, pb::SyncState)> {
    e.site_status
        .iter()
        .map(|s| (s.site_id.clone(), pb::SyncState::try_from(s.state).unwrap_or(pb::SyncState::Unspecified)))
        .collect()
}

async fn with_sites(db: &Db) -> Store {
    let store = db.store().await;
    for id in ["a", "b"] {
        store.create_site(&actor(), &site(id)).await.expect("site");
    }
    store
}

#[tokio::test]
async fn migrations_run_once_and_sites_are_kept() {
    let db = Db::start().await;
    let store = with_sites(&db).await;
    // A second connect migrates nothing and sees the same data.
    let again = db.store().await;
    let ids: Vec<String> = again.list_sites().await.expect("list").into_iter().map(|s| s.id).collect();
    assert_eq!(ids, ["a", "b"]);
    let err = store.create_site(&actor(), &site("a")).await.expect_err("twice");
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err}");
    let err = store.get_site("zz").await.expect_err("missing");
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
}

#[tokio::test]
async fn an_entry_is_pending_until_each_site_reports_it_synced() {
    let db = Db::start().await;
    let store = with_sites(&db).await;
    let (created, updates) =
        store.create_entries(&actor(), &[entry("/ns/a/sa/one", &["a", "b"])]).await.expect("create");
    let e = &created[0];
    assert_eq!(e.revision, 1);
    assert_eq!(updates.len(), 2, "one update per site: {updates:?}");
    assert_eq!(states(e), [("a".into(), pb::SyncState::Pending), ("b".into(), pb::SyncState::Pending)]);

    // Site a's agent sees the entry in its desired set and reports it synced.
    let (_, desired, _) = store.desired_entries("a").await.expect("desired");
    let d = desired.iter().find(|d| d.entry_id == e.id).expect("desired at a");
    let ok = pb::SyncResult {
        entry_id: e.id.clone(),
        revision: d.revision,
        outcome: pb::SyncOutcome::Synced as i32,
        spire_entry_id: d.spire_entry_id.clone(),
        error: String::new(),
    };
    store.report("a", std::slice::from_ref(&ok), &[]).await.expect("report");
    let e = store.get_entry(&e.id).await.expect("get");
    assert_eq!(states(&e), [("a".into(), pb::SyncState::Synced), ("b".into(), pb::SyncState::Pending)]);

    // A failure at b is recorded with its error; a filter by state finds it.
    let failed = pb::SyncResult { outcome: pb::SyncOutcome::Failed as i32, error: "boom".into(), ..ok };
    store.report("b", &[failed], &[]).await.expect("report");
    let e = store.get_entry(&e.id).await.expect("get");
    assert_eq!(states(&e)[1], ("b".into(), pb::SyncState::Failed));
    assert_eq!(e.site_status[1].last_error, "boom");
    let filter = EntryFilter { state: Some(pb::SyncState::Failed), ..Default::default() };
    let (rows, _) = store.list_entries(&filter, 10, "").await.expect("list");
    assert_eq!(rows.len(), 1);
    let health = store.site_health("b").await.expect("health");
    assert_eq!((health.failed, health.synced), (1, 0));
}

#[tokio::test]
async fn updates_need_the_current_revision_and_every_change_is_audited() {
    let db = Db::start().await;
    let store = with_sites(&db).await;
    let (created, _) = store.create_entries(&actor(), &[entry("/ns/a/sa/two", &["a"])]).await.expect("create");
    let id = created[0].id.clone();
    let (_, new) = entry("/ns/a/sa/two-renamed", &["a"]);
    let (updated, _) = store.update_entry(&actor(), &id, 1, &new).await.expect("update at 1");
    assert_eq!(updated.revision, 2);
    assert_eq!(updated.spiffe_id, "spiffe://ztlab.test/ns/a/sa/two-renamed");
    let err = store.update_entry(&actor(), &id, 1, &new).await.expect_err("stale revision");
    assert!(matches!(err, StoreError::Aborted(_)), "{err}");
    assert!(err.to_string().contains("revision"), "{err}");

    let (audit, _) = store
        .list_audit(&AuditFilter { resource_id: Some(id.clone()), ..Default::default() }, 10, "")
        .await
        .expect("audit");
    assert_eq!(audit.len(), 2, "create and update: {audit:?}");
    assert!(audit.iter().all(|a| a.actor == "test:admin" && a.trace_id == "trace-1"), "{audit:?}");
}

#[tokio::test]
async fn bad_ids_and_unknown_sites_name_the_field() {
    let db = Db::start().await;
    let store = with_sites(&db).await;
    let err = store.get_entry("not-a-uuid").await.expect_err("bad id");
    assert!(matches!(&err, StoreError::Invalid(f) if f.to_string().starts_with("id: ")), "{err}");
    let err = store.create_entries(&actor(), &[entry("/ns/a/sa/three", &["nowhere"])]).await.expect_err("site");
    assert!(matches!(&err, StoreError::Invalid(f) if f.to_string().contains("site")), "{err}");
}
