//! The entry pages as maud templates, and the JSON the pages' scripts read: the entries list
//! (`/entries`), the sites (`/sites`) and the audit history (`/entries/audit`). The create form
//! is in [`super::new_form`].

use maud::{Markup, html};
use serde_json::{Value, json};
use zt_entry_api::json as views;
use zt_entry_api::pb;
use zt_entry_api::state::SyncState;

use super::client::Snapshot;
use crate::assets;
use crate::error::Failure;
use crate::ui::{layout, live_lead, query_value};

/// An entry as the pages and the event stream show it.
/// One entry as the pages' scripts read it; `may_delete`: whether the UI's caller may delete it
/// (the list shows no Delete button otherwise).
pub fn entry_json(e: &pb::Entry, may_delete: bool) -> Value {
    json!({
        "id": e.id,
        "spiffe_id": e.spiffe_id,
        "may_delete": may_delete,
        "selectors": e.selectors.iter().map(|s| format!("{}:{}", s.r#type, s.value)).collect::<Vec<_>>(),
        "revision": e.revision,
        "sites": e.site_status.iter().map(|s| json!({
            "site_id": s.site_id,
            "state": views::state(s.state),
            "last_error": s.last_error,
        })).collect::<Vec<_>>(),
    })
}

/// A site's health as the pages and the event stream show it.
pub fn site_json(site: &pb::Site, h: &pb::SiteHealth) -> Value {
    let mut v = views::health(h);
    v["trust_domain"] = json!(site.trust_domain);
    v["last_contact"] = json!(last_contact(h));
    v["agent_label"] = json!(agent_badge(h).1);
    v
}

/// The JSON pushed on `/events/entries`.
pub fn snapshot_json(r: &Result<Snapshot, Failure>) -> Value {
    match r {
        Ok(s) => json!({
            "ok": true,
            "entries": s.entries.iter().map(|e| entry_json(e, s.may_write(&e.spiffe_id))).collect::<Vec<_>>(),
            "sites": s.sites.iter().map(|(site, h)| site_json(site, h)).collect::<Vec<_>>(),
        }),
        Err(f) => json!({"ok": false, "error": f.what, "todo": f.todo}),
    }
}

/// `(css class, label)` of a sync state: colour and text.
pub fn state_badge(state: &str) -> (&'static str, String) {
    let Some(known) = SyncState::from_name(state) else { return ("muted", state.to_owned()) };
    let (cls, mark) = match known {
        SyncState::Synced => ("ok", "✓"),
        SyncState::Pending => ("warn", "…"),
        SyncState::Failed => ("bad", "✗"),
        SyncState::Deleting => ("muted", "−"),
    };
    (cls, format!("{mark} {}", known.as_str()))
}

fn last_contact(h: &pb::SiteHealth) -> String {
    views::time(&h.last_contact_at).as_str().unwrap_or("never").to_owned()
}

/// `(css class, label)` of a site agent's connection: "✓ connected", or "✗ disconnected since
/// <time>" (when its long-poll broke off, or its last contact).
fn agent_badge(h: &pb::SiteHealth) -> (&'static str, String) {
    if h.agent_connected {
        return ("ok", "✓ connected".into());
    }
    match views::time(&h.disconnected_since).as_str() {
        Some(since) => ("bad", format!("✗ disconnected since {since}")),
        None => ("bad", "✗ disconnected (never connected)".into()),
    }
}

/// Whether every site of `e` has it DELETING (a delete is under way).
fn is_deleting(e: &pb::Entry) -> bool {
    !e.site_status.is_empty() && e.site_status.iter().all(|s| s.state == pb::SyncState::Deleting as i32)
}

fn entry_row(e: &pb::Entry, may_write: bool) -> Markup {
    let deleting = is_deleting(e);
    html! {
        tr data-id=(e.id) data-spiffe-id=(e.spiffe_id) {
            td class="spiffe mono" { (e.spiffe_id) }
            td class="selectors mono" {
                @for (i, s) in e.selectors.iter().enumerate() {
                    @if i > 0 { br; }
                    (s.r#type) ":" (s.value)
                }
                @if e.selectors.is_empty() { "—" }
            }
            td class="revision" { (e.revision) }
            td class="sites" {
                @for s in &e.site_status {
                    @let state = views::state(s.state);
                    @let (cls, label) = state_badge(state);
                    span class={ "badge " (cls) } data-site=(s.site_id) data-state=(state)
                        title=[(!s.last_error.is_empty()).then_some(&s.last_error)] { (s.site_id) ": " (label) }
                    " "
                }
            }
            td class="actions" {
                // Only what entry-manager would let the UI's caller delete gets a button.
                @if may_write {
                    button type="button" class="entry-delete danger small" data-id=(e.id) data-spiffe-id=(e.spiffe_id)
                        aria-label={ "Delete " (e.spiffe_id) } disabled[deleting] {
                        @if deleting { "Deleting…" } @else { "Delete" }
                    }
                    " "
                }
                a class="history" href={ "/entries/audit?entry=" (query_value(&e.id)) } { "History" }
            }
        }
    }
}

fn site_row(site: &pb::Site, h: &pb::SiteHealth) -> Markup {
    let (cls, label) = agent_badge(h);
    html! {
        tr data-site=(h.site_id) {
            td class="site" { strong { (h.site_id) } }
            td class="td mono" { (site.trust_domain) }
            td class="agent" { span class={ "badge " (cls) } { (label) } }
            td class="contact" { (last_contact(h)) }
            td class="lag" { (format!("{:.1}", h.sync_lag_seconds)) " s" }
            td class="synced" { (h.synced) }
            td class="pending" { (h.pending) }
            td class="failed" { (h.failed) }
            td class="unmanaged" {
                (h.unmanaged_entries)
                @if !h.unmanaged_entry_ids.is_empty() {
                    " " span class="mono muted" { "(" (h.unmanaged_entry_ids.join(", ")) ")" }
                }
            }
        }
    }
}

/// The `#error` box of a live page: the failure, if any.
fn error_slot<T>(r: Result<T, &Failure>) -> Markup {
    html! { div id="error" { @if let Err(f) = r { (f) } } }
}

/// The entries table with the rows of `r`, the delete dialog and the list's scripts.
pub(super) fn entry_list(r: Result<&Snapshot, &Failure>) -> Markup {
    let heads = ["SPIFFE ID", "Selectors", "Revision", "Sites", "Actions"];
    html! {
        p id="entries-status" role="status" aria-live="polite" tabindex="-1" {}
        table aria-label="Registration entries" {
            thead { tr { @for h in heads { th scope="col" { (h) } } } }
            tbody id="rows" data-page="entries" { @if let Ok(s) = r { @for e in &s.entries { (entry_row(e, s.may_write(&e.spiffe_id))) } } }
        }
        dialog id="confirm-delete" aria-labelledby="confirm-delete-title" aria-describedby="confirm-delete-desc" {
            h2 id="confirm-delete-title" { "Delete this entry?" }
            div id="confirm-delete-desc" {
                p class="mono" { strong id="confirm-delete-id" {} }
                p {
                    "entry-manager marks it DELETING at every site; each site's agent removes it from its SPIRE server, \
                     and the workload stops getting new SVIDs. The UI may delete only entries under /demo; \
                     entry-manager refuses the others."
                }
            }
            div class="buttons" {
                button type="button" id="confirm-delete-yes" class="danger" { "Delete" }
                button type="button" id="confirm-delete-no" class="secondary" { "Cancel" }
            }
        }
        (assets::script("entries.js"))
        (assets::script("entries-delete.js"))
    }
}

/// `GET /entries`: every entry, or the error box.
pub fn entries_page(user: Option<&str>, r: Result<&Snapshot, &Failure>) -> String {
    let body = html! {
        h1 { "Entries" }
        (live_lead("Every registration entry in entry-manager, with its sync state at each site. The UI writes as \
                    its own SPIFFE ID, which entry-manager lets create and delete entries only under /demo."))
        (error_slot(r))
        p class="actions-bar" {
            a class="button" href="/entries/new" { "New entry" }
            a class="button secondary" href="/entries/audit" { "Audit history" }
        }
        (entry_list(r))
    };
    layout("Entries", "entries", user, &["entries.css"], body)
}

/// `GET /sites`: each site's health, or the error box.
pub fn sites_page(user: Option<&str>, r: Result<&[(pb::Site, pb::SiteHealth)], &Failure>) -> String {
    let heads = ["Site", "Trust domain", "Agent", "Last contact", "Lag", "Synced", "Pending", "Failed", "Unmanaged"];
    let body = html! {
        h1 { "Sites" }
        (live_lead("Each site's agent, how far behind it is, and its entries by state (read-only)."))
        (error_slot(r))
        table aria-label="Sites" {
            thead { tr { @for h in heads { th scope="col" { (h) } } } }
            tbody id="rows" data-page="sites" { @if let Ok(list) = r { @for (s, h) in list { (site_row(s, h)) } } }
        }
        (assets::script("entries.js"))
    };
    layout("Sites", "sites", user, &[], body)
}

/// What an audit event did, in words: `(badge class, outcome, detail)`. An audit row is written
/// in the same transaction as its change, so every row is a change that was committed.
pub fn audit_outcome(e: &pb::AuditEvent) -> (&'static str, &'static str, String) {
    let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::Null);
    let (before, after) = (parse(&e.before_json), parse(&e.after_json));
    let sites =
        |v: &Value| v["site_ids"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "));
    match e.action.as_str() {
        "entry.create" => (
            "ok",
            "✓ created",
            format!(
                "revision {}, PENDING at {}",
                after["revision"].as_i64().unwrap_or(1),
                sites(&after).unwrap_or_else(|| "its sites".into())
            ),
        ),
        "entry.update" => ("ok", "✓ updated", format!("revision {}", after["revision"].as_i64().unwrap_or_default())),
        "entry.delete" => (
            "warn",
            "✓ deleting",
            format!("DELETING at {} until gone", sites(&before).unwrap_or_else(|| "every site".into())),
        ),
        "site.create" => ("ok", "✓ site created", String::new()),
        "site.update" => ("ok", "✓ site updated", String::new()),
        "site.delete" => ("warn", "✓ site deleted", String::new()),
        "site.trigger_sync" => ("ok", "✓ resync requested", String::new()),
        "apikey.create" => ("ok", "✓ API key created", String::new()),
        "apikey.revoke" => ("warn", "✓ API key revoked", String::new()),
        _ => ("ok", "✓ committed", String::new()),
    }
}

/// An audit event as the audit page and `GET /api/entries/audit` show it.
pub fn audit_json(e: &pb::AuditEvent) -> Value {
    let spiffe_id = [&e.after_json, &e.before_json]
        .iter()
        .filter_map(|s| serde_json::from_str::<Value>(s).ok())
        .find_map(|v| v["spiffe_id"].as_str().map(str::to_owned));
    let (class, outcome, detail) = audit_outcome(e);
    json!({
        "id": e.id,
        "at": views::time(&e.at),
        "actor": e.actor,
        "action": e.action,
        "resource": format!("{} {}", e.resource_type, e.resource_id),
        "spiffe_id": spiffe_id,
        "outcome": outcome,
        "class": class,
        "detail": detail,
        "trace_id": e.trace_id,
    })
}

fn audit_row(e: &pb::AuditEvent) -> Markup {
    let v = audit_json(e);
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    let at = s("at");
    html! {
        tr data-action=(e.action) data-id=(e.id) {
            td class="at" { time datetime=(at) { (at) } }
            td class="actor mono" { (e.actor) }
            td class="action mono" { (e.action) }
            td class="spiffe mono" {
                @match v["spiffe_id"].as_str() {
                    Some(id) => (id),
                    None => span class="muted" { (s("resource")) },
                }
            }
            td class="outcome" { span class={ "badge " (s("class")) } { (s("outcome")) } " " span class="muted" { (s("detail")) } }
        }
    }
}

/// `GET /entries/audit`: entry-manager's audit trail (of entry `entry`, if given), newest first.
pub fn audit_page(user: Option<&str>, entry: Option<&str>, r: Result<&[pb::AuditEvent], &Failure>) -> String {
    let heads = ["Time (UTC)", "Actor", "Action", "SPIFFE ID", "Outcome"];
    let body = html! {
        h1 { "Audit history" }
        (live_lead("Every change entry-manager committed, newest first: who made it (a SPIFFE ID, an OIDC user or an \
                    API key), what, and to which SPIFFE ID. Each row is written in the same transaction as its change; \
                    a refused call changes nothing and leaves no row (entry-manager logs it as \"request refused\")."))
        (error_slot(r))
        p class="actions-bar" {
            a class="button secondary" href="/entries" { "Entries" }
            @if let Some(id) = entry {
                span { "History of entry " span class="mono" { (id) } "." } " "
                a href="/entries/audit" { "Show every change" }
            }
        }
        table id="audit" aria-label="Audit history" data-entry=(entry.unwrap_or_default()) {
            thead { tr { @for h in heads { th scope="col" { (h) } } } }
            tbody id="audit-rows" { @if let Ok(list) = r { @for e in list { (audit_row(e)) } } }
        }
        (assets::script("audit.js"))
    };
    layout("Audit history", "entries", user, &["entries.css"], body)
}
