//! Authorization end to end: every role × every RPC of the entry-management API, against the real
//! entry-manager (real PostgreSQL, real SPIRE for the site agent's SVID). The expected matrix is
//! written out here from the rules, not derived from entry-manager's own table.
//!
//! Every request is harmless: it names things that do not exist, a site that does not exist
//! (`zz-none`), a stale revision, or a batch that fails as a whole, so that an allowed caller
//! gets NotFound / InvalidArgument / Aborted / AlreadyExists and nothing is written.

use std::sync::Arc;
use std::time::Duration;

use e2e::{entry_lab, state_dir};
use tonic::{Code, Status};
use zt_entry_api::client::Client;
use zt_entry_api::pb;

fn init() {
    zt_tls::install_crypto_provider();
}

/// What a role may do with one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Anything but PERMISSION_DENIED / UNAUTHENTICATED (and not an internal failure).
    Allow,
    /// PERMISSION_DENIED.
    Deny,
    /// Not called for this role (the call would really change something).
    Skip,
}

use Expect::{Allow as A, Deny as D, Skip as S};

/// The columns of the matrix.
const ROLES: [&str; 5] = ["Admin", "Operator", "Developer", "Viewer", "SiteAgent"];

/// Which entry a call names.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// A random UUID.
    Missing,
    /// The fixture under /ns/prod (created by the Admin).
    Prod,
    /// The fixture under /ns/dev (created by the Admin).
    Dev,
}

/// One call, with its harmless arguments. `&str` arguments are SPIFFE ID paths or site IDs.
#[derive(Debug, Clone, Copy)]
enum Call {
    /// Valid, but for site `zz-none`: InvalidArgument from the store once authorized.
    CreateEntry(&'static str),
    GetEntry(Target),
    /// To the given path with a stale revision: Aborted (NotFound for `Missing`).
    UpdateEntry(Target, &'static str),
    DeleteEntry(Target),
    ListEntries,
    /// `[/ns/dev/sa/rbac-0, path]`, for site `zz-none`.
    BatchCreateEntries(&'static str),
    /// `[target, missing]`: NotFound on the second, so the whole batch rolls back.
    BatchDeleteEntries(Target),
    /// Site `a` again: AlreadyExists.
    CreateSite,
    GetSite,
    UpdateSite,
    DeleteSite,
    ListSites,
    GetSiteHealth,
    TriggerSync,
    GetSyncStatus,
    /// Only the opening of the stream.
    StreamSyncUpdates,
    /// `known_version` 0, no wait: returns at once.
    PollEntries(&'static str),
    /// One result with an entry ID that is not a UUID: InvalidArgument, nothing written.
    ReportSyncResult(&'static str),
    ListAuditEvents,
    /// An invalid name: InvalidArgument.
    CreateApiKey,
    ListApiKeys,
    RevokeApiKey,
    WhoAmI,
}

use Call::*;
use Target::{Dev, Missing, Prod};

/// The role × call matrix, from the rules:
/// - Admin: everything except PollEntries / ReportSyncResult.
/// - Operator: entries (read + write), sites read-only, TriggerSync, sync status / stream,
///   audit, WhoAmI.
/// - Developer: the Viewer's reads, plus entry writes only under its prefix (`/ns/dev`), also
///   for the entry being changed.
/// - Viewer: read-only (entries, sites, site health, sync status, stream, audit, WhoAmI).
/// - SiteAgent: PollEntries / ReportSyncResult for its own site (a) only, and WhoAmI.
#[rustfmt::skip]
static MATRIX: &[(Call, [Expect; 5])] = &[
    //                                               Admin Oper Dev Viewer Agent
    (CreateEntry("/ns/dev/sa/rbac"),                 [A,   A,   A,  D,     D]),
    (CreateEntry("/ns/dev"),                         [A,   A,   A,  D,     D]),
    (CreateEntry("/ns/prod/sa/rbac"),                [A,   A,   D,  D,     D]),
    (CreateEntry("/ns/devil/sa/rbac"),               [A,   A,   D,  D,     D]),
    (GetEntry(Missing),                              [A,   A,   A,  A,     D]),
    (GetEntry(Prod),                                 [A,   A,   A,  A,     D]),
    (UpdateEntry(Missing, "/ns/dev/sa/rbac"),        [A,   A,   A,  D,     D]),
    (UpdateEntry(Dev, "/ns/dev/sa/rbac"),            [A,   A,   A,  D,     D]),
    (UpdateEntry(Dev, "/ns/prod/sa/rbac"),           [A,   A,   D,  D,     D]),
    (UpdateEntry(Prod, "/ns/dev/sa/rbac"),           [A,   A,   D,  D,     D]),
    (DeleteEntry(Missing),                           [A,   A,   A,  D,     D]),
    (DeleteEntry(Prod),                              [S,   S,   D,  D,     D]),
    (ListEntries,                                    [A,   A,   A,  A,     D]),
    (BatchCreateEntries("/ns/dev/sa/rbac-1"),        [A,   A,   A,  D,     D]),
    (BatchCreateEntries("/ns/prod/sa/rbac-1"),       [A,   A,   D,  D,     D]),
    (BatchDeleteEntries(Missing),                    [A,   A,   A,  D,     D]),
    (BatchDeleteEntries(Dev),                        [A,   A,   A,  D,     D]),
    (BatchDeleteEntries(Prod),                       [A,   A,   D,  D,     D]),
    (CreateSite,                                     [A,   D,   D,  D,     D]),
    (GetSite,                                        [A,   A,   A,  A,     D]),
    (UpdateSite,                                     [A,   D,   D,  D,     D]),
    (DeleteSite,                                     [A,   D,   D,  D,     D]),
    (ListSites,                                      [A,   A,   A,  A,     D]),
    (GetSiteHealth,                                  [A,   A,   A,  A,     D]),
    (TriggerSync,                                    [A,   A,   D,  D,     D]),
    (GetSyncStatus,                                  [A,   A,   A,  A,     D]),
    (StreamSyncUpdates,                              [A,   A,   A,  A,     D]),
    (PollEntries("a"),                               [D,   D,   D,  D,     A]),
    (PollEntries("b"),                               [D,   D,   D,  D,     D]),
    (ReportSyncResult("a"),                          [D,   D,   D,  D,     A]),
    (ReportSyncResult("b"),                          [D,   D,   D,  D,     D]),
    (ListAuditEvents,                                [A,   A,   A,  A,     D]),
    (CreateApiKey,                                   [A,   D,   D,  D,     D]),
    (ListApiKeys,                                    [A,   D,   D,  D,     D]),
    (RevokeApiKey,                                   [A,   D,   D,  D,     D]),
    (WhoAmI,                                         [A,   A,   A,  A,     A]),
];

/// The operation name of a call (as in `auth::Op` and the proto).
fn op_name(c: Call) -> &'static str {
    match c {
        CreateEntry(_) => "CreateEntry",
        GetEntry(_) => "GetEntry",
        UpdateEntry(..) => "UpdateEntry",
        DeleteEntry(_) => "DeleteEntry",
        ListEntries => "ListEntries",
        BatchCreateEntries(_) => "BatchCreateEntries",
        BatchDeleteEntries(_) => "BatchDeleteEntries",
        CreateSite => "CreateSite",
        GetSite => "GetSite",
        UpdateSite => "UpdateSite",
        DeleteSite => "DeleteSite",
        ListSites => "ListSites",
        GetSiteHealth => "GetSiteHealth",
        TriggerSync => "TriggerSync",
        GetSyncStatus => "GetSyncStatus",
        StreamSyncUpdates => "StreamSyncUpdates",
        PollEntries(_) => "PollEntries",
        ReportSyncResult(_) => "ReportSyncResult",
        ListAuditEvents => "ListAuditEvents",
        CreateApiKey => "CreateApiKey",
        ListApiKeys => "ListApiKeys",
        RevokeApiKey => "RevokeApiKey",
        WhoAmI => "WhoAmI",
    }
}

/// Every RPC of the six services.
const ALL_OPS: [&str; 23] = [
    "CreateEntry",
    "GetEntry",
    "UpdateEntry",
    "DeleteEntry",
    "ListEntries",
    "BatchCreateEntries",
    "BatchDeleteEntries",
    "CreateSite",
    "GetSite",
    "UpdateSite",
    "DeleteSite",
    "ListSites",
    "GetSiteHealth",
    "TriggerSync",
    "GetSyncStatus",
    "StreamSyncUpdates",
    "PollEntries",
    "ReportSyncResult",
    "ListAuditEvents",
    "CreateApiKey",
    "ListApiKeys",
    "RevokeApiKey",
    "WhoAmI",
];

fn spec(path: &str, site: &str) -> pb::EntrySpec {
    pb::EntrySpec {
        spiffe_id: format!("spiffe://ztlab.test{path}"),
        parent_id: "spiffe://ztlab.test/ztlab/nodes/local".into(),
        selectors: vec![
            pb::Selector { r#type: "unix".into(), value: "uid:204242".into() },
            pb::Selector { r#type: "unix".into(), value: format!("path:/opt{path}") },
        ],
        x509_svid_ttl: 120,
        site_ids: vec![site.into()],
        ..Default::default()
    }
}

struct Fixtures {
    prod: String,
    dev: String,
}

fn missing() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Fixtures {
    fn id(&self, t: Target) -> String {
        match t {
            Missing => missing(),
            Prod => self.prod.clone(),
            Dev => self.dev.clone(),
        }
    }
}

/// Makes one call; only the status matters.
async fn call(c: &Client, what: Call, fx: &Fixtures) -> Result<(), Status> {
    match what {
        CreateEntry(path) => {
            c.entries().create_entry(pb::CreateEntryRequest { entry: Some(spec(path, "zz-none")) }).await.map(drop)
        }
        GetEntry(t) => c.entries().get_entry(pb::GetEntryRequest { id: fx.id(t) }).await.map(drop),
        UpdateEntry(t, path) => c
            .entries()
            .update_entry(pb::UpdateEntryRequest {
                id: fx.id(t),
                // The fixtures are at revision 1: this one is stale.
                revision: 9999,
                entry: Some(spec(path, "a")),
            })
            .await
            .map(drop),
        DeleteEntry(t) => c.entries().delete_entry(pb::DeleteEntryRequest { id: fx.id(t) }).await.map(drop),
        ListEntries => c.entries().list_entries(pb::ListEntriesRequest::default()).await.map(drop),
        BatchCreateEntries(path) => c
            .entries()
            .batch_create_entries(pb::BatchCreateEntriesRequest {
                entries: vec![spec("/ns/dev/sa/rbac-0", "zz-none"), spec(path, "zz-none")],
            })
            .await
            .map(drop),
        BatchDeleteEntries(t) => {
            let ids = match t {
                Missing => vec![missing()],
                _ => vec![fx.id(t), missing()],
            };
            c.entries().batch_delete_entries(pb::BatchDeleteEntriesRequest { ids }).await.map(drop)
        }
        CreateSite => c
            .sites()
            .create_site(pb::CreateSiteRequest {
                site: Some(pb::Site { id: "a".into(), trust_domain: "ztlab.test".into(), ..Default::default() }),
            })
            .await
            .map(drop),
        GetSite => c.sites().get_site(pb::GetSiteRequest { id: "zz-none".into() }).await.map(drop),
        UpdateSite => c
            .sites()
            .update_site(pb::UpdateSiteRequest {
                site: Some(pb::Site {
                    id: "zz-none".into(),
                    trust_domain: "ztlab.test".into(),
                    revision: 1,
                    ..Default::default()
                }),
            })
            .await
            .map(drop),
        DeleteSite => c.sites().delete_site(pb::DeleteSiteRequest { id: "zz-none".into() }).await.map(drop),
        ListSites => c.sites().list_sites(pb::ListSitesRequest {}).await.map(drop),
        GetSiteHealth => c.sites().get_site_health(pb::GetSiteHealthRequest { id: "zz-none".into() }).await.map(drop),
        TriggerSync => c.sync().trigger_sync(pb::TriggerSyncRequest { site_id: "zz-none".into() }).await.map(drop),
        GetSyncStatus => c.sync().get_sync_status(pb::GetSyncStatusRequest { entry_id: missing() }).await.map(drop),
        StreamSyncUpdates => c.sync().stream_sync_updates(pb::StreamSyncUpdatesRequest::default()).await.map(drop),
        PollEntries(site) => c
            .sync()
            .poll_entries(pb::PollEntriesRequest { site_id: site.into(), known_version: 0, wait_seconds: 0 })
            .await
            .map(drop),
        ReportSyncResult(site) => c
            .sync()
            .report_sync_result(pb::ReportSyncResultRequest {
                site_id: site.into(),
                results: vec![pb::SyncResult {
                    entry_id: "not-a-uuid".into(),
                    revision: 1,
                    outcome: pb::SyncOutcome::Synced as i32,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .await
            .map(drop),
        ListAuditEvents => c.audit().list_audit_events(pb::ListAuditEventsRequest::default()).await.map(drop),
        CreateApiKey => c
            .keys()
            .create_api_key(pb::CreateApiKeyRequest {
                name: "not a valid name!".into(),
                role: pb::Role::Viewer as i32,
                path_prefixes: vec![],
            })
            .await
            .map(drop),
        ListApiKeys => c.keys().list_api_keys(pb::ListApiKeysRequest {}).await.map(drop),
        RevokeApiKey => c.keys().revoke_api_key(pb::RevokeApiKeyRequest { id: missing() }).await.map(drop),
        WhoAmI => c.identity().who_am_i(pb::WhoAmIRequest {}).await.map(drop),
    }
}

fn show(r: &Result<(), Status>) -> String {
    match r {
        Ok(()) => "OK".into(),
        Err(s) => format!("{:?}: {}", s.code(), s.message()),
    }
}

async fn create_key(lab: &e2e::EntryLab, name: &str, role: pb::Role, prefixes: &[&str]) -> (String, String) {
    let r = lab
        .admin
        .keys()
        .create_api_key(pb::CreateApiKeyRequest {
            name: name.into(),
            role: role as i32,
            path_prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
        })
        .await
        .unwrap_or_else(|e| panic!("create API key {name}: {e:?}"))
        .into_inner();
    (r.key.expect("key").id, r.secret)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_role_and_rpc_is_authorized_as_specified() {
    init();
    let dir = state_dir();
    let lab = entry_lab(&dir, 30).await;

    // The matrix covers every RPC.
    for op in ALL_OPS {
        assert!(MATRIX.iter().any(|(c, _)| op_name(*c) == op), "the matrix has no row for {op}");
    }

    // API keys for the people roles.
    let (operator_id, operator_key) = create_key(&lab, "rbac-operator", pb::Role::Operator, &[]).await;
    let (developer_id, developer_key) = create_key(&lab, "rbac-developer", pb::Role::Developer, &["/ns/dev"]).await;
    let (viewer_id, viewer_key) = create_key(&lab, "rbac-viewer", pb::Role::Viewer, &[]).await;

    // This test process is site a's agent: registered at site a under the agent's SPIFFE ID, it
    // calls entry-manager's mTLS listener with its own SVID.
    let exe = std::env::current_exe().expect("current exe");
    lab.lab
        .register("a", "e2e-fake-agent", "/ns/ztlab-system/sa/site-agent-a", &exe, 0)
        .await
        .expect("register the test process");
    let endpoint = format!("unix://{}", lab.lab.workload_socket("a").expect("socket").display());
    let source = zt_tls::source::connect(&endpoint, Duration::from_secs(20)).await.expect("the test process's SVID");
    let td = zt_identity::parse_trust_domain("trust_domain", "ztlab.test").expect("td");
    let server: Arc<dyn zt_identity::Authorizer> =
        Arc::new(zt_identity::Rule::exact("spiffe://ztlab.test/ns/ztlab-system/sa/entry-manager").expect("rule"));
    let channel = zt_tls::client::grpc_channel(&source, &td, server, &lab.mtls_addr).expect("mTLS channel");
    let agent = Client::with_channel(channel, None).expect("client");

    let clients = [
        lab.admin.clone(),
        lab.client(Some(&operator_key)),
        lab.client(Some(&developer_key)),
        lab.client(Some(&viewer_key)),
        agent,
    ];

    // Each client is who it should be.
    let want = [
        (pb::Role::Admin, "", vec![]),
        (pb::Role::Operator, "", vec![]),
        (pb::Role::Developer, "", vec!["/ns/dev".to_owned()]),
        (pb::Role::Viewer, "", vec![]),
        (pb::Role::SiteAgent, "a", vec![]),
    ];
    for (i, (role, site, prefixes)) in want.into_iter().enumerate() {
        let me = clients[i]
            .identity()
            .who_am_i(pb::WhoAmIRequest {})
            .await
            .unwrap_or_else(|e| panic!("{}: WhoAmI: {e:?}", ROLES[i]))
            .into_inner();
        assert_eq!(me.role, role as i32, "{}: {me:?}", ROLES[i]);
        assert_eq!(me.site_id, site, "{}: {me:?}", ROLES[i]);
        assert_eq!(me.path_prefixes, prefixes, "{}: {me:?}", ROLES[i]);
    }
    let me = clients[4].identity().who_am_i(pb::WhoAmIRequest {}).await.expect("whoami").into_inner();
    assert_eq!(me.actor, "spiffe://ztlab.test/ns/ztlab-system/sa/site-agent-a");

    // Two real entries (site a) for the prefix checks on existing entries.
    let mut fixtures = Vec::new();
    for path in ["/ns/prod/sa/fixture", "/ns/dev/sa/fixture"] {
        let e = lab
            .admin
            .entries()
            .create_entry(pb::CreateEntryRequest { entry: Some(spec(path, "a")) })
            .await
            .unwrap_or_else(|e| panic!("create fixture {path}: {e:?}"))
            .into_inner();
        fixtures.push(e.id);
    }
    let fx = Fixtures { prod: fixtures[0].clone(), dev: fixtures[1].clone() };

    // The matrix.
    let mut failures = Vec::new();
    let mut calls = 0;
    for (what, expect) in MATRIX {
        let mut row = Vec::new();
        for (i, client) in clients.iter().enumerate() {
            let got = match expect[i] {
                S => {
                    row.push("-".to_owned());
                    continue;
                }
                _ => call(client, *what, &fx).await,
            };
            calls += 1;
            let code = got.as_ref().err().map(Status::code);
            row.push(code.map_or("Ok".to_owned(), |c| format!("{c:?}")));
            let ok = match expect[i] {
                A => !matches!(
                    code,
                    Some(
                        Code::PermissionDenied
                            | Code::Unauthenticated
                            | Code::Internal
                            | Code::Unknown
                            | Code::Unavailable
                    )
                ),
                D => code == Some(Code::PermissionDenied),
                S => unreachable!(),
            };
            if !ok {
                failures.push(format!(
                    "role {:<9} op {:<45} expected {:?}, got {}",
                    ROLES[i],
                    format!("{what:?}"),
                    expect[i],
                    show(&got)
                ));
            }
        }
        // The observed matrix, for `--nocapture`.
        println!("{:<45} {}", format!("{what:?}"), row.join(" "));
    }
    assert!(failures.is_empty(), "{} of {calls} calls broke the matrix:\n{}", failures.len(), failures.join("\n"));

    // Without credentials, with a bad one, or with a revoked key: UNAUTHENTICATED, for every call.
    let (revoked_id, revoked_key) = create_key(&lab, "rbac-revoked", pb::Role::Viewer, &[]).await;
    let revoked = lab.client(Some(&revoked_key));
    revoked.identity().who_am_i(pb::WhoAmIRequest {}).await.expect("the key works before it is revoked");
    let r = lab
        .admin
        .keys()
        .revoke_api_key(pb::RevokeApiKeyRequest { id: revoked_id.clone() })
        .await
        .expect("revoke")
        .into_inner();
    assert!(r.revoked, "{r:?}");
    // The viewer key's ID with another secret.
    let wrong_secret = format!("ztk_{}_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", viewer_id.replace('-', ""));
    let strangers = [
        ("no token", lab.client(None)),
        ("garbage API key", lab.client(Some("ztk_garbage"))),
        ("wrong secret", lab.client(Some(&wrong_secret))),
        ("not a token", lab.client(Some("hello"))),
        ("revoked key", revoked),
    ];
    for (who, client) in &strangers {
        for (what, _) in MATRIX {
            let got = call(client, *what, &fx).await;
            if got.as_ref().err().map(Status::code) != Some(Code::Unauthenticated) {
                failures.push(format!(
                    "{who:<15} op {:<45} expected Unauthenticated, got {}",
                    format!("{what:?}"),
                    show(&got)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Nothing was written by all of that: the fixtures are as created, no other entry exists,
    // and the audit trail has only the two creates.
    let listed =
        lab.admin.entries().list_entries(pb::ListEntriesRequest::default()).await.expect("list").into_inner().entries;
    let mut ids: Vec<&str> = listed.iter().map(|e| e.id.as_str()).collect();
    ids.sort();
    let mut want_ids: Vec<&str> = fixtures.iter().map(String::as_str).collect();
    want_ids.sort();
    assert_eq!(ids, want_ids, "{listed:?}");
    for e in &listed {
        assert_eq!(e.revision, 1, "{e:?}");
        assert!(e.site_status.iter().all(|s| s.state != pb::SyncState::Deleting as i32), "{e:?}");
    }
    let events = lab
        .admin
        .audit()
        .list_audit_events(pb::ListAuditEventsRequest { page_size: 1000, ..Default::default() })
        .await
        .expect("audit")
        .into_inner()
        .events;
    let entry_events: Vec<&str> =
        events.iter().filter(|e| e.resource_type == "entry").map(|e| e.action.as_str()).collect();
    assert_eq!(entry_events, ["entry.create", "entry.create"], "{events:?}");
    // Only the seeded sites, at start-up.
    assert!(
        events.iter().filter(|e| e.resource_type == "site").all(|e| e.actor == "entry-manager:bootstrap"),
        "{events:?}"
    );

    // Clean up: the fixtures and the keys.
    lab.admin
        .entries()
        .batch_delete_entries(pb::BatchDeleteEntriesRequest { ids: fixtures.clone() })
        .await
        .expect("delete fixtures");
    for id in [operator_id, developer_id, viewer_id] {
        lab.admin.keys().revoke_api_key(pb::RevokeApiKeyRequest { id }).await.expect("revoke");
    }
    for id in &fixtures {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let got = lab.admin.entries().get_entry(pb::GetEntryRequest { id: id.clone() }).await;
            if matches!(&got, Err(s) if s.code() == Code::NotFound) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "fixture not removed: {got:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
