//! The Entry API client against a real SPIRE v1.15.3 server started by `zt_runtime::lab`.
//! Needs the SPIRE binaries in `~/.cache/ztlab` (`./scripts/install-infra.sh`).

use std::error::Error as StdError;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zt_runtime::lab::{Lab, LabSpec, SiteSpec};
use zt_spire_api::{ChunkLimits, Entry, EntryMask, Error, ListFilter, Selector, SpiffeId, SpireEntryClient};

type TestResult = Result<(), Box<dyn StdError>>;

const TD: &str = "ztlab.test";
const PARENT: &str = "spiffe://ztlab.test/ztlab/nodes/local";

fn spiffe(id: &str) -> SpiffeId {
    SpiffeId::parse(id).unwrap_or_else(|| panic!("bad test SPIFFE ID {id}"))
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default()
}

/// A fully populated entry with a caller-chosen ID.
fn entry(run: &str, i: usize) -> Entry {
    Entry {
        id: format!("ztlab.{}", uuid::Uuid::new_v4()),
        spiffe_id: Some(spiffe(&format!("spiffe://{TD}/test/{run}/w{i}"))),
        parent_id: Some(spiffe(PARENT)),
        selectors: vec![Selector::new("unix", "path:/x"), Selector::new("unix", format!("uid:{}", 1000 + i))],
        x509_svid_ttl: 600 + i as i32,
        jwt_svid_ttl: 300 + i as i32,
        federates_with: vec![],
        admin: i.is_multiple_of(2),
        downstream: i.is_multiple_of(3),
        expires_at: if i == 1 { now() + 86_400 } else { 0 },
        dns_names: vec![format!("w{i}.{run}.ztlab.test"), format!("alt{i}.ztlab.test")],
        revision_number: 0,
        store_svid: i == 2,
        hint: format!("hint-{i}"),
        created_at: 0,
        additional_attributes: None,
    }
}

fn sorted(mut s: Vec<Selector>) -> Vec<Selector> {
    s.sort_by(|a, b| (&a.r#type, &a.value).cmp(&(&b.r#type, &b.value)));
    s
}

/// How DNS names are compared: in order (list/get), or as a set (create/update responses,
/// where SPIRE 1.15 with SQLite returns them in index order rather than insertion order).
#[derive(Clone, Copy, PartialEq)]
enum Dns {
    Ordered,
    AnyOrder,
}

fn sorted_dns(e: &Entry) -> Vec<String> {
    let mut d = e.dns_names.clone();
    d.sort();
    d
}

/// Every field the caller sets must come back unchanged.
fn assert_same_input(want: &Entry, got: &Entry, dns: Dns) {
    assert_eq!(got.id, want.id);
    assert_eq!(got.spiffe_id, want.spiffe_id, "{}", want.id);
    assert_eq!(got.parent_id, want.parent_id, "{}", want.id);
    assert_eq!(sorted(got.selectors.clone()), sorted(want.selectors.clone()), "{}", want.id);
    assert_eq!(got.x509_svid_ttl, want.x509_svid_ttl, "{}", want.id);
    assert_eq!(got.jwt_svid_ttl, want.jwt_svid_ttl, "{}", want.id);
    assert_eq!(got.federates_with, want.federates_with, "{}", want.id);
    assert_eq!(got.admin, want.admin, "{}", want.id);
    assert_eq!(got.downstream, want.downstream, "{}", want.id);
    assert_eq!(got.expires_at, want.expires_at, "{}", want.id);
    if dns == Dns::Ordered {
        assert_eq!(got.dns_names, want.dns_names, "{}", want.id);
    } else {
        assert_eq!(sorted_dns(got), sorted_dns(want), "{}", want.id);
    }
    assert_eq!(got.store_svid, want.store_svid, "{}", want.id);
    assert_eq!(got.hint, want.hint, "{}", want.id);
}

fn by_parent() -> ListFilter {
    ListFilter { by_parent_id: Some(spiffe(PARENT)), ..ListFilter::default() }
}

async fn start_lab(dir: &Path) -> Result<Lab, Box<dyn StdError>> {
    let spec =
        LabSpec { state_dir: dir.into(), sites: vec![SiteSpec::named("a")], workloads: vec![], ..LabSpec::default() };
    Ok(Lab::up(spec, true).await?)
}

#[tokio::test(flavor = "multi_thread")]
async fn entry_lifecycle_against_real_spire() -> TestResult {
    let dir = tempfile::Builder::new().prefix("ztl").tempdir_in("/tmp")?;
    let mut lab = start_lab(dir.path()).await?;
    let paths = lab.site_paths("a")?;
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();

    // Small pages and two entries per request, so paging and chunking run for real.
    let client = SpireEntryClient::connect(&paths.admin_socket())
        .await?
        .with_page_size(2)
        .with_chunk_limits(ChunkLimits { max_bytes: 1024 * 1024, max_items: 2 });
    let before = client.list_all(Some(by_parent())).await?;
    assert!(before.is_empty(), "fresh server has no entries under {PARENT}");

    // --- create with caller-chosen IDs: per-entry success, in order ---
    let wanted: Vec<Entry> = (0..5).map(|i| entry(&run, i)).collect();
    let created = client.batch_create(&wanted).await?;
    assert_eq!(created.len(), wanted.len());
    let t0 = now();
    for (i, (r, want)) in created.iter().zip(&wanted).enumerate() {
        assert_eq!(r.index, i);
        assert_eq!(r.id, want.id);
        assert!(r.existing.is_none());
        let got = r.result.as_ref().unwrap_or_else(|s| panic!("create {} failed: {s}", want.id));
        assert_same_input(want, got, Dns::AnyOrder);
        assert_eq!(got.revision_number, 0, "new entries start at revision 0");
        assert!((t0 - 60..=t0 + 5).contains(&got.created_at), "created_at {} is set by the server", got.created_at);
    }

    // --- the same again: per-entry AlreadyExists, the batch itself succeeds ---
    let again = client.batch_create(&wanted).await?;
    assert_eq!(again.len(), wanted.len());
    for (r, want) in again.iter().zip(&wanted) {
        let status = r.result.as_ref().expect_err("second create must not succeed");
        assert_eq!(status.code, 6, "AlreadyExists: {status}");
        assert!(status.is_already_exists());
        let existing = r.existing.as_ref().expect("AlreadyExists carries the entry");
        assert_eq!(existing.id, want.id);
    }

    // A *similar* entry (same SPIFFE ID, parent, selectors) under a new ID is also
    // AlreadyExists, and what comes back is the entry under the OLD id.
    let mut similar = wanted[0].clone();
    similar.id = format!("ztlab.{}", uuid::Uuid::new_v4());
    similar.hint = "different hint does not matter".into();
    // An existing ID with different content.
    let mut same_id = entry(&run, 9);
    same_id.id = wanted[1].id.clone();
    // An entry SPIRE rejects (federates with an unknown trust domain) fails alone.
    let mut bad = entry(&run, 10);
    bad.federates_with = vec!["nowhere.test".into()];
    let fresh = entry(&run, 11);
    let mixed = client.batch_create(&[similar.clone(), same_id.clone(), bad.clone(), fresh.clone()]).await?;
    assert_eq!(mixed.len(), 4);
    let s0 = mixed[0].result.as_ref().expect_err("similar entry");
    assert!(s0.is_already_exists(), "{s0}");
    assert_eq!(mixed[0].id, similar.id, "result names the requested id");
    assert_eq!(
        mixed[0].existing.as_ref().map(|e| e.id.as_str()),
        Some(wanted[0].id.as_str()),
        "AlreadyExists returns the existing similar entry"
    );
    // Also AlreadyExists, but from the datastore's unique index: no entry comes back.
    let s1 = mixed[1].result.as_ref().expect_err("duplicate id");
    assert!(s1.is_already_exists(), "{s1}");
    assert!(mixed[1].existing.is_none());
    eprintln!("duplicate ID with different content: {s1}");
    let s2 = mixed[2].result.as_ref().expect_err("unknown federated trust domain");
    eprintln!("federates_with unknown trust domain: {s2}");
    let f = mixed[3].result.as_ref().unwrap_or_else(|s| panic!("the good entry after failures must be created: {s}"));
    assert_same_input(&fresh, f, Dns::AnyOrder);

    // --- list back (paged by 2), field by field ---
    let listed = client.list_all(Some(by_parent())).await?;
    let mut expected: Vec<&Entry> = wanted.iter().chain([&fresh]).collect();
    expected.sort_by(|a, b| a.id.cmp(&b.id));
    let mut listed_sorted = listed.clone();
    listed_sorted.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(
        listed_sorted.iter().map(|e| &e.id).collect::<Vec<_>>(),
        expected.iter().map(|e| &e.id).collect::<Vec<_>>(),
        "exactly our entries are listed"
    );
    for (got, want) in listed_sorted.iter().zip(&expected) {
        assert_same_input(want, got, Dns::Ordered);
        let from_create = created
            .iter()
            .chain(&mixed)
            .find_map(|r| r.result.as_ref().ok().filter(|e| e.id == want.id))
            .expect("created");
        let mut a = got.clone();
        let mut b = from_create.clone();
        a.dns_names.sort();
        b.dns_names.sort();
        assert_eq!(a, b, "list returns what create returned (DNS order aside)");
    }
    assert_eq!(client.count(Some(by_parent())).await?, 6);
    let total = client.list_all(None).await?;
    assert!(total.len() >= 6, "unfiltered list includes ours");

    // Other filters: by SPIFFE ID, by hint, by selectors.
    let one = client
        .list_all(Some(ListFilter { by_spiffe_id: wanted[3].spiffe_id.clone(), ..ListFilter::default() }))
        .await?;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].id, wanted[3].id);
    let hinted = client.list_all(Some(ListFilter { by_hint: Some("hint-4".into()), ..ListFilter::default() })).await?;
    assert_eq!(hinted.iter().map(|e| &e.id).collect::<Vec<_>>(), vec![&wanted[4].id]);
    use zt_spire_api::spire::api::types::{SelectorMatch, selector_match::MatchBehavior};
    let by_sel = client
        .list_all(Some(ListFilter {
            by_selectors: Some(SelectorMatch {
                selectors: vec![Selector::new("unix", "uid:1002")],
                r#match: MatchBehavior::MatchSuperset as i32,
            }),
            ..ListFilter::default()
        }))
        .await?;
    assert_eq!(by_sel.iter().map(|e| &e.id).collect::<Vec<_>>(), vec![&wanted[2].id]);
    assert_eq!(client.get(&wanted[2].id).await?.as_ref(), listed.iter().find(|e| e.id == wanted[2].id));
    assert_eq!(client.get("ztlab.no-such-entry").await?, None);

    // --- the real CLI sees them ---
    for want in &wanted {
        let out = zt_runtime::spire::server_cli(&paths, &["entry", "show", "-entryID", &want.id]).await?;
        assert!(out.contains(&want.id), "{out}");
        let sid = want.spiffe_id.as_ref().map(ToString::to_string).unwrap_or_default();
        assert!(out.contains(&sid), "{out}");
        assert!(out.contains(PARENT), "{out}");
        assert!(out.contains("unix:path:/x"), "{out}");
        assert!(out.contains(&want.dns_names[0]), "{out}");
        assert!(out.contains(&want.hint), "{out}");
    }

    // --- update one with a mask: selectors + X.509 TTL only ---
    let mut change = Entry {
        id: wanted[3].id.clone(),
        selectors: vec![Selector::new("unix", "path:/y")],
        x509_svid_ttl: 1234,
        hint: "ignored: not in the mask".into(),
        ..Entry::default()
    };
    let mask = EntryMask { selectors: true, x509_svid_ttl: true, ..EntryMask::default() };
    let updated = client.batch_update(std::slice::from_ref(&change), Some(&mask)).await?;
    assert_eq!(updated.len(), 1);
    let u = updated[0].result.as_ref().unwrap_or_else(|s| panic!("update failed: {s}"));
    let mut want_after = wanted[3].clone();
    want_after.selectors = change.selectors.clone();
    want_after.x509_svid_ttl = 1234;
    assert_same_input(&want_after, u, Dns::AnyOrder);
    assert_eq!(u.revision_number, 1, "an update bumps the revision");
    let reread = client.get(&wanted[3].id).await?.expect("still there");
    assert_same_input(&want_after, &reread, Dns::Ordered);
    assert_eq!(reread.revision_number, 1);
    let out = zt_runtime::spire::server_cli(&paths, &["entry", "show", "-entryID", &wanted[3].id]).await?;
    assert!(out.contains("unix:path:/y") && !out.contains("unix:path:/x"), "{out}");
    assert!(out.contains("1234"), "{out}");

    // The same update again still bumps the revision (SPIRE does not compare).
    let again = client.batch_update(std::slice::from_ref(&change), Some(&mask)).await?;
    let a = again[0].result.as_ref().map_err(|s| s.to_string())?;
    assert_eq!(a.revision_number, 2);

    // Updating a missing ID fails for that entry only.
    change.id = "ztlab.missing".into();
    let missing = client.batch_update(&[change.clone(), reread.clone()], Some(&mask)).await?;
    let sm = missing[0].result.as_ref().expect_err("missing id");
    eprintln!("update of a missing entry: {sm}");
    assert!(missing[1].result.is_ok());

    // --- delete: per-entry OK, NotFound for a missing ID, gone afterwards ---
    let mut ids: Vec<String> = wanted.iter().map(|e| e.id.clone()).collect();
    ids.push(fresh.id.clone());
    ids.insert(2, "ztlab.never-existed".into());
    let deleted = client.batch_delete(&ids).await?;
    assert_eq!(deleted.len(), ids.len());
    for (r, id) in deleted.iter().zip(&ids) {
        assert_eq!(&r.id, id);
        if id == "ztlab.never-existed" {
            let s = r.result.as_ref().expect_err("missing id");
            assert_eq!(s.code, 5, "NotFound: {s}");
            assert!(s.is_not_found());
        } else {
            assert_eq!(r.result, Ok(()), "{id}");
        }
    }
    assert!(client.list_all(Some(by_parent())).await?.is_empty());
    assert_eq!(client.get(&wanted[0].id).await?, None);
    let gone = zt_runtime::spire::server_cli(&paths, &["entry", "show", "-entryID", &wanted[0].id]).await;
    assert!(gone.is_err(), "CLI no longer finds it: {gone:?}");

    // --- server stops: calls fail with an error naming the socket ---
    lab.stop_component("spire-server-a").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let err = client.list_all(None).await.expect_err("server is stopped");
    let msg = err.to_string();
    eprintln!("after stop: {msg}");
    assert!(msg.contains(&paths.admin_socket().display().to_string()), "{msg}");
    assert_eq!(err.grpc_code(), Some(tonic::Code::Unavailable));
    let err = client.batch_delete(&["ztlab.x"]).await.expect_err("stopped");
    assert!(matches!(err, Error::BatchAborted { completed: 0, total: 1, .. }), "{err}");
    let err = SpireEntryClient::connect(&paths.admin_socket()).await.expect_err("stopped");
    eprintln!("connect after stop: {err}");
    assert!(matches!(err, Error::SocketMissing { .. } | Error::Connect { .. }), "{err:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_socket_gives_a_clear_error() -> TestResult {
    let dir = tempfile::Builder::new().prefix("ztl").tempdir_in("/tmp")?;
    let path = dir.path().join("private/api.sock");
    let err = SpireEntryClient::connect(&path).await.expect_err("no socket");
    assert!(matches!(err, Error::SocketMissing { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("does not exist"), "{msg}");

    // A socket file nobody listens on any more (a server that died): connection refused.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale)?);
    let err = SpireEntryClient::connect(&stale).await.expect_err("nobody listens");
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&stale.display().to_string()), "{msg}");
    Ok(())
}
