//! The entry and site pages rendered from entry-manager data, and their error boxes.

use super::*;
use zt_entry_api::pb;

fn entry(id: &str, spiffe_id: &str, states: &[(&str, pb::SyncState)]) -> pb::Entry {
    pb::Entry {
        id: id.into(),
        spiffe_id: spiffe_id.into(),
        parent_id: "spiffe://ztlab.test/spire/agent/x".into(),
        selectors: vec![pb::Selector { r#type: "unix".into(), value: "uid:1000".into() }],
        revision: 3,
        site_status: states
            .iter()
            .map(|(site, st)| pb::SiteStatus {
                site_id: (*site).into(),
                state: *st as i32,
                last_error: if *st == pb::SyncState::Failed { "spire said <no>".into() } else { String::new() },
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn site(id: &str, connected: bool) -> (pb::Site, pb::SiteHealth) {
    (
        pb::Site { id: id.into(), trust_domain: format!("{id}.ztlab.test"), ..Default::default() },
        pb::SiteHealth {
            site_id: id.into(),
            agent_connected: connected,
            last_contact_at: connected.then_some(prost_types::Timestamp { seconds: 1_700_000_000, nanos: 0 }),
            disconnected_since: (!connected).then_some(prost_types::Timestamp { seconds: 1_700_000_060, nanos: 0 }),
            sync_lag_seconds: 1.5,
            synced: 7,
            pending: 2,
            failed: 1,
            unmanaged_entries: 1,
            unmanaged_entry_ids: vec!["stray-1".into()],
            ..Default::default()
        },
    )
}

fn assert_nav(html: &str, active: &str) {
    for link in [r#"href="/entries""#, r#"href="/sites""#, r#"href="/dashboard""#, r#"href="/scenarios""#] {
        assert!(html.contains(link), "nav has {link}");
    }
    assert!(html.contains(&format!(r#"aria-current="page">{active}"#)), "{active} is current");
    assets::linked(html);
}

#[test]
fn entries_page_shows_every_entry_with_a_badge_per_site() {
    let list = vec![
        entry(
            "e1",
            "spiffe://ztlab.test/ns/demo/sa/frontend",
            &[("a", pb::SyncState::Synced), ("b", pb::SyncState::Pending)],
        ),
        entry(
            "e2",
            "spiffe://ztlab.test/ns/demo/sa/backend",
            &[("a", pb::SyncState::Failed), ("b", pb::SyncState::Deleting)],
        ),
    ];
    let html = entries::entries_page(Some("jake"), Ok(&entries::Snapshot::of(list)));
    assert_nav(&html, "Entries");
    assert!(
        html.contains(r#"<tr data-id="e1" data-spiffe-id="#) && html.contains(r#"<tr data-id="e2" data-spiffe-id="#),
        "{html}"
    );
    assert!(html.contains("spiffe://ztlab.test/ns/demo/sa/frontend") && html.contains("unix:uid:1000"));
    assert!(html.contains(r#"<td class="revision">3</td>"#), "{html}");
    assert!(html.contains(r#"<span class="badge ok" data-site="a" data-state="SYNCED">a: ✓ SYNCED</span>"#));
    assert!(html.contains(r#"<span class="badge warn" data-site="b" data-state="PENDING">b: … PENDING</span>"#));
    assert!(html.contains(r#"class="badge bad" data-site="a" data-state="FAILED" title="spire said &lt;no&gt;""#));
    assert!(html.contains(r#"data-state="DELETING">b: − DELETING</span>"#), "{html}");
    assert!(assets::linked(&html).contains(r#"zt.follow("/events/entries""#));
    assert!(!html.contains("error-box\" role"), "no error box with data");
}

#[test]
fn sites_page_shows_each_sites_health() {
    let list = vec![site("a", true), site("b", false)];
    let html = entries::sites_page(Some("jake"), Ok(&list));
    assert_nav(&html, "Sites");
    assert!(html.contains(r#"<tr data-site="a">"#) && html.contains(r#"<tr data-site="b">"#), "{html}");
    assert!(html.contains(r#"<span class="badge ok">✓ connected</span>"#));
    assert!(html.contains(r#"<span class="badge bad">✗ disconnected since 2023-11-14T22:14:20Z</span>"#), "{html}");
    assert!(html.contains("2023-11-14T22:13:20Z") && html.contains(r#"<td class="contact">never</td>"#));
    assert!(html.contains(r#"<td class="lag">1.5 s</td>"#) && html.contains(r#"<td class="synced">7</td>"#));
    assert!(html.contains(r#"<td class="pending">2</td>"#) && html.contains(r#"<td class="failed">1</td>"#));
    assert!(html.contains("(stray-1)") && html.contains("a.ztlab.test"), "{html}");
}

#[test]
fn entry_and_site_values_are_escaped() {
    let mut e = entry("<e>", "spiffe://x/<script>alert(1)</script>", &[("<s>", pb::SyncState::Failed)]);
    e.selectors = vec![pb::Selector { r#type: "k8s\"".into(), value: "<img src=x onerror=alert(1)>".into() }];
    e.site_status[0].last_error = "\"><script>".into();
    let html = entries::entries_page(None, Ok(&entries::Snapshot::of(vec![e.clone()])));
    assert!(!html.contains("<script>alert") && !html.contains("<img src=x") && !html.contains("\"><script>"));
    assert!(html.contains("spiffe://x/&lt;script&gt;alert(1)&lt;/script&gt;") && html.contains("k8s&quot;:"));
    assert!(html.contains(r#"data-id="&lt;e&gt;""#) && html.contains("&lt;s&gt;: ✗ FAILED"), "{html}");
    let (mut s, mut h) = site("a", true);
    s.trust_domain = "<td>".into();
    h.site_id = "<b>".into();
    h.unmanaged_entry_ids = vec!["<u>".into()];
    let html = entries::sites_page(None, Ok(&[(s, h)]));
    assert!(!html.contains("<td>") && !html.contains("<b>") && !html.contains("<u>"), "{html}");
    assert!(html.contains("&lt;td&gt;") && html.contains("&lt;b&gt;") && html.contains("&lt;u&gt;"));
    let f = error::Failure { what: "<what>".into(), todo: "<todo>".into() };
    let html = entries::entries_page(None, Err(&f));
    assert!(html.contains("&lt;what&gt;") && html.contains("&lt;todo&gt;") && !html.contains("<what>"));
}

#[test]
fn failures_say_what_and_what_to_do() {
    let url = "https://127.0.0.1:8444";
    let f = error::Failure::from_status(url, &tonic::Status::permission_denied("role Viewer required"));
    assert!(f.what.contains("refuses the frontend") && f.what.contains(url), "{f:?}");
    assert!(f.todo.contains("Viewer") && f.todo.contains("/ns/demo/sa/frontend"), "{f:?}");
    let f = error::Failure::from_status(url, &tonic::Status::unavailable("connection refused"));
    assert!(f.what.contains("does not answer") && f.what.contains("connection refused"), "{f:?}");
    assert!(f.todo.contains("ztlab up") && f.todo.contains("ZT_ENTRY_MANAGER_URL"), "{f:?}");
    let f = error::Failure::from_status(url, &tonic::Status::internal("db down"));
    assert!(f.what.contains("Internal") && f.todo.contains("ztlab logs entry-manager"), "{f:?}");
}

#[test]
fn entry_manager_url_is_checked() {
    assert_eq!(Config::default().entry_manager_url, "https://127.0.0.1:8444");
    assert_eq!(entries::authority("https://127.0.0.1:8444/").as_deref(), Ok("127.0.0.1:8444"));
    assert_eq!(entries::authority("localhost:1").as_deref(), Ok("localhost:1"));
    for bad in ["http://127.0.0.1:8444", "https://127.0.0.1", "https://h:1/x", ""] {
        assert!(entries::authority(bad).is_err(), "{bad}");
    }
    let c = Config { entry_manager_url: "http://x:1".into(), ..Config::default() };
    assert!(c.state().expect_err("http").to_string().starts_with("entry_manager_url:"));
}

#[tokio::test]
async fn pages_and_events_without_an_svid_show_the_error_box() {
    let (state, _dir) = no_lab_state().await;
    for (path, active) in [("/entries", "Entries"), ("/sites", "Sites")] {
        let (status, html) = get_page(state.clone(), path).await;
        assert_eq!(status, StatusCode::OK);
        assert_nav(&html, active);
        assert!(html.contains(r#"class="error-box" role="alert""#), "{html}");
        assert!(html.contains("What failed:") && html.contains("no SVID yet"), "{html}");
        assert!(html.contains("What to do:") && html.contains("ztlab up"), "{html}");
    }
    let mut state = state;
    let req = signed_get(&mut state, "/events/entries");
    let resp = router(state).oneshot(req).await.expect("answer");
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let frame = tokio::time::timeout(Duration::from_secs(3), body.frame()).await.expect("an event within 3 s");
    let data = frame.expect("frame").expect("ok").into_data().expect("data");
    let text = String::from_utf8(data.to_vec()).expect("utf8");
    let v: Value = serde_json::from_str(text.trim().strip_prefix("data: ").expect("data line")).expect("json");
    assert_eq!(v["ok"], false, "{v}");
    assert!(v["error"].as_str().unwrap_or_default().contains("no SVID"), "{v}");
    let snap = entries::Snapshot {
        entries: vec![entry("e1", "spiffe://ztlab.test/ns/demo/sa/frontend", &[("a", pb::SyncState::Synced)])],
        sites: vec![site("a", true)],
        caller: None,
    };
    let v = entries::snapshot_json(&Ok(snap));
    assert_eq!(v["ok"], true);
    assert_eq!(v["entries"][0]["sites"][0], json!({"site_id": "a", "state": "SYNCED", "last_error": ""}));
    assert_eq!(v["entries"][0]["selectors"], json!(["unix:uid:1000"]));
    assert_eq!(v["sites"][0]["site_id"], "a");
    assert_eq!(v["sites"][0]["trust_domain"], "a.ztlab.test");
    assert_eq!(v["sites"][0]["last_contact"], "2023-11-14T22:13:20Z");
    assert_eq!(v["sites"][0]["agent_connected"], true);
    assert_eq!(v["sites"][0]["agent_label"], "✓ connected");
    let gone = entries::Snapshot { entries: vec![], sites: vec![site("b", false)], caller: None };
    let v = entries::snapshot_json(&Ok(gone));
    assert_eq!(v["sites"][0]["agent_connected"], false);
    assert_eq!(v["sites"][0]["disconnected_since"], "2023-11-14T22:14:20Z");
    assert_eq!(v["sites"][0]["agent_label"], "✗ disconnected since 2023-11-14T22:14:20Z");
}

#[test]
fn only_entries_the_caller_may_delete_get_a_delete_button() {
    // The UI's identity is a Developer limited to /demo (entry-manager's [[identities]]).
    let caller = pb::WhoAmIResponse {
        actor: "spiffe://ztlab.test/ns/demo/sa/frontend".into(),
        role: pb::Role::Developer as i32,
        site_id: String::new(),
        path_prefixes: vec!["/demo".into()],
    };
    let mine = entry("mine", "spiffe://ztlab.test/demo/app", &[("a", pb::SyncState::Synced)]);
    let theirs = entry("theirs", "spiffe://ztlab.test/ns/demo/sa/opa", &[("a", pb::SyncState::Synced)]);
    let snap = entries::Snapshot { entries: vec![mine, theirs], sites: vec![], caller: Some(caller.clone()) };
    let html = entries::entries_page(Some("jake"), Ok(&snap));
    assert!(html.contains(r#"data-id="mine" data-spiffe-id="spiffe://ztlab.test/demo/app""#), "{html}");
    assert!(!html.contains(r#"class="entry-delete danger small" data-id="theirs""#), "{html}");
    assert!(html.contains(r#"class="entry-delete danger small" data-id="mine""#), "{html}");
    let v = entries::snapshot_json(&Ok(snap.clone()));
    assert_eq!(
        (v["entries"][0]["may_delete"].clone(), v["entries"][1]["may_delete"].clone()),
        (json!(true), json!(false))
    );
    // An Operator may delete both; when WhoAmI failed, entry-manager decides (both buttons stay).
    let operator = pb::WhoAmIResponse { role: pb::Role::Operator as i32, path_prefixes: vec![], ..caller };
    let both = entries::Snapshot { caller: Some(operator), ..snap.clone() };
    assert!(both.may_write("spiffe://ztlab.test/ns/demo/sa/opa"));
    let unknown = entries::Snapshot { caller: None, ..snap };
    assert!(unknown.may_write("spiffe://ztlab.test/ns/demo/sa/opa"));
    let html = entries::entries_page(Some("jake"), Ok(&both));
    assert!(html.contains(r#"class="entry-delete danger small" data-id="theirs""#), "{html}");
}
