//! entry-manager under failure, and its operational surface: SIGKILL with a batch's transaction
//! open, right after a batch while the site agents sync, and with a site agent's report being
//! written (the store stays atomic, every accepted entry reaches every SPIRE server exactly
//! once), and `/metrics`, gRPC health and reflection on the real process. "In flight" is taken
//! from PostgreSQL (`pg_stat_activity`), not guessed with a delay.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use e2e::{EntryLab, all_sites, entry_lab, state_dir};
use tonic::Code;
use zt_entry_api::pb::{self, SyncState};

fn init() {
    zt_tls::install_crypto_provider();
}

/// Unique per `n`; the uid selector is far from any real uid (the tests may run as root, and a
/// `unix:uid:0` entry would hand every lab process another SVID).
fn crash_spec(batch: &str, n: u32) -> pb::EntrySpec {
    pb::EntrySpec {
        spiffe_id: format!("spiffe://ztlab.test/ns/crash/{batch}/w{n}"),
        parent_id: "spiffe://ztlab.test/ztlab/nodes/local".into(),
        selectors: vec![pb::Selector { r#type: "unix".into(), value: format!("uid:{}", 300_000 + n) }],
        x509_svid_ttl: 300,
        site_ids: vec!["a".into(), "b".into()],
        ..Default::default()
    }
}

/// Retries `f` while entry-manager is coming back (UNAVAILABLE / UNKNOWN from a broken
/// connection), up to `timeout`.
async fn retry<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(s) if matches!(s.code(), Code::Unavailable | Code::Unknown) => {
                assert!(tokio::time::Instant::now() < deadline, "{what}: still failing after {timeout:?}: {s:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(s) => panic!("{what}: {s:?}"),
        }
    }
}

/// Every entry in the store (ListEntries, pages of 1000), optionally under a SPIFFE ID prefix.
async fn list_all(lab: &EntryLab, prefix: &str) -> Vec<pb::Entry> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let req = pb::ListEntriesRequest {
            filter: Some(pb::ListEntriesFilter { spiffe_id_prefix: prefix.to_owned(), ..Default::default() }),
            page_size: 1000,
            page_token: token.clone(),
        };
        let page = retry("ListEntries", Duration::from_secs(30), || {
            let req = req.clone();
            async move { lab.admin.entries().list_entries(req).await.map(tonic::Response::into_inner) }
        })
        .await;
        out.extend(page.entries);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

/// Every audit event (pages of 1000).
async fn audit_all(lab: &EntryLab) -> Vec<pb::AuditEvent> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = lab
            .admin
            .audit()
            .list_audit_events(pb::ListAuditEventsRequest {
                page_size: 1000,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("audit")
            .into_inner();
        out.extend(page.events);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

/// Polls PostgreSQL until a backend of the mgmt database has a write transaction open whose
/// current (or last) statement starts with one of `prefixes`. False when `give_up` holds first,
/// or after `timeout`.
async fn wait_for_open_tx(lab: &EntryLab, prefixes: &[&str], timeout: Duration, give_up: impl Fn() -> bool) -> bool {
    let cluster = lab.lab.mgmt_cluster();
    let like: Vec<String> = prefixes.iter().map(|p| format!("query LIKE '{}%'", p.replace('\'', "''"))).collect();
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND backend_xid IS NOT NULL AND ({})",
        zt_runtime::lab::MGMT_DATABASE,
        like.join(" OR ")
    );
    let deadline = tokio::time::Instant::now() + timeout;
    while !give_up() && tokio::time::Instant::now() < deadline {
        let n = cluster.psql(zt_runtime::lab::MGMT_DATABASE, &sql).await.expect("psql");
        if n.trim().parse::<u32>().unwrap_or(0) > 0 {
            return true;
        }
    }
    false
}

fn spire_path(v: &serde_json::Value) -> String {
    format!(
        "spiffe://{}{}",
        v["spiffe_id"]["trust_domain"].as_str().unwrap_or(""),
        v["spiffe_id"]["path"].as_str().unwrap_or("")
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_entry_manager_mid_batch_syncs_every_accepted_entry_exactly_once() {
    init();
    let dir = state_dir();
    let mut lab = entry_lab(&dir, 5).await;
    const FIRST: u32 = 1500;
    const SECOND: u32 = 500;

    // 1. A batch of 1500, and SIGKILL while its transaction is open (it has written rows and
    // not committed), as PostgreSQL shows it.
    let batch1: Vec<pb::EntrySpec> = (0..FIRST).map(|n| crash_spec("b1", n)).collect();
    let admin = lab.admin.clone();
    let started = Instant::now();
    let task = tokio::spawn(async move {
        admin.entries().batch_create_entries(pb::BatchCreateEntriesRequest { entries: batch1 }).await
    });
    let in_tx = wait_for_open_tx(
        &lab,
        &["INSERT INTO entr", "INSERT INTO audit_events", "SELECT id, trust_domain FROM sites"],
        Duration::from_secs(20),
        || task.is_finished(),
    )
    .await;
    let killed_at = started.elapsed();
    lab.lab.kill_component("entry-manager").await.expect("kill -9 entry-manager");
    let first = task.await.expect("task");
    println!(
        "batch 1: killed after {killed_at:?}, {}; the call {}",
        if in_tx { "with the batch's transaction open" } else { "NOT inside the transaction" },
        match &first {
            Ok(r) => format!("was accepted ({} entries)", r.get_ref().entries.len()),
            Err(s) => format!("failed: {:?} {}", s.code(), s.message()),
        },
    );
    lab.lab.restart_stopped().await.expect("restart entry-manager");

    // All or nothing.
    let stored1 = list_all(&lab, "spiffe://ztlab.test/ns/crash/b1/").await;
    println!("batch 1: {} of {FIRST} entries in the store after the restart", stored1.len());
    match &first {
        Ok(r) => {
            assert_eq!(r.get_ref().entries.len(), FIRST as usize);
            assert_eq!(stored1.len(), FIRST as usize, "an accepted batch is stored whole");
        }
        Err(_) => assert!(
            stored1.is_empty() || stored1.len() == FIRST as usize,
            "a batch is all or nothing, found {} of {FIRST}",
            stored1.len()
        ),
    }

    // 2. A batch of 500 that succeeds; SIGKILL as soon as it returns, while the site agents sync.
    let batch2: Vec<pb::EntrySpec> = (FIRST..FIRST + SECOND).map(|n| crash_spec("b2", n)).collect();
    let admin = &lab.admin;
    let created = create_batch(admin, &batch2).await;
    lab.lab.kill_component("entry-manager").await.expect("kill -9 entry-manager again");
    assert_eq!(created.entries.len(), SECOND as usize);
    lab.lab.restart_stopped().await.expect("restart entry-manager again");

    // 3. Another 500, and SIGKILL while a site agent's report (ReportSyncResult) is being
    // written.
    let batch3: Vec<pb::EntrySpec> = (FIRST + SECOND..FIRST + 2 * SECOND).map(|n| crash_spec("b3", n)).collect();
    let created3 = create_batch(admin, &batch3).await;
    assert_eq!(created3.entries.len(), SECOND as usize);
    let in_report =
        wait_for_open_tx(&lab, &["SELECT e.revision", "UPDATE entry_sites SET state"], Duration::from_secs(20), || {
            false
        })
        .await;
    println!("batch 3: killed {} a report transaction", if in_report { "inside" } else { "NOT inside" });
    lab.lab.kill_component("entry-manager").await.expect("kill -9 entry-manager a third time");
    lab.lab.restart_stopped().await.expect("restart entry-manager a third time");

    // 4. Everything the store holds ends SYNCED at both sites, at revision 1.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let entries = loop {
        let all = list_all(&lab, "").await;
        let behind = all.iter().filter(|e| !all_sites(e, SyncState::Synced)).count();
        if behind == 0 {
            break all;
        }
        if tokio::time::Instant::now() >= deadline {
            let sample: Vec<_> = all.iter().filter(|e| !all_sites(e, SyncState::Synced)).take(3).collect();
            panic!("{behind} of {} entries not SYNCED at both sites after 120 s; for example {sample:?}", all.len());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let want = stored1.len() + 2 * SECOND as usize;
    assert_eq!(entries.len(), want, "the store holds exactly the accepted entries");
    let stored_ids: BTreeSet<String> = entries.iter().map(|e| e.id.clone()).collect();
    assert!(
        created.entries.iter().chain(&created3.entries).all(|e| stored_ids.contains(&e.id)),
        "every entry of batches 2 and 3 is stored"
    );
    for e in &entries {
        assert_eq!(e.revision, 1, "{e:?}");
        assert!(e.site_status.iter().all(|s| s.synced_revision == 1), "{e:?}");
        let sites: Vec<&str> = e.site_status.iter().map(|s| s.site_id.as_str()).collect();
        assert_eq!(sites, ["a", "b"], "{e:?}");
    }

    // Each create has exactly one audit event, and no audit event names an entry that is not
    // stored (a rolled-back batch leaves none).
    let creates: Vec<String> =
        audit_all(&lab).await.into_iter().filter(|e| e.action == "entry.create").map(|e| e.resource_id).collect();
    assert_eq!(creates.len(), entries.len(), "one entry.create event per stored entry");
    assert_eq!(creates.iter().cloned().collect::<BTreeSet<_>>(), stored_ids);

    // 5. Each SPIRE server holds exactly one managed entry per central entry, and no SPIFFE ID
    // twice.
    let expected: BTreeSet<String> = entries.iter().map(|e| zt_entry_api::spire_entry_id(&e.id)).collect();
    let by_id: BTreeMap<String, &pb::Entry> =
        entries.iter().map(|e| (zt_entry_api::spire_entry_id(&e.id), e)).collect();
    for site in ["a", "b"] {
        let all = lab.spire_entries(site).await;
        let managed: Vec<&serde_json::Value> =
            all.iter().filter(|e| e["id"].as_str().is_some_and(|i| i.starts_with("ztlab."))).collect();
        let ids: Vec<String> = managed.iter().map(|e| e["id"].as_str().unwrap_or_default().to_owned()).collect();
        let unique: BTreeSet<String> = ids.iter().cloned().collect();
        assert_eq!(ids.len(), unique.len(), "site {site}: a managed entry ID appears twice");
        assert_eq!(managed.len(), entries.len(), "site {site}: one managed entry per central entry");
        assert_eq!(unique, expected, "site {site}: the managed entries are exactly the central ones");
        let mut seen = BTreeSet::new();
        for e in all.iter().filter(|e| e["spiffe_id"]["path"].as_str().is_some_and(|p| p.starts_with("/ns/crash/"))) {
            let spiffe_id = spire_path(e);
            assert!(seen.insert(spiffe_id.clone()), "site {site}: {spiffe_id} twice");
            let central = by_id.get(e["id"].as_str().unwrap_or_default()).expect("managed");
            assert_eq!(spiffe_id, central.spiffe_id, "site {site}: {e}");
        }
        assert_eq!(seen.len(), entries.len(), "site {site}");
    }
}

/// The value of the first sample of `name` whose labels include all of `labels`.
fn metric(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (n, rest) = match series.split_once('{') {
            Some((n, rest)) => (n, rest),
            None => (series, ""),
        };
        (n == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))).then(|| value.parse().ok())?
    })
}

/// `name` is exported as a histogram with the shared latency buckets: a `_bucket` line for every
/// bound of `zt_service::ops::LATENCY_BUCKETS` (sub-millisecond to seconds) and `+Inf`,
/// cumulative, with `+Inf` equal to `_count` and at least one observation.
fn assert_histogram(body: &str, name: &str, labels: &[(&str, &str)]) {
    assert!(body.contains(&format!("# TYPE {name} histogram")), "{name} is not a histogram:\n{body}");
    let bucket = format!("{name}_bucket");
    let mut last = 0.0;
    let bounds: Vec<String> = zt_service::ops::LATENCY_BUCKETS.iter().map(f64::to_string).collect();
    for le in bounds.iter().map(String::as_str).chain(["+Inf"]) {
        let mut with_le = labels.to_vec();
        with_le.push(("le", le));
        let n = metric(body, &bucket, &with_le).unwrap_or_else(|| panic!("no {bucket} le={le} {labels:?}:\n{body}"));
        assert!(n >= last, "{bucket} is not cumulative at le={le}:\n{body}");
        last = n;
    }
    let count = metric(body, &format!("{name}_count"), labels);
    assert_eq!(count, Some(last), "{name}_count {labels:?} against the +Inf bucket:\n{body}");
    assert!(last >= 1.0, "{name} {labels:?} has no observations:\n{body}");
}

/// Polls `/metrics` until `check` holds (the gauges refresh every 5 s), or panics with the body.
async fn wait_metrics<F: Fn(&str) -> bool>(port: u16, what: &str, check: F) -> String {
    let what = format!("/metrics never showed {what}");
    let every = (Duration::from_secs(30), Duration::from_millis(500));
    let fetch = || zt_runtime::health::http_get(port, "/metrics");
    let got = e2e::wait_or_panic(every, &what, fetch, |got| matches!(got, Some((200, body)) if check(body))).await;
    got.map(|(_, body)| body).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_and_grpc_health_and_reflection() {
    init();
    let dir = state_dir();
    let mut lab = entry_lab(&dir, 30).await;
    let ops_port =
        lab.lab.spec().workloads.iter().find(|w| w.name == "entry-manager").expect("entry-manager workload").ops_port;

    // gRPC health: the server as a whole and each service, SERVING.
    let channel = zt_tls::client::grpc_channel_with_roots(&lab.bundle, "entry-manager.ztlab.test", &lab.operator_addr)
        .expect("channel");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in ["", "ztlab.entry.v1.WorkloadEntryService", "ztlab.entry.v1.SyncService"] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest { service: service.into() })
            .await
            .unwrap_or_else(|e| panic!("health check {service:?}: {e:?}"))
            .into_inner();
        assert_eq!(r.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32, "{service:?}");
    }

    // Reflection lists the API's services.
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers =
        reflection.server_reflection_info(tokio_stream::iter(vec![req])).await.expect("reflection").into_inner();
    let answer = answers.message().await.expect("reflection answer").expect("one answer");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("not a ListServices answer: {answer:?}");
    };
    let names: BTreeSet<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in zt_entry_api::SERVICES.into_iter().chain(["grpc.health.v1.Health"]) {
        assert!(names.contains(want), "reflection does not list {want}: {names:?}");
    }

    // A create that syncs to both sites.
    let mut spec = crash_spec("metrics", 1);
    spec.spiffe_id = "spiffe://ztlab.test/ns/metrics/sa/one".into();
    let one = lab
        .admin
        .entries()
        .create_entry(pb::CreateEntryRequest { entry: Some(spec.clone()) })
        .await
        .expect("create")
        .into_inner();
    lab.wait_entry(&one.id, Duration::from_secs(15), |e| all_sites(e, SyncState::Synced)).await;
    let body = wait_metrics(ops_port, "the request, entry and sync metrics", |b| {
        metric(b, "entries_total", &[]) == Some(1.0)
            && metric(b, "sync_status_by_site", &[("site", "a"), ("state", "SYNCED")]) == Some(1.0)
            && metric(b, "sync_status_by_site", &[("site", "b"), ("state", "SYNCED")]) == Some(1.0)
    })
    .await;
    assert!(
        metric(
            &body,
            "grpc_requests_total",
            &[("method", "/ztlab.entry.v1.WorkloadEntryService/CreateEntry"), ("code", "Ok")]
        )
        .is_some_and(|v| v >= 1.0),
        "grpc_requests_total for CreateEntry:\n{body}"
    );
    // Latencies are histograms (bucket lines from 100 µs to 30 s), not summaries.
    let create = [("method", "/ztlab.entry.v1.WorkloadEntryService/CreateEntry")];
    assert_histogram(&body, "grpc_request_duration_seconds", &create);
    assert_histogram(&body, "sync_phase_duration_seconds", &[("site", "a"), ("phase", "apply")]);
    assert_histogram(&body, "sync_phase_duration_seconds", &[("site", "b"), ("phase", "list")]);
    let agent_ops =
        lab.lab.spec().workloads.iter().find(|w| w.name == "site-agent-b").expect("site-agent-b workload").ops_port;
    let agent_body = wait_metrics(agent_ops, "a site agent's round", |b| {
        metric(b, "site_agent_round_seconds_count", &[]).is_some_and(|v| v >= 1.0)
    })
    .await;
    assert_histogram(&agent_body, "site_agent_round_seconds", &[]);
    for site in ["a", "b"] {
        assert!(metric(&body, "sync_lag_seconds", &[("site", site)]).is_some(), "sync_lag_seconds {site}:\n{body}");
        assert!(
            body.lines().any(|l| l.starts_with("sync_phase_duration_seconds")
                && l.contains(&format!("site=\"{site}\""))
                && l.contains("phase=\"apply\"")),
            "sync_phase_duration_seconds {site}:\n{body}"
        );
    }

    // A failure: site b's SPIRE server is down.
    lab.lab.kill_component("spire-server-b").await.expect("kill spire-server-b");
    spec.spiffe_id = "spiffe://ztlab.test/ns/metrics/sa/two".into();
    let two = lab
        .admin
        .entries()
        .create_entry(pb::CreateEntryRequest { entry: Some(spec) })
        .await
        .expect("create")
        .into_inner();
    lab.wait_entry(&two.id, Duration::from_secs(15), |e| {
        e.site_status.iter().any(|s| s.site_id == "b" && s.state == SyncState::Failed as i32)
    })
    .await;
    let body = wait_metrics(ops_port, "the failure", |b| {
        metric(b, "sync_failures_total", &[("site", "b")]).is_some_and(|v| v >= 1.0)
            && metric(b, "entries_total", &[]) == Some(2.0)
            && metric(b, "sync_status_by_site", &[("site", "b"), ("state", "FAILED")]) == Some(1.0)
    })
    .await;
    assert!(metric(&body, "sync_failures_total", &[("site", "a")]).is_none_or(|v| v == 0.0), "{body}");
}

/// BatchCreateEntries of `entries`, retried for up to 30 s while entry-manager restarts.
async fn create_batch(
    admin: &zt_entry_api::client::Client,
    entries: &[pb::EntrySpec],
) -> pb::BatchCreateEntriesResponse {
    retry("BatchCreateEntries", Duration::from_secs(30), || {
        let entries = entries.to_vec();
        async move {
            admin
                .entries()
                .batch_create_entries(pb::BatchCreateEntriesRequest { entries })
                .await
                .map(tonic::Response::into_inner)
        }
    })
    .await
}
