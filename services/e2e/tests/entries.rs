//! Entry management end to end: real PostgreSQL, two real SPIRE servers, entry-manager and a
//! site agent per site, all started through zt-runtime.

use std::time::Duration;

use e2e::{all_sites, entry_lab, state_dir};
use zt_entry_api::pb::{self, SyncState};

fn init() {
    zt_tls::install_crypto_provider();
}

fn spec(path: &str) -> pb::EntrySpec {
    pb::EntrySpec {
        spiffe_id: format!("spiffe://ztlab.test{path}"),
        parent_id: "spiffe://ztlab.test/ztlab/nodes/local".into(),
        selectors: vec![
            pb::Selector { r#type: "unix".into(), value: "uid:1234".into() },
            pb::Selector { r#type: "unix".into(), value: format!("path:/opt{path}") },
        ],
        x509_svid_ttl: 120,
        jwt_svid_ttl: 60,
        dns_names: vec!["app.ztlab.test".into()],
        admin: false,
        downstream: false,
        hint: "app".into(),
        site_ids: vec!["a".into(), "b".into()],
    }
}

/// The SPIRE entry (as `spire-server entry show -output json` prints it) equals the central one.
fn assert_spire_equal(site: &str, spire: &serde_json::Value, e: &pb::Entry) {
    let id = |v: &serde_json::Value| {
        format!("spiffe://{}{}", v["trust_domain"].as_str().unwrap_or(""), v["path"].as_str().unwrap_or(""))
    };
    assert_eq!(id(&spire["spiffe_id"]), e.spiffe_id, "{site}: spiffe_id");
    assert_eq!(id(&spire["parent_id"]), e.parent_id, "{site}: parent_id");
    let mut have: Vec<String> = spire["selectors"]
        .as_array()
        .expect("selectors")
        .iter()
        .map(|s| format!("{}:{}", s["type"].as_str().unwrap_or(""), s["value"].as_str().unwrap_or("")))
        .collect();
    have.sort();
    let mut want: Vec<String> = e.selectors.iter().map(|s| format!("{}:{}", s.r#type, s.value)).collect();
    want.sort();
    assert_eq!(have, want, "{site}: selectors");
    assert_eq!(spire["x509_svid_ttl"].as_i64().unwrap_or(0), i64::from(e.x509_svid_ttl), "{site}: x509_svid_ttl");
    assert_eq!(spire["jwt_svid_ttl"].as_i64().unwrap_or(0), i64::from(e.jwt_svid_ttl), "{site}: jwt_svid_ttl");
    let dns: Vec<String> = spire["dns_names"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d.as_str().map(String::from)).collect())
        .unwrap_or_default();
    assert_eq!(dns, e.dns_names, "{site}: dns_names");
    assert_eq!(spire["hint"].as_str().unwrap_or(""), e.hint, "{site}: hint");
    assert_eq!(spire["admin"].as_bool().unwrap_or(false), e.admin, "{site}: admin");
    assert_eq!(spire["downstream"].as_bool().unwrap_or(false), e.downstream, "{site}: downstream");
}

#[tokio::test(flavor = "multi_thread")]
async fn create_update_delete_sync_to_both_spire_servers() {
    init();
    let dir = state_dir();
    let lab = entry_lab(&dir, 30).await;

    // Stream first, so that the create's status changes are seen.
    let mut stream = lab
        .admin
        .sync()
        .stream_sync_updates(pb::StreamSyncUpdatesRequest::default())
        .await
        .expect("stream")
        .into_inner();

    let created = create(&lab, spec("/ns/e2e/sa/app"), "create").await;
    assert_eq!(created.revision, 1);
    assert_eq!(created.created_by, "apikey:".to_owned() + created.created_by.trim_start_matches("apikey:"));
    assert!(all_sites(&created, SyncState::Pending), "{created:?}");
    let synced = lab.wait_entry(&created.id, Duration::from_secs(15), |e| all_sites(e, SyncState::Synced)).await;
    let spire_id = format!("ztlab.{}", created.id);
    for site in ["a", "b"] {
        let s = lab.spire_entry(site, &spire_id).await.unwrap_or_else(|| panic!("{spire_id} missing on site {site}"));
        assert_spire_equal(site, &s, &synced);
    }

    // The stream delivered PENDING then SYNCED for both sites.
    let mut seen = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.len() < 4 {
        let u = tokio::time::timeout_at(deadline, stream.message())
            .await
            .expect("stream updates in time")
            .expect("ok")
            .expect("open");
        if u.entry_id == created.id {
            seen.insert((u.site_id.clone(), u.state));
        }
    }
    for site in ["a", "b"] {
        assert!(seen.contains(&(site.to_owned(), SyncState::Pending as i32)), "{seen:?}");
        assert!(seen.contains(&(site.to_owned(), SyncState::Synced as i32)), "{seen:?}");
    }

    // Update propagates.
    let mut changed = spec("/ns/e2e/sa/app");
    changed.x509_svid_ttl = 240;
    changed.selectors.push(pb::Selector { r#type: "unix".into(), value: "gid:55".into() });
    let updated = lab
        .admin
        .entries()
        .update_entry(pb::UpdateEntryRequest { id: created.id.clone(), revision: 1, entry: Some(changed.clone()) })
        .await
        .expect("update")
        .into_inner();
    assert_eq!(updated.revision, 2);
    let synced = lab
        .wait_entry(&created.id, Duration::from_secs(15), |e| {
            all_sites(e, SyncState::Synced) && e.site_status.iter().all(|s| s.synced_revision == 2)
        })
        .await;
    for site in ["a", "b"] {
        let s = lab.spire_entry(site, &spire_id).await.expect("present");
        assert_spire_equal(site, &s, &synced);
    }

    // A stale revision is rejected, and nothing changes.
    let audit_before = audit_count(&lab).await;
    let mut stale = changed.clone();
    stale.x509_svid_ttl = 999;
    let err = lab
        .admin
        .entries()
        .update_entry(pb::UpdateEntryRequest { id: created.id.clone(), revision: 1, entry: Some(stale) })
        .await
        .expect_err("stale revision");
    assert_eq!(err.code(), tonic::Code::Aborted, "{err:?}");
    assert!(err.message().contains("revision 2, not 1"), "{}", err.message());
    let now =
        lab.admin.entries().get_entry(pb::GetEntryRequest { id: created.id.clone() }).await.expect("get").into_inner();
    assert_eq!((now.revision, now.x509_svid_ttl), (2, 240));
    let audit_after = audit_count(&lab).await;
    assert_eq!(audit_before, audit_after, "a rejected update writes no audit event");

    // Delete cascades: DELETING, then gone from both servers and from the store.
    let deleted = lab
        .admin
        .entries()
        .delete_entry(pb::DeleteEntryRequest { id: created.id.clone() })
        .await
        .expect("delete")
        .into_inner();
    assert!(all_sites(&deleted, SyncState::Deleting), "{deleted:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let got = lab.admin.entries().get_entry(pb::GetEntryRequest { id: created.id.clone() }).await;
        if matches!(&got, Err(s) if s.code() == tonic::Code::NotFound) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "entry not removed: {got:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for site in ["a", "b"] {
        assert!(lab.spire_entry(site, &spire_id).await.is_none(), "{spire_id} still on site {site}");
    }

    // The audit trail has the three mutations, with actor and before/after.
    let events = lab
        .admin
        .audit()
        .list_audit_events(pb::ListAuditEventsRequest { entry_id: created.id.clone(), ..Default::default() })
        .await
        .expect("audit")
        .into_inner()
        .events;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["entry.delete", "entry.update", "entry.create"]);
    assert!(events.iter().all(|e| e.actor.starts_with("apikey:bootstrap-admin")), "{events:?}");
    assert!(
        events[1].before_json.contains("\"x509_svid_ttl\":120")
            && events[1].after_json.contains("\"x509_svid_ttl\":240")
    );
    assert!(events[0].after_json.is_empty() && events[2].before_json.is_empty());

    // A refused call (an unknown API key) is logged too.
    let refused = lab.client(Some("ztk_00000000000000000000000000000000_nope"));
    let err = refused.entries().get_entry(pb::GetEntryRequest { id: created.id.clone() }).await.expect_err("refused");
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");

    // Every line of entry-manager's and the site agents' logs is a flat JSON object with its
    // component; the lines of a request carry its trace ID and actor, and the audit event of the
    // create has the trace ID of the request that made it.
    let lines = e2e::service_log(&lab.lab.log_path("entry-manager").expect("log"), "entry-manager");
    let requests: Vec<_> = lines.iter().filter(|l| l["message"] == "request").collect();
    let actors: Vec<&str> = requests.iter().map(|l| e2e::request_fields(l).1).collect();
    assert!(
        actors.contains(&"spiffe://ztlab.test/ns/ztlab-system/sa/site-agent-a"),
        "site agent a's polls, by its SPIFFE ID: {actors:?}"
    );
    let create = requests.iter().find(|l| l["method"] == "CreateEntry").expect("a request line for CreateEntry");
    let (trace, actor) = e2e::request_fields(create);
    assert!(actor.starts_with("apikey:bootstrap-admin"), "{create:?}");
    assert!(
        events.iter().any(|e| e.action == "entry.create" && e.trace_id == trace),
        "audit trace ID {trace} not found"
    );
    let refusal = lines.iter().find(|l| l["message"] == "request refused").expect("a line for the refused call");
    assert_eq!(e2e::request_fields(refusal).1, "anonymous", "{refusal:?}");
    assert_eq!(refusal["method"], "GetEntry", "{refusal:?}");
    for site in ["a", "b"] {
        let agent = e2e::service_log(&lab.lab.log_path(&format!("site-agent-{site}")).expect("log"), "site-agent");
        assert!(agent.iter().any(|l| l["message"] == "running" && l["site"] == site), "{agent:?}");
    }
}

/// `got` must be InvalidArgument with a message that starts with `field`; the message.
fn refused<T: std::fmt::Debug>(what: &str, field: &str, got: Result<tonic::Response<T>, tonic::Status>) -> String {
    let err = got.expect_err(&format!("{what} {field}"));
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{what} {field}: {err:?}");
    assert!(
        err.message().starts_with(&format!("{field}:")),
        "expected the {what} error to name {field}: {}",
        err.message()
    );
    let details = zt_entry_api::validate::FieldError::from_status(&err).expect("BadRequest details");
    assert_eq!(details.field, field, "the details carry the field: {err:?}");
    assert_eq!(err.message(), details.to_string(), "the text is the details' field and message");
    err.message().to_owned()
}

/// Every bad input of the table is refused by create, by batch create (naming the entry's
/// index) and by update, as InvalidArgument naming its field; nothing is written.
#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_invalid_argument_naming_the_field_and_writes_nothing() {
    init();
    let dir = state_dir();
    let lab = entry_lab(&dir, 30).await;
    // The one entry that exists, for the updates to be refused against.
    let base = create(&lab, spec("/ns/e2e/sa/base"), "create the base entry").await;
    type Mutate = Box<dyn Fn(&mut pb::EntrySpec)>;
    let cases: Vec<(&str, Mutate)> = vec![
        ("entry.spiffe_id", Box::new(|s| s.spiffe_id = "spiffe://ztlab.test/a/../b".into())),
        ("entry.spiffe_id", Box::new(|s| s.spiffe_id = "spiffe://ztlab.test/a?q=1".into())),
        ("entry.spiffe_id", Box::new(|s| s.spiffe_id = "http://ztlab.test/a".into())),
        ("entry.spiffe_id", Box::new(|s| s.spiffe_id = format!("spiffe://ztlab.test/{}", "x".repeat(2100)))),
        ("entry.parent_id", Box::new(|s| s.parent_id = "spiffe://other.test/node".into())),
        // An entry that is its own parent.
        ("entry.parent_id", Box::new(|s| s.parent_id = s.spiffe_id.clone())),
        ("entry.selectors", Box::new(|s| s.selectors.clear())),
        ("entry.selectors[0].value", Box::new(|s| s.selectors[0].value.clear())),
        // The same selector twice: the second is named, and the first.
        ("entry.selectors[2]", Box::new(|s| s.selectors.push(s.selectors[0].clone()))),
        ("entry.x509_svid_ttl", Box::new(|s| s.x509_svid_ttl = 3)),
        ("entry.dns_names[0]", Box::new(|s| s.dns_names = vec!["not a name".into()])),
        ("entry.site_ids[1]", Box::new(|s| s.site_ids = vec!["a".into(), "nowhere".into()])),
        // A trust domain that is not the sites'.
        (
            "entry.spiffe_id",
            Box::new(|s| {
                s.spiffe_id = "spiffe://other.test/x".into();
                s.parent_id = "spiffe://other.test/node".into();
            }),
        ),
    ];
    for (field, mutate) in cases {
        let mut s = spec("/ns/e2e/sa/bad");
        mutate(&mut s);
        let created = lab.admin.entries().create_entry(pb::CreateEntryRequest { entry: Some(s.clone()) }).await;
        let msg = refused("create", field, created);
        if field == "entry.selectors[2]" {
            assert_eq!(msg, "entry.selectors[2]: duplicate of selectors[0]");
        }
        // In a batch, after a good entry: the entry's index names it, and neither is written.
        let batch = lab
            .admin
            .entries()
            .batch_create_entries(pb::BatchCreateEntriesRequest { entries: vec![spec("/ns/e2e/sa/ok"), s.clone()] })
            .await;
        refused("batch create", &field.replacen("entry", "entries[1]", 1), batch);
        let updated = lab
            .admin
            .entries()
            .update_entry(pb::UpdateEntryRequest { id: base.id.clone(), revision: 1, entry: Some(s) })
            .await;
        refused("update", field, updated);
    }
    // A batch with one bad entry writes none, and names the entry.
    let mut bad = spec("/ns/e2e/sa/bad2");
    bad.selectors.clear();
    let err = lab
        .admin
        .entries()
        .batch_create_entries(pb::BatchCreateEntriesRequest { entries: vec![spec("/ns/e2e/sa/ok"), bad] })
        .await
        .expect_err("batch");
    assert!(err.message().starts_with("entries[1].selectors:"), "{}", err.message());
    let listed = lab.admin.entries().list_entries(pb::ListEntriesRequest::default()).await.expect("list").into_inner();
    let listed: Vec<(&str, i64)> = listed.entries.iter().map(|e| (e.spiffe_id.as_str(), e.revision)).collect();
    assert_eq!(listed, [("spiffe://ztlab.test/ns/e2e/sa/base", 1)], "nothing may be written");
    let audit =
        lab.admin.audit().list_audit_events(pb::ListAuditEventsRequest::default()).await.expect("audit").into_inner();
    let writes: Vec<(&str, &str)> = audit
        .events
        .iter()
        .filter(|e| e.action.starts_with("entry."))
        .map(|e| (e.action.as_str(), e.resource_id.as_str()))
        .collect();
    assert_eq!(writes, [("entry.create", base.id.as_str())], "{:?}", audit.events);
}

#[tokio::test(flavor = "multi_thread")]
async fn unmanaged_entries_are_left_alone_and_reported() {
    init();
    let dir = state_dir();
    let lab = entry_lab(&dir, 2).await;
    let paths = lab.lab.site_paths("b").expect("site");
    zt_runtime::spire::server_cli(
        &paths,
        &[
            "entry",
            "create",
            "-entryID",
            "hand-made",
            "-spiffeID",
            "spiffe://ztlab.test/hand",
            "-parentID",
            "spiffe://ztlab.test/ztlab/nodes/local",
            "-selector",
            "unix:uid:4242",
        ],
    )
    .await
    .expect("create by hand");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let health = loop {
        let h = site_health(&lab, "b").await;
        if h.unmanaged_entry_ids.contains(&"hand-made".to_owned()) {
            break h;
        }
        assert!(tokio::time::Instant::now() < deadline, "not reported: {h:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(health.agent_connected);
    // The bootstrap entries are unmanaged too (written with the SPIRE CLI).
    assert!(health.unmanaged_entry_ids.iter().any(|i| i == "bootstrap.site-agent-b"), "{health:?}");
    // Still there, unchanged, after full resyncs.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let e = lab.spire_entry("b", "hand-made").await.expect("left alone");
    assert_eq!(e["selectors"][0]["value"], "uid:4242");
}

/// Site `site`'s health.
async fn site_health(lab: &e2e::EntryLab, site: &str) -> pb::SiteHealth {
    lab.admin.sites().get_site_health(pb::GetSiteHealthRequest { id: site.into() }).await.expect("health").into_inner()
}

/// Polls site `site`'s health every 200 ms until `check` holds, or panics with the last one after
/// `timeout`.
async fn wait_health(
    lab: &e2e::EntryLab,
    site: &str,
    timeout: Duration,
    what: &str,
    check: impl Fn(&pb::SiteHealth) -> bool,
) -> pb::SiteHealth {
    let every = Duration::from_millis(200);
    e2e::wait_or_panic((timeout, every), &format!("site {site}: not {what}"), || site_health(lab, site), check).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_site_agent_shows_disconnected_within_15_s_and_connected_after_restart() {
    init();
    let dir = state_dir();
    let mut lab = entry_lab(&dir, 30).await;
    // Both agents are up and hold their long-polls (the first round is done: the bootstrap
    // entries are reported as unmanaged).
    for site in ["a", "b"] {
        wait_health(&lab, site, Duration::from_secs(15), "connected after its first round", |h| {
            h.agent_connected && h.disconnected_since.is_none() && h.unmanaged_entries > 0
        })
        .await;
    }

    // SIGKILL site b's agent by its recorded pid: its long-poll breaks off.
    let pid = lab.lab.process("site-agent-b").expect("component").expect("started").pid;
    let killed_at = time::OffsetDateTime::now_utc().unix_timestamp();
    lab.lab.kill_component("site-agent-b").await.expect("kill site-agent-b");
    let gone = wait_health(&lab, "b", Duration::from_secs(15), "disconnected", |h| !h.agent_connected).await;
    let since = gone.disconnected_since.expect("disconnected_since is set").seconds;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(
        (killed_at - 1..=now).contains(&since),
        "site-agent-b (pid {pid}) killed at {killed_at}: disconnected since {since}, now {now}"
    );
    let a = site_health(&lab, "a").await;
    assert!(a.agent_connected && a.disconnected_since.is_none(), "site a's agent is untouched: {a:?}");

    // Started again, it connects again.
    lab.lab.restart_stopped().await.expect("restart site-agent-b");
    wait_health(&lab, "b", Duration::from_secs(30), "connected again", |h| {
        h.agent_connected && h.disconnected_since.is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_spire_server_fails_its_site_then_recovers_without_duplicates() {
    init();
    let dir = state_dir();
    let mut lab = entry_lab(&dir, 30).await;
    lab.lab.kill_component("spire-server-b").await.expect("kill");
    let created = create(&lab, spec("/ns/e2e/sa/resilient"), "create").await;
    let failed = lab
        .wait_entry(&created.id, Duration::from_secs(15), |e| {
            e.site_status.iter().any(|s| s.site_id == "a" && s.state == SyncState::Synced as i32)
                && e.site_status.iter().any(|s| s.site_id == "b" && s.state == SyncState::Failed as i32)
        })
        .await;
    let b = failed.site_status.iter().find(|s| s.site_id == "b").expect("b");
    assert!(b.last_error.contains("SPIRE server unavailable"), "{b:?}");
    assert!(b.attempts >= 1 && b.next_retry_at.is_some(), "a retry is scheduled: {b:?}");
    let health = site_health(&lab, "b").await;
    assert!(health.failed >= 1, "{health:?}");

    lab.lab.restart_stopped().await.expect("restart spire-server-b");
    let synced = lab.wait_entry(&created.id, Duration::from_secs(30), |e| all_sites(e, SyncState::Synced)).await;
    for site in ["a", "b"] {
        let same: Vec<_> = lab
            .spire_entries(site)
            .await
            .into_iter()
            .filter(|e| e["spiffe_id"]["path"] == "/ns/e2e/sa/resilient")
            .collect();
        assert_eq!(same.len(), 1, "exactly one entry on site {site}: {same:?}");
        assert_spire_equal(site, &same[0], &synced);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn people_authenticate_with_oidc_tokens_and_get_their_groups_role() {
    init();
    let dir = state_dir();
    let lab = e2e::entry_lab_with(&dir, 30, true).await;
    let token = |user: &'static str| {
        let lab = &lab;
        async move { lab.lab.user_token(user).await.expect("token") }
    };
    let operator = lab.client(Some(&token("operator").await));
    let me = operator.identity().who_am_i(pb::WhoAmIRequest {}).await.expect("whoami").into_inner();
    assert_eq!((me.actor.as_str(), me.role), ("oidc:operator", pb::Role::Operator as i32));
    let e = operator
        .entries()
        .create_entry(pb::CreateEntryRequest { entry: Some(spec("/ns/prod/sa/api")) })
        .await
        .expect("operator creates")
        .into_inner();
    assert_eq!(e.created_by, "oidc:operator");

    // A developer writes only under its path prefix (/ns/dev).
    let developer = lab.client(Some(&token("developer").await));
    let err = developer
        .entries()
        .create_entry(pb::CreateEntryRequest { entry: Some(spec("/ns/prod/sa/x")) })
        .await
        .expect_err("outside prefix");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    let details = zt_entry_api::validate::FieldError::from_status(&err).map(|f| f.field);
    assert_eq!(details.as_deref(), Some("entry.spiffe_id"), "the details name the field: {err:?}");
    developer
        .entries()
        .create_entry(pb::CreateEntryRequest { entry: Some(spec("/ns/dev/sa/x")) })
        .await
        .expect("inside prefix");

    // A viewer reads but does not write.
    let viewer = lab.client(Some(&token("viewer").await));
    viewer.entries().list_entries(pb::ListEntriesRequest::default()).await.expect("viewer reads");
    let err =
        viewer.entries().delete_entry(pb::DeleteEntryRequest { id: e.id.clone() }).await.expect_err("viewer deletes");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);

    // A token whose signature does not verify is refused.
    let t = token("admin").await;
    let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
    let sig = parts[2].clone();
    parts[2] = format!("{}{}", if sig.starts_with('A') { "B" } else { "A" }, &sig[1..]);
    let forged = lab.client(Some(&parts.join(".")));
    let err = forged.identity().who_am_i(pb::WhoAmIRequest {}).await.expect_err("forged");
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("invalid OIDC token"), "{}", err.message());
    // So is a token for a user that entry-manager cannot map to a role, and garbage.
    let err = lab.client(Some("not-a-jwt")).identity().who_am_i(pb::WhoAmIRequest {}).await.expect_err("garbage");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
}

/// How many audit events there are.
async fn audit_count(lab: &e2e::EntryLab) -> usize {
    let events = lab.admin.audit().list_audit_events(pb::ListAuditEventsRequest::default()).await.expect("audit");
    events.into_inner().events.len()
}

/// CreateEntry of `spec` as the admin; `what` names the call if it fails.
async fn create(lab: &e2e::EntryLab, spec: pb::EntrySpec, what: &str) -> pb::Entry {
    let answer = lab.admin.entries().create_entry(pb::CreateEntryRequest { entry: Some(spec) }).await;
    answer.unwrap_or_else(|e| panic!("{what}: {e:?}")).into_inner()
}
