//! The entry-management pages and actions.
//!
//! Pages (server-rendered, updated in place from `GET /events/entries`, a server-sent event
//! stream that pushes [`snapshot_json`] every second):
//! - `GET /entries`: every entry with a badge per site, a Delete button per row (with a
//!   confirmation dialog) and links to the create form and the audit history.
//! - `GET /entries/new`: the create form (validated as you type) above the same live list.
//! - `GET /entries/audit` (`?entry=<id>` for one entry): entry-manager's audit trail, newest first.
//! - `GET /sites`: each site's health.
//!
//! Actions (JSON, behind the login like the pages; every write is logged with the signed-in user):
//! - `POST /api/entries`: `{"spiffe_id","parent_id","selectors":["type:value",…],
//!   "x509_svid_ttl","site_ids":[…],"hint"}`, validated here ([`validate_create`]) and then by
//!   entry-manager's `CreateEntry`; 201 `{"ok":true,"entry"}`, else `{"error","field","errors"}`
//!   with 400 (invalid), 403 (PermissionDenied), 409 (AlreadyExists), 5xx (entry-manager down).
//! - `DELETE /api/entries/{id}`: entry-manager's `DeleteEntry`, which marks the entry DELETING at
//!   every site; it disappears once every site's SPIRE server has removed it.
//! - `GET /api/entries/audit` (`?entry=<id>`): `{"ok":true,"events":[…]}` ([`audit_json`]).
//!
//! The data comes from entry-manager's mTLS listener (`entry_manager_url`), called with the
//! frontend's own SVID; the server must present entry-manager's SPIFFE ID. entry-manager grants
//! the frontend the `Developer` role with `path_prefixes = ["/demo"]` (config `[[identities]]`,
//! written by `zt_runtime::entrymgmt`): it reads everything but may create and delete only
//! `spiffe://<td>/demo/...` entries. Anything else comes back as PermissionDenied, which the
//! form shows next to the SPIFFE ID.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use zt_entry_api::client::Client;
use zt_entry_api::json as views;
use zt_entry_api::pb;
use zt_entry_api::validate::{self, MAX_SELECTORS, MAX_TTL, MIN_TTL};
use zt_tls::X509Source;

use crate::AppState;
use crate::auth::Session;
use crate::ui::{error_box, esc, html, layout};

/// A client for entry-manager's mTLS listener.
#[derive(Debug)]
pub struct EntryManager {
    client: Client,
    url: String,
    timeout: Duration,
}

/// `host:port` of an `https://host:port` URL (a bare `host:port` is taken as it is).
pub fn authority(url: &str) -> Result<String, String> {
    let rest = url.trim().trim_end_matches('/');
    let rest = rest.strip_prefix("https://").unwrap_or(rest);
    if rest.contains("://") {
        return Err("entry-manager speaks gRPC over mTLS: use https://host:port".into());
    }
    match rest.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !rest.contains('/') && port.parse::<u16>().is_ok() => {
            Ok(rest.to_owned())
        }
        _ => Err("expected https://host:port".into()),
    }
}

impl EntryManager {
    /// A client for `config.entry_manager_url` with the SVIDs of `source`.
    pub fn new(config: &crate::Config, source: &X509Source) -> anyhow::Result<Self> {
        let td = config.workload.trust_domain()?;
        let addr = authority(&config.entry_manager_url).map_err(|reason| crate::Error::InvalidSetting {
            field: "entry_manager_url".into(),
            value: config.entry_manager_url.clone(),
            reason,
        })?;
        let id = zt_identity::lab::id(td.as_str(), zt_identity::lab::ENTRY_MANAGER)?;
        let channel = zt_tls::client::grpc_channel(source, &td, Arc::new(zt_identity::Rule::Exact(id)), &addr)?;
        Ok(Self {
            client: Client::with_channel(channel, None)?,
            url: config.entry_manager_url.clone(),
            timeout: config.request_timeout,
        })
    }

    /// A client over an existing `client` (tests use a plain channel to a fake server).
    pub fn over(client: Client, url: &str, timeout: Duration) -> Self {
        Self { client, url: url.to_owned(), timeout }
    }

    /// The URL it calls, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `msg` as a request carrying `trace_id` (entry-manager stores it with the audit row).
    fn request<T>(msg: T, trace_id: &str) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        if let Ok(v) = trace_id.parse() {
            req.metadata_mut().insert("x-trace-id", v);
        }
        req
    }

    /// Runs `call` within the timeout (a late answer is `DeadlineExceeded`).
    async fn timed<T>(
        &self,
        call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, tonic::Status> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(r) => r.map(tonic::Response::into_inner),
            Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                "no answer within {}",
                humantime::format_duration(self.timeout)
            ))),
        }
    }

    /// `CreateEntry`.
    pub async fn create(&self, spec: pb::EntrySpec, trace_id: &str) -> Result<pb::Entry, tonic::Status> {
        let req = Self::request(pb::CreateEntryRequest { entry: Some(spec) }, trace_id);
        self.timed(self.client.entries().create_entry(req)).await
    }

    /// `DeleteEntry`: the entry goes DELETING at every site.
    pub async fn delete(&self, id: &str, trace_id: &str) -> Result<pb::Entry, tonic::Status> {
        let req = Self::request(pb::DeleteEntryRequest { id: id.to_owned() }, trace_id);
        self.timed(self.client.entries().delete_entry(req)).await
    }

    /// `ListAuditEvents`, newest first: every event, or those of entry `entry_id`.
    pub async fn audit(&self, entry_id: &str, page_size: i32) -> Result<Vec<pb::AuditEvent>, tonic::Status> {
        let req = pb::ListAuditEventsRequest { entry_id: entry_id.to_owned(), page_size, ..Default::default() };
        let mut events = self.timed(self.client.audit().list_audit_events(req)).await?.events;
        events.sort_by_key(|e| std::cmp::Reverse(e.id));
        Ok(events)
    }

    /// Every entry and every site with its health.
    pub async fn snapshot(&self) -> Result<Snapshot, Failure> {
        match tokio::time::timeout(self.timeout, self.fetch()).await {
            Ok(r) => r.map_err(|s| Failure::from_status(&self.url, &s)),
            Err(_) => Err(Failure {
                what: format!(
                    "entry-manager at {} did not answer within {}",
                    self.url,
                    humantime::format_duration(self.timeout)
                ),
                todo: UNREACHABLE_TODO.into(),
            }),
        }
    }

    async fn fetch(&self) -> Result<Snapshot, tonic::Status> {
        let mut entries = Vec::new();
        let mut token = String::new();
        loop {
            let resp = self
                .client
                .entries()
                .list_entries(pb::ListEntriesRequest { filter: None, page_size: 1000, page_token: token })
                .await?
                .into_inner();
            entries.extend(resp.entries);
            token = resp.next_page_token;
            if token.is_empty() {
                break;
            }
        }
        let sites = self.client.sites().list_sites(pb::ListSitesRequest {}).await?.into_inner().sites;
        let mut health = Vec::new();
        for s in sites {
            let h = self.client.sites().get_site_health(pb::GetSiteHealthRequest { id: s.id.clone() }).await?;
            health.push((s, h.into_inner()));
        }
        Ok(Snapshot { entries, sites: health })
    }
}

/// What the pages show.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Every entry.
    pub entries: Vec<pb::Entry>,
    /// Every site with its health.
    pub sites: Vec<(pb::Site, pb::SiteHealth)>,
}

/// Why entry-manager could not be read: what failed and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What failed.
    pub what: String,
    /// What to do.
    pub todo: String,
}

const UNREACHABLE_TODO: &str = "Start the lab (or just entry-manager) with `ztlab up` and check `ztlab status`. \
                                The frontend calls entry-manager's mTLS listener at its entry_manager_url setting \
                                (ZT_ENTRY_MANAGER_URL, default https://127.0.0.1:8444, lab.toml \
                                [entry_management] listen).";

impl Failure {
    /// The frontend has no SVID yet, so it cannot call entry-manager.
    pub fn no_svid() -> Self {
        Self {
            what: "the frontend has no SVID yet, so it cannot call entry-manager over mTLS".into(),
            todo: "Wait for the SPIRE agent to issue the frontend's SVID (check `ztlab status`), or start the lab \
                   with `ztlab up`."
                .into(),
        }
    }

    /// From a gRPC status of a call to `url`.
    pub fn from_status(url: &str, s: &tonic::Status) -> Self {
        use tonic::Code;
        let msg = if s.message().is_empty() { format!("{:?}", s.code()) } else { s.message().to_owned() };
        match s.code() {
            Code::PermissionDenied | Code::Unauthenticated => Self {
                what: format!("entry-manager at {url} refuses the frontend: {msg}"),
                todo: "entry-manager must list the frontend's SPIFFE ID (spiffe://<trust domain>/ns/demo/sa/frontend) \
                       in its [[identities]], as a Developer with path_prefixes = [\"/demo\"] (a Viewer can only \
                       read); `ztlab up` writes that config. Restart entry-manager (`ztlab up`) if it runs with an \
                       older config."
                    .into(),
            },
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
                Self { what: format!("entry-manager at {url} does not answer: {msg}"), todo: UNREACHABLE_TODO.into() }
            }
            code => Self {
                what: format!("entry-manager at {url} answered {code:?}: {msg}"),
                todo: "Check entry-manager's log (`ztlab logs entry-manager`) and `ztlab status`.".into(),
            },
        }
    }
}

/// An entry as the pages and the event stream show it.
pub fn entry_json(e: &pb::Entry) -> Value {
    json!({
        "id": e.id,
        "spiffe_id": e.spiffe_id,
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
            "entries": s.entries.iter().map(entry_json).collect::<Vec<_>>(),
            "sites": s.sites.iter().map(|(site, h)| site_json(site, h)).collect::<Vec<_>>(),
        }),
        Err(f) => json!({"ok": false, "error": f.what, "todo": f.todo}),
    }
}

/// `(css class, label)` of a sync state: colour and text.
pub fn state_badge(state: &str) -> (&'static str, String) {
    match state {
        "SYNCED" => ("ok", "✓ SYNCED".into()),
        "PENDING" => ("warn", "… PENDING".into()),
        "FAILED" => ("bad", "✗ FAILED".into()),
        "DELETING" => ("muted", "− DELETING".into()),
        other => ("muted", other.to_owned()),
    }
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

fn entry_row(e: &pb::Entry) -> String {
    let selectors: Vec<String> =
        e.selectors.iter().map(|s| esc(&format!("{}:{}", s.r#type, s.value))).collect::<Vec<_>>();
    let mut badges = String::new();
    for s in &e.site_status {
        let state = views::state(s.state);
        let (cls, label) = state_badge(state);
        let title = if s.last_error.is_empty() { String::new() } else { format!(" title=\"{}\"", esc(&s.last_error)) };
        let _ = write!(
            badges,
            "<span class=\"badge {cls}\" data-site=\"{site}\" data-state=\"{state}\"{title}>{site}: {label}</span> ",
            site = esc(&s.site_id),
            label = esc(&label),
        );
    }
    let (disabled, label) = if is_deleting(e) { (" disabled", "Deleting…") } else { ("", "Delete") };
    format!(
        "<tr data-id=\"{id}\" data-spiffe-id=\"{sid}\"><td class=\"spiffe mono\">{sid}</td>\
         <td class=\"selectors mono\">{sel}</td><td class=\"revision\">{rev}</td><td class=\"sites\">{badges}</td>\
         <td class=\"actions\"><button type=\"button\" class=\"entry-delete danger small\" data-id=\"{id}\" \
         data-spiffe-id=\"{sid}\" aria-label=\"Delete {sid}\"{disabled}>{label}</button> \
         <a class=\"history\" href=\"/entries/audit?entry={qid}\">History</a></td></tr>",
        id = esc(&e.id),
        qid = esc(&query_value(&e.id)),
        sid = esc(&e.spiffe_id),
        sel = if selectors.is_empty() { "—".into() } else { selectors.join("<br>") },
        rev = e.revision,
    )
}

/// Percent-encodes `s` for a query value.
fn query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn site_row(site: &pb::Site, h: &pb::SiteHealth) -> String {
    let (cls, label) = agent_badge(h);
    let unmanaged = if h.unmanaged_entry_ids.is_empty() {
        h.unmanaged_entries.to_string()
    } else {
        format!(
            "{} <span class=\"mono muted\">({})</span>",
            h.unmanaged_entries,
            esc(&h.unmanaged_entry_ids.join(", "))
        )
    };
    format!(
        "<tr data-site=\"{id}\"><td class=\"site\"><strong>{id}</strong></td><td class=\"td mono\">{td}</td>\
         <td class=\"agent\"><span class=\"badge {cls}\">{label}</span></td><td class=\"contact\">{contact}</td>\
         <td class=\"lag\">{lag:.1} s</td><td class=\"synced\">{synced}</td><td class=\"pending\">{pending}</td>\
         <td class=\"failed\">{failed}</td><td class=\"unmanaged\">{unmanaged}</td></tr>",
        id = esc(&h.site_id),
        td = esc(&site.trust_domain),
        label = esc(&label),
        contact = esc(&last_contact(h)),
        lag = h.sync_lag_seconds,
        synced = h.synced,
        pending = h.pending,
        failed = h.failed,
    )
}

fn live_line(lead: &str) -> String {
    format!(
        "<p class=\"lead\">{lead} <span id=\"live\" class=\"muted\" role=\"status\" aria-live=\"polite\">\
         Connecting…</span></p>\n<div id=\"error\">"
    )
}

/// The page-specific CSS of the entry pages.
const ENTRY_CSS: &str = "<style>
.actions-bar { display: flex; gap: 16px; align-items: center; flex-wrap: wrap; margin: 0 0 20px; }
a.button { display: inline-block; font-size: 24px; font-weight: 700; padding: 10px 26px; border-radius: 10px; \
color: #fff; background: #1a56db; text-decoration: none; }
a.button.secondary { background: #5f6368; }
a.history { font-size: 20px; color: #1a56db; }
button.small { font-size: 20px; padding: 4px 16px; }
td.actions { white-space: nowrap; }
#entries-status:empty, #entry-form-status:empty, .field-error:empty, .field-note:empty { display: none; }
#entries-status, #entry-form-status { font-size: 22px; font-weight: 600; margin: 0 0 16px; padding: 10px 16px; \
border-radius: 10px; background: #eef3ff; border: 3px solid #1a56db; }
#entries-status.ok, #entry-form-status.ok { background: #e9f6ee; border-color: var(--ok); color: #064d1f; }
#entries-status.bad, #entry-form-status.bad { background: #fdecea; border-color: var(--bad); color: #5c0f0a; }
.field-note { font-weight: 700; margin: 0; }
.field-note.ok { color: var(--ok); } .field-note.warn { color: var(--warn); }
fieldset.field { border: 2px solid #8e8e99; border-radius: 8px; padding: 10px 16px; margin: 0; }
fieldset.field[aria-invalid=\"true\"] { border-color: var(--bad); background: #fff6f5; }
fieldset.field legend { font-weight: 700; padding: 0 6px; }
.checks { display: flex; gap: 24px; flex-wrap: wrap; }
.checks label { font-weight: 400; display: inline-flex; gap: 8px; align-items: center; }
.checks input { width: 24px; height: 24px; }
textarea { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 20px; }
input.mono { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 20px; }
dialog { border: 0; border-radius: 14px; padding: 24px 30px; max-width: 900px; box-shadow: 0 12px 40px rgba(0,0,0,.35); }
dialog::backdrop { background: rgba(0,0,0,.45); }
dialog h2 { margin-top: 0; }
dialog .buttons { display: flex; gap: 16px; margin-top: 20px; }
tr.new td { background: #fff8db; }
</style>";

/// The confirmation dialog for deletes.
const DELETE_DIALOG: &str = "<dialog id=\"confirm-delete\" aria-labelledby=\"confirm-delete-title\" \
aria-describedby=\"confirm-delete-desc\">\n<h2 id=\"confirm-delete-title\">Delete this entry?</h2>\n\
<div id=\"confirm-delete-desc\"><p class=\"mono\"><strong id=\"confirm-delete-id\"></strong></p>\n\
<p>entry-manager marks it DELETING at every site; each site's agent removes it from its SPIRE server, and the \
workload stops getting new SVIDs. The UI may delete only entries under /demo; entry-manager refuses the others.</p></div>\n\
<div class=\"buttons\"><button type=\"button\" id=\"confirm-delete-yes\" class=\"danger\">Delete</button>\
<button type=\"button\" id=\"confirm-delete-no\" class=\"secondary\">Cancel</button></div>\n</dialog>\n";

/// The entries table with `rows`, the delete dialog and the scripts of the list.
fn entry_list(rows: &str) -> String {
    format!(
        "<p id=\"entries-status\" role=\"status\" aria-live=\"polite\" tabindex=\"-1\"></p>\n\
         <table aria-label=\"Registration entries\"><thead><tr><th scope=\"col\">SPIFFE ID</th>\
         <th scope=\"col\">Selectors</th><th scope=\"col\">Revision</th><th scope=\"col\">Sites</th>\
         <th scope=\"col\">Actions</th></tr></thead>\
         <tbody id=\"rows\">{rows}</tbody></table>\n{DELETE_DIALOG}{ENTRY_CSS}\n\
         <script>var ZT_PAGE = \"entries\";{JS}{DELETE_JS}</script>"
    )
}

/// The rows of `r`, or an error box pushed to `body`.
fn rows_or_error(body: &mut String, r: Result<&[pb::Entry], &Failure>) -> String {
    match r {
        Ok(list) => list.iter().map(entry_row).collect::<String>(),
        Err(f) => {
            body.push_str(&error_box(&f.what, &f.todo));
            String::new()
        }
    }
}

/// `GET /entries`: every entry, or the error box.
pub fn entries_page(r: Result<&[pb::Entry], &Failure>) -> String {
    let mut body = String::from("<h1>Entries</h1>\n");
    body.push_str(&live_line(
        "Every registration entry in entry-manager, with its sync state at each site. The UI writes as its own \
         SPIFFE ID, which entry-manager lets create and delete entries only under /demo.",
    ));
    let rows = rows_or_error(&mut body, r);
    body.push_str(
        "</div>\n<p class=\"actions-bar\"><a class=\"button\" href=\"/entries/new\">New entry</a>\
         <a class=\"button secondary\" href=\"/entries/audit\">Audit history</a></p>\n",
    );
    body.push_str(&entry_list(&rows));
    layout("Entries", "entries", &body)
}

/// A site the form offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteChoice {
    /// The site ID.
    pub id: String,
    /// Its trust domain.
    pub trust_domain: String,
}

/// What the create form offers: the sites, the parents (each site's node alias) and the
/// defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewEntryForm {
    /// The sites, all checked.
    pub sites: Vec<SiteChoice>,
    /// The node aliases of the sites (the first is the default parent).
    pub parents: Vec<String>,
    /// The lab's trust domain, if known (for the placeholder and the as-you-type check).
    pub trust_domain: Option<String>,
    /// Why the lab spec could not be read, if it could not.
    pub lab_error: Option<String>,
}

impl NewEntryForm {
    /// From the sites entry-manager knows (`sites`, may be empty) and the lab spec (`lab`).
    pub fn new(sites: &[(pb::Site, pb::SiteHealth)], lab: Result<&zt_runtime::lab::LabSpec, String>) -> Self {
        let mut form = NewEntryForm::default();
        match lab {
            Ok(spec) => {
                for s in &spec.sites {
                    let alias = s.node_alias();
                    if !form.parents.contains(&alias) {
                        form.parents.push(alias);
                    }
                }
                form.trust_domain = spec.sites.first().map(|s| s.trust_domain.clone());
                if sites.is_empty() {
                    form.sites = spec
                        .sites
                        .iter()
                        .map(|s| SiteChoice { id: s.name.clone(), trust_domain: s.trust_domain.clone() })
                        .collect();
                }
            }
            Err(e) => form.lab_error = Some(e),
        }
        if !sites.is_empty() {
            form.sites = sites
                .iter()
                .map(|(s, _)| SiteChoice { id: s.id.clone(), trust_domain: s.trust_domain.clone() })
                .collect();
        }
        if form.trust_domain.is_none() {
            form.trust_domain = form.sites.first().map(|s| s.trust_domain.clone());
        }
        if form.parents.is_empty() {
            // Without the lab spec: the node alias every lab site's agent has by default.
            for s in &form.sites {
                let spec = zt_runtime::lab::SiteSpec { trust_domain: s.trust_domain.clone(), ..Default::default() };
                if !form.parents.contains(&spec.node_alias()) {
                    form.parents.push(spec.node_alias());
                }
            }
        }
        form
    }
}

/// One labelled field: `control` is the input; the hint and the error are tied to it.
fn field(id: &str, label: &str, hint: &str, control: &str, extra: &str) -> String {
    format!(
        "<div class=\"field\"><label for=\"{id}\">{label}</label>\
         <p class=\"hint\" id=\"{id}-hint\">{hint}</p>{control}{extra}\
         <p id=\"{id}-error\" class=\"field-error\" aria-live=\"polite\"></p></div>\n"
    )
}

/// `GET /entries/new`: the create form above the live list.
pub fn new_entry_page(form: &NewEntryForm, r: Result<&[pb::Entry], &Failure>) -> String {
    let td = form.trust_domain.clone().unwrap_or_else(|| "ztlab.test".into());
    let mut body = String::from("<h1>New entry</h1>\n");
    let _ = write!(
        body,
        "<p class=\"lead\">Register a workload with entry-manager; each chosen site's agent puts it on its SPIRE server \
         (PENDING, then SYNCED). The UI calls entry-manager as <span class=\"mono\">spiffe://{tdq}/ns/demo/sa/frontend\
         </span>, a Developer that may write only under <span class=\"mono\">/demo</span>: least privilege for the UI \
         itself. <a href=\"/entries\">Back to the entries</a>.</p>",
        tdq = esc(&td)
    );
    let _ = write!(
        body,
        "<form id=\"entry-form\" class=\"panel form\" novalidate aria-describedby=\"entry-form-hint\" \
         data-trust-domain=\"{tdq}\" data-path-prefix=\"/demo\" data-min-ttl=\"{MIN_TTL}\" data-max-ttl=\"{MAX_TTL}\" \
         data-max-selectors=\"{MAX_SELECTORS}\">\n\
         <p id=\"entry-form-hint\" class=\"muted\">Every field is checked as you type and again by the frontend \
         and entry-manager; nothing is written unless all of it is valid.</p>\n",
        tdq = esc(&td)
    );
    let described = |id: &str, more: &str| format!("aria-describedby=\"{id}-hint{more} {id}-error\"");
    body.push_str(&field(
        "entry-spiffe-id",
        "SPIFFE ID",
        &format!(
            "spiffe://&lt;trust domain&gt;/&lt;path&gt;, for example <span class=\"mono\">spiffe://{}/demo/my-app</span>. \
             The UI may write only under /demo.",
            esc(&td)
        ),
        &format!(
            "<input id=\"entry-spiffe-id\" name=\"spiffe_id\" type=\"text\" class=\"mono\" required autocomplete=\"off\" \
             spellcheck=\"false\" autocapitalize=\"off\" placeholder=\"spiffe://{}/demo/my-app\" {}>",
            esc(&td),
            described("entry-spiffe-id", " entry-spiffe-id-scope")
        ),
        "<p id=\"entry-spiffe-id-scope\" class=\"field-note\" aria-live=\"polite\"></p>",
    ));
    let default_parent = form.parents.first().cloned().unwrap_or_default();
    let options: String = form.parents.iter().map(|p| format!("<option value=\"{}\"></option>", esc(p))).collect();
    let parent_hint = match &form.lab_error {
        None => "The SPIRE agent that may issue it: by default the first site's node alias (every site's \
                 agent has one)."
            .to_owned(),
        Some(e) => format!(
            "The SPIRE agent that may issue it. The lab spec could not be read ({}), so the default is the \
             node alias a lab site's agent has unless lab.toml changes it.",
            esc(e)
        ),
    };
    body.push_str(&field(
        "entry-parent-id",
        "Parent ID",
        &parent_hint,
        &format!(
            "<input id=\"entry-parent-id\" name=\"parent_id\" type=\"text\" class=\"mono\" required autocomplete=\"off\" \
             spellcheck=\"false\" autocapitalize=\"off\" list=\"entry-parent-choices\" value=\"{}\" {}>\
             <datalist id=\"entry-parent-choices\">{options}</datalist>",
            esc(&default_parent),
            described("entry-parent-id", "")
        ),
        "",
    ));
    body.push_str(&field(
        "entry-selectors",
        "Selectors",
        "One per line, as type:value, for example <span class=\"mono\">unix:uid:4242</span>. A workload gets \
         the SVID only if it matches every selector.",
        &format!(
            "<textarea id=\"entry-selectors\" name=\"selectors\" rows=\"3\" required spellcheck=\"false\" \
             autocapitalize=\"off\" placeholder=\"unix:uid:4242\" {}></textarea>",
            described("entry-selectors", "")
        ),
        "",
    ));
    body.push_str(&field(
        "entry-ttl",
        "X.509 SVID TTL (seconds)",
        &format!("How long each X.509-SVID is valid: a whole number of seconds, {MIN_TTL} to {MAX_TTL}."),
        &format!(
            "<input id=\"entry-ttl\" name=\"x509_svid_ttl\" type=\"text\" inputmode=\"numeric\" required \
             autocomplete=\"off\" value=\"300\" {}>",
            described("entry-ttl", "")
        ),
        "",
    ));
    let mut checks = String::new();
    for s in &form.sites {
        let _ = write!(
            checks,
            "<label for=\"entry-site-{id}\"><input type=\"checkbox\" id=\"entry-site-{id}\" name=\"site_ids\" \
             value=\"{id}\" checked> {id} <span class=\"muted\">({td})</span></label>",
            id = esc(&s.id),
            td = esc(&s.trust_domain)
        );
    }
    if form.sites.is_empty() {
        checks.push_str("<span class=\"muted\">No sites are known yet (entry-manager does not answer).</span>");
    }
    let _ = write!(
        body,
        "<fieldset id=\"entry-sites\" class=\"field\" aria-describedby=\"entry-sites-hint entry-sites-error\">\
         <legend>Sites</legend><p class=\"hint\" id=\"entry-sites-hint\">The SPIRE servers that get the entry.</p>\
         <div class=\"checks\">{checks}</div><p id=\"entry-sites-error\" class=\"field-error\" aria-live=\"polite\"></p>\
         </fieldset>"
    );
    body.push_str(&field(
        "entry-hint",
        "Hint (optional)",
        "A label SPIRE passes to the workload with its SVID, to tell several identities apart.",
        &format!(
            "<input id=\"entry-hint\" name=\"hint\" type=\"text\" autocomplete=\"off\" value=\"demo\" {}>",
            described("entry-hint", "")
        ),
        "",
    ));
    body.push_str(
        "<button id=\"entry-create\" type=\"submit\" class=\"primary\">Create entry</button>\n\
         <p id=\"entry-form-status\" role=\"status\" aria-live=\"polite\"></p>\n</form>\n\
         <noscript><p class=\"error-box\">This form needs JavaScript.</p></noscript>\n<h2>Entries</h2>\n",
    );
    body.push_str(&live_line("The list updates by itself: a new entry turns from PENDING to SYNCED at each site."));
    let rows = rows_or_error(&mut body, r);
    body.push_str("</div>\n");
    body.push_str(&entry_list(&rows));
    body.push_str(&format!("<script>{FORM_JS}</script>"));
    layout("New entry", "entries", &body)
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

fn audit_row(e: &pb::AuditEvent) -> String {
    let v = audit_json(e);
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    let at = s("at");
    let what = match v["spiffe_id"].as_str() {
        Some(id) => esc(id),
        None => format!("<span class=\"muted\">{}</span>", esc(&s("resource"))),
    };
    format!(
        "<tr data-action=\"{action}\" data-id=\"{id}\"><td class=\"at\"><time datetime=\"{at}\">{at}</time></td>\
         <td class=\"actor mono\">{actor}</td><td class=\"action mono\">{action}</td><td class=\"spiffe mono\">{what}</td>\
         <td class=\"outcome\"><span class=\"badge {class}\">{outcome}</span> <span class=\"muted\">{detail}</span></td></tr>",
        action = esc(&e.action),
        id = e.id,
        at = esc(&at),
        actor = esc(&e.actor),
        class = esc(&s("class")),
        outcome = esc(&s("outcome")),
        detail = esc(&s("detail")),
    )
}

/// `GET /entries/audit`: entry-manager's audit trail (of entry `entry`, if given), newest first.
pub fn audit_page(entry: Option<&str>, r: Result<&[pb::AuditEvent], &Failure>) -> String {
    let mut body = String::from("<h1>Audit history</h1>\n");
    body.push_str(&live_line(
        "Every change entry-manager committed, newest first: who made it (a SPIFFE ID, an OIDC user or an API key), \
         what, and to which SPIFFE ID. Each row is written in the same transaction as its change; a refused call \
         changes nothing and leaves no row (entry-manager logs it as \"request refused\").",
    ));
    let rows = match r {
        Ok(list) => list.iter().map(audit_row).collect::<String>(),
        Err(f) => {
            body.push_str(&error_box(&f.what, &f.todo));
            String::new()
        }
    };
    body.push_str("</div>\n<p class=\"actions-bar\"><a class=\"button secondary\" href=\"/entries\">Entries</a>");
    if let Some(id) = entry {
        let _ = write!(
            body,
            "<span>History of entry <span class=\"mono\">{}</span>.</span> <a href=\"/entries/audit\">Show every \
             change</a>",
            esc(id)
        );
    }
    let _ = write!(
        body,
        "</p>\n<table id=\"audit\" aria-label=\"Audit history\" data-entry=\"{entry}\"><thead><tr>\
         <th scope=\"col\">Time (UTC)</th><th scope=\"col\">Actor</th><th scope=\"col\">Action</th>\
         <th scope=\"col\">SPIFFE ID</th><th scope=\"col\">Outcome</th></tr></thead>\
         <tbody id=\"audit-rows\">{rows}</tbody></table>\n{ENTRY_CSS}<script>{AUDIT_JS}</script>",
        entry = esc(entry.unwrap_or_default()),
    );
    layout("Audit history", "entries", &body)
}

/// `GET /sites`: each site's health, or the error box.
pub fn sites_page(r: Result<&[(pb::Site, pb::SiteHealth)], &Failure>) -> String {
    let mut body = String::from("<h1>Sites</h1>\n");
    body.push_str(&live_line("Each site's agent, how far behind it is, and its entries by state (read-only)."));
    let rows = match r {
        Ok(list) => list.iter().map(|(s, h)| site_row(s, h)).collect::<String>(),
        Err(f) => {
            body.push_str(&error_box(&f.what, &f.todo));
            String::new()
        }
    };
    let _ = write!(
        body,
        "</div>\n<table aria-label=\"Sites\"><thead><tr><th scope=\"col\">Site</th><th scope=\"col\">Trust domain</th>\
         <th scope=\"col\">Agent</th><th scope=\"col\">Last contact</th><th scope=\"col\">Lag</th>\
         <th scope=\"col\">Synced</th><th scope=\"col\">Pending</th><th scope=\"col\">Failed</th>\
         <th scope=\"col\">Unmanaged</th></tr></thead>\
         <tbody id=\"rows\">{rows}</tbody></table>\n<script>var ZT_PAGE = \"sites\";{JS}</script>"
    );
    layout("Sites", "sites", &body)
}

const JS: &str = r#"
(function () {
  "use strict";
  var tbody = document.getElementById("rows");
  var errorBox = document.getElementById("error");
  var live = document.getElementById("live");
  var COLS = ZT_PAGE === "entries"
    ? ["spiffe mono", "selectors mono", "revision", "sites", "actions"]
    : ["site", "td mono", "agent", "contact", "lag", "synced", "pending", "failed", "unmanaged"];
  var KEY = ZT_PAGE === "entries" ? "data-id" : "data-site";
  var el = zt.el;
  function badge(state) {
    switch (state) {
      case "SYNCED": return ["ok", "\u2713 SYNCED"];
      case "PENDING": return ["warn", "\u2026 PENDING"];
      case "FAILED": return ["bad", "\u2717 FAILED"];
      case "DELETING": return ["muted", "\u2212 DELETING"];
      default: return ["muted", state];
    }
  }
  function rowFor(key) { return zt.row(tbody, KEY, key, COLS); }
  function cell(tr, cls) { return tr.querySelector("." + cls.split(" ")[0]); }
  function actions(tr, e) {
    var td = cell(tr, "actions");
    var btn = td.querySelector("button.entry-delete");
    var link = td.querySelector("a.history");
    if (!btn) {
      btn = el("button", "entry-delete danger small", "Delete");
      btn.type = "button";
      td.appendChild(btn);
      td.appendChild(document.createTextNode(" "));
    }
    if (!link) { link = el("a", "history", "History"); td.appendChild(link); }
    btn.setAttribute("data-id", e.id);
    btn.setAttribute("data-spiffe-id", e.spiffe_id);
    btn.setAttribute("aria-label", "Delete " + e.spiffe_id);
    var deleting = tr.getAttribute("data-deleting") === "1" ||
      (e.sites.length > 0 && e.sites.every(function (s) { return s.state === "DELETING"; }));
    btn.disabled = deleting;
    btn.textContent = deleting ? "Deleting\u2026" : "Delete";
    link.href = "/entries/audit?entry=" + encodeURIComponent(e.id);
  }
  function updateEntry(e) {
    var tr = rowFor(e.id);
    tr.setAttribute("data-spiffe-id", e.spiffe_id);
    cell(tr, "spiffe").textContent = e.spiffe_id;
    var sel = cell(tr, "selectors");
    sel.textContent = "";
    if (!e.selectors.length) { sel.textContent = "\u2014"; }
    e.selectors.forEach(function (s, i) { if (i) { sel.appendChild(el("br")); } sel.appendChild(document.createTextNode(s)); });
    cell(tr, "revision").textContent = String(e.revision);
    var sites = cell(tr, "sites");
    sites.textContent = "";
    e.sites.forEach(function (s) {
      var b = badge(s.state);
      var span = el("span", "badge " + b[0], s.site_id + ": " + b[1]);
      span.setAttribute("data-site", s.site_id);
      span.setAttribute("data-state", s.state);
      if (s.last_error) { span.title = s.last_error; }
      sites.appendChild(span);
      sites.appendChild(document.createTextNode(" "));
    });
    actions(tr, e);
    return e.id;
  }
  function updateSite(s) {
    var tr = rowFor(s.site_id);
    var name = cell(tr, "site");
    name.textContent = "";
    name.appendChild(el("strong", null, s.site_id));
    cell(tr, "td").textContent = s.trust_domain;
    var agent = cell(tr, "agent");
    agent.textContent = "";
    agent.appendChild(el("span", "badge " + (s.agent_connected ? "ok" : "bad"), s.agent_label));
    cell(tr, "contact").textContent = s.last_contact;
    cell(tr, "lag").textContent = Number(s.sync_lag_seconds).toFixed(1) + " s";
    cell(tr, "synced").textContent = String(s.synced);
    cell(tr, "pending").textContent = String(s.pending);
    cell(tr, "failed").textContent = String(s.failed);
    var un = cell(tr, "unmanaged");
    un.textContent = String(s.unmanaged_entries);
    if (s.unmanaged_entry_ids && s.unmanaged_entry_ids.length) {
      un.appendChild(document.createTextNode(" "));
      un.appendChild(el("span", "mono muted", "(" + s.unmanaged_entry_ids.join(", ") + ")"));
    }
    return s.site_id;
  }
  function showError(what, todo) { zt.errorBox(errorBox, what, todo); }
  if (ZT_PAGE === "entries") { window.ztEntries = { update: updateEntry }; }
  zt.follow("/events/entries", live, function (msg) {
    if (msg.ok) {
      showError(null);
      var keep = {};
      (ZT_PAGE === "entries" ? msg.entries.map(updateEntry) : msg.sites.map(updateSite))
        .forEach(function (k) { keep[k] = true; });
      tbody.querySelectorAll("tr").forEach(function (tr) { if (!keep[tr.getAttribute(KEY)]) { tr.remove(); } });
    } else {
      showError(msg.error, msg.todo);
    }
  });
})();
"#;

/// The Delete buttons and their confirmation dialog (entries pages).
const DELETE_JS: &str = r##"
(function () {
  "use strict";
  var dialog = document.getElementById("confirm-delete");
  var idText = document.getElementById("confirm-delete-id");
  var yes = document.getElementById("confirm-delete-yes");
  var no = document.getElementById("confirm-delete-no");
  var status = document.getElementById("entries-status");
  var tbody = document.getElementById("rows");
  var target = null;
  var opener = null;
  function say(text, cls) { status.className = cls || ""; status.textContent = text; }
  function rowOf(id) {
    var rows = tbody.querySelectorAll("tr");
    for (var i = 0; i < rows.length; i++) { if (rows[i].getAttribute("data-id") === id) { return rows[i]; } }
    return null;
  }
  function button(tr) { return tr ? tr.querySelector("button.entry-delete") : null; }
  function open(btn) {
    target = { id: btn.getAttribute("data-id"), spiffe: btn.getAttribute("data-spiffe-id") };
    opener = btn;
    idText.textContent = target.spiffe;
    if (typeof dialog.showModal === "function") { dialog.showModal(); } else { dialog.setAttribute("open", ""); }
    no.focus();
  }
  function close() {
    if (typeof dialog.close === "function" && dialog.open) { dialog.close(); } else { dialog.removeAttribute("open"); }
  }
  dialog.addEventListener("close", function () {
    var back = opener;
    target = null;
    opener = null;
    if (back && document.body.contains(back) && !back.disabled) { back.focus(); } else { status.focus(); }
  });
  dialog.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape" || ev.key === "Esc") { ev.preventDefault(); close(); }
  });
  no.addEventListener("click", close);
  yes.addEventListener("click", function () {
    var t = target;
    if (!t) { close(); return; }
    var tr = rowOf(t.id);
    if (tr) { tr.setAttribute("data-deleting", "1"); }
    var b = button(tr);
    if (b) { b.disabled = true; b.textContent = "Deleting\u2026"; }
    say("Deleting " + t.spiffe + "\u2026", "");
    close();
    fetch("/api/entries/" + encodeURIComponent(t.id), {
      method: "DELETE", credentials: "same-origin", headers: { "accept": "application/json" }
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (body) { return { status: r.status, body: body }; });
    }).then(function (res) {
      var row = rowOf(t.id);
      if (res.status === 200 && res.body.ok) {
        if (res.body.entry && window.ztEntries) { window.ztEntries.update(res.body.entry); }
        say("Deleting " + t.spiffe + ": DELETING at every site until each SPIRE server has removed it; then the row goes.", "ok");
        return;
      }
      if (row) { row.removeAttribute("data-deleting"); }
      var rb = button(row);
      if (rb) { rb.disabled = false; rb.textContent = "Delete"; }
      if (res.status === 401) { say("Not deleted: your session has ended. Reload the page to sign in again.", "bad"); return; }
      say("Not deleted: " + t.spiffe + ": " + (res.body.error || ("HTTP " + res.status)) +
        (res.body.todo ? " " + res.body.todo : ""), "bad");
    }).catch(function (e) {
      var row = rowOf(t.id);
      if (row) { row.removeAttribute("data-deleting"); }
      var rb = button(row);
      if (rb) { rb.disabled = false; rb.textContent = "Delete"; }
      say("Not deleted: the frontend does not answer (" + e + ").", "bad");
    });
  });
  tbody.addEventListener("click", function (ev) {
    var b = ev.target.closest ? ev.target.closest("button.entry-delete") : null;
    if (b && !b.disabled) { open(b); }
  });
})();
"##;

/// The create form: validation as you type, submit as JSON, server errors next to their field.
const FORM_JS: &str = r##"
(function () {
  "use strict";
  var form = document.getElementById("entry-form");
  if (!form) { return; }
  var TD = form.getAttribute("data-trust-domain") || "";
  var PREFIX = form.getAttribute("data-path-prefix") || "/demo";
  var MIN_TTL = Number(form.getAttribute("data-min-ttl"));
  var MAX_TTL = Number(form.getAttribute("data-max-ttl"));
  var MAX_SELECTORS = Number(form.getAttribute("data-max-selectors"));
  var status = document.getElementById("entry-form-status");
  var submit = document.getElementById("entry-create");
  var FIELDS = {
    spiffe_id: "entry-spiffe-id", parent_id: "entry-parent-id", selectors: "entry-selectors",
    x509_svid_ttl: "entry-ttl", site_ids: "entry-sites", hint: "entry-hint"
  };
  function $(id) { return document.getElementById(id); }
  function say(text, cls) { status.className = cls || ""; status.textContent = text; }
  function setError(id, msg) {
    var input = $(id);
    $(id + "-error").textContent = msg || "";
    if (msg) { input.setAttribute("aria-invalid", "true"); } else { input.removeAttribute("aria-invalid"); }
  }
  // A SPIFFE ID per the SPIFFE spec: "" when valid, else what is wrong.
  function idProblem(v) {
    if (!v) { return "Required: spiffe://<trust domain>/<path>, for example spiffe://" + (TD || "ztlab.test") + PREFIX + "/my-app."; }
    if (v.length > 2048) { return "Too long: at most 2048 characters."; }
    if (v.indexOf("spiffe://") !== 0) { return "Must start with spiffe:// (lower case)."; }
    if (v.indexOf("?") >= 0 || v.indexOf("#") >= 0) { return "A SPIFFE ID has no query (?) or fragment (#)."; }
    var rest = v.slice(9);
    var slash = rest.indexOf("/");
    var td = slash < 0 ? rest : rest.slice(0, slash);
    var path = slash < 0 ? "" : rest.slice(slash);
    if (!td) { return "The trust domain is missing: spiffe://<trust domain>/<path>."; }
    if (!/^[a-z0-9._-]+$/.test(td)) { return "The trust domain \u201c" + td + "\u201d may only have lower-case letters, digits, '.', '-' and '_'."; }
    if (!path || path === "/") { return "A path is needed after the trust domain, for example spiffe://" + td + PREFIX + "/my-app."; }
    if (path.charAt(path.length - 1) === "/") { return "No trailing slash."; }
    var segs = path.slice(1).split("/");
    for (var i = 0; i < segs.length; i++) {
      var s = segs[i];
      if (s === "") { return "No empty path segments (//)."; }
      if (s === "." || s === "..") { return "No '.' or '..' path segments."; }
      if (!/^[A-Za-z0-9._-]+$/.test(s)) { return "The path segment \u201c" + s + "\u201d may only have letters, digits, '.', '-' and '_'."; }
    }
    return "";
  }
  function trustDomain(v) { return v.slice(9).split("/")[0]; }
  function pathOf(v) { var r = v.slice(9); var i = r.indexOf("/"); return i < 0 ? "" : r.slice(i); }
  var checks = {
    "entry-spiffe-id": function () {
      var v = $("entry-spiffe-id").value.trim();
      var p = idProblem(v);
      var note = $("entry-spiffe-id-scope");
      note.className = "field-note";
      note.textContent = "";
      if (!p) {
        var path = pathOf(v);
        if (TD && trustDomain(v) !== TD) {
          note.className = "field-note warn";
          note.textContent = "\u26a0 The lab's trust domain is " + TD + ": entry-manager will refuse another one.";
        } else if (path === PREFIX || path.indexOf(PREFIX + "/") === 0) {
          note.className = "field-note ok";
          note.textContent = "\u2713 Under " + PREFIX + ", which the UI may write.";
        } else {
          note.className = "field-note warn";
          note.textContent = "\u26a0 Outside " + PREFIX + ": the UI's own identity is a Developer limited to " + PREFIX +
            ", so entry-manager will refuse this (PermissionDenied). Try it to see.";
        }
      }
      return p;
    },
    "entry-parent-id": function () {
      var v = $("entry-parent-id").value.trim();
      var p = idProblem(v);
      if (p) { return p; }
      var id = $("entry-spiffe-id").value.trim();
      if (!idProblem(id) && trustDomain(id) !== trustDomain(v)) {
        return "Must be in the entry's trust domain " + trustDomain(id) + ".";
      }
      if (v === id) {
        return "Is the entry's own SPIFFE ID: an entry cannot be its own parent (use the agent's node alias).";
      }
      return "";
    },
    "entry-selectors": function () {
      var lines = $("entry-selectors").value.split("\n");
      var n = 0;
      var seen = {};
      for (var i = 0; i < lines.length; i++) {
        var line = lines[i].trim();
        if (!line) { continue; }
        n++;
        var c = line.indexOf(":");
        var where = "Line " + (i + 1) + ": ";
        if (c < 0) { return where + "\u201c" + line + "\u201d is not type:value (for example unix:uid:4242)."; }
        var t = line.slice(0, c);
        if (!t) { return where + "the type before ':' is empty (for example unix)."; }
        if (!/^[A-Za-z0-9_-]+$/.test(t)) { return where + "the type \u201c" + t + "\u201d may only have letters, digits, _ and -."; }
        if (!line.slice(c + 1)) { return where + "the value after ':' is empty (for example uid:4242)."; }
        if (Object.prototype.hasOwnProperty.call(seen, line)) { return where + "duplicate of line " + seen[line] + "."; }
        seen[line] = i + 1;
      }
      if (!n) { return "Enter at least one selector, one per line, as type:value (for example unix:uid:4242)."; }
      if (n > MAX_SELECTORS) { return "At most " + MAX_SELECTORS + " selectors."; }
      return "";
    },
    "entry-ttl": function () {
      var v = $("entry-ttl").value.trim();
      if (!v) { return "Required: a whole number of seconds, for example 300."; }
      if (!/^[0-9]+$/.test(v)) { return "\u201c" + v + "\u201d is not a whole number of seconds (digits only)."; }
      var n = Number(v);
      if (n <= 0) { return "Must be more than 0 seconds."; }
      if (n < MIN_TTL || n > MAX_TTL) { return n + " s is out of range: use " + MIN_TTL + " to " + MAX_TTL + " seconds."; }
      return "";
    },
    "entry-sites": function () {
      return form.querySelectorAll("input[name=site_ids]:checked").length ? "" : "Choose at least one site.";
    },
    "entry-hint": function () {
      var v = $("entry-hint").value;
      return v.length > 1024 ? "At most 1024 characters." : "";
    }
  };
  function check(id) { var p = checks[id](); setError(id, p); return p; }
  Object.keys(checks).forEach(function (id) {
    var input = $(id);
    input.addEventListener(id === "entry-sites" ? "change" : "input", function () {
      check(id);
      if (id === "entry-spiffe-id" && $("entry-parent-id").value) { check("entry-parent-id"); }
    });
    if (id !== "entry-sites") { input.addEventListener("blur", function () { if (input.value) { check(id); } }); }
  });
  function highlight(id) {
    var rows = document.querySelectorAll("#rows tr");
    for (var i = 0; i < rows.length; i++) {
      if (rows[i].getAttribute("data-id") === id) { rows[i].classList.add("new"); }
    }
  }
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var first = null;
    Object.keys(checks).forEach(function (id) { if (check(id) && !first) { first = id; } });
    if (first) {
      say("Not sent: fix the marked fields first.", "bad");
      var f = $(first);
      (f.tagName === "FIELDSET" ? f.querySelector("input") || f : f).focus();
      return;
    }
    var body = {
      spiffe_id: $("entry-spiffe-id").value.trim(),
      parent_id: $("entry-parent-id").value.trim(),
      selectors: $("entry-selectors").value.split("\n").map(function (l) { return l.trim(); }),
      x509_svid_ttl: $("entry-ttl").value.trim(),
      site_ids: Array.prototype.map.call(form.querySelectorAll("input[name=site_ids]:checked"), function (c) { return c.value; }),
      hint: $("entry-hint").value
    };
    submit.disabled = true;
    say("Creating " + body.spiffe_id + "\u2026", "");
    fetch("/api/entries", {
      method: "POST", credentials: "same-origin",
      headers: { "content-type": "application/json", "accept": "application/json" },
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (b) { return { status: r.status, body: b }; });
    }).then(function (res) {
      submit.disabled = false;
      if (res.status === 201 && res.body.entry) {
        var e = res.body.entry;
        if (window.ztEntries) { window.ztEntries.update(e); highlight(e.id); }
        say("Created " + e.spiffe_id + ": PENDING at " + e.sites.map(function (s) { return s.site_id; }).join(", ") +
          "; it turns SYNCED in the list below as each site's agent syncs it.", "ok");
        return;
      }
      var errors = res.body.errors || (res.body.error ? [{ field: res.body.field, error: res.body.error }] : []);
      var focus = null;
      errors.forEach(function (e) {
        var id = FIELDS[e.field];
        if (id) { setError(id, e.error); if (!focus) { focus = id; } }
      });
      if (res.status === 401) {
        say("Not created: your session has ended. Reload the page to sign in again.", "bad");
      } else {
        say("Not created: " + (res.body.error || ("HTTP " + res.status)) + (res.body.todo ? " " + res.body.todo : ""), "bad");
      }
      if (focus) {
        var f = $(focus);
        (f.tagName === "FIELDSET" ? f.querySelector("input") || f : f).focus();
      }
    }).catch(function (e) {
      submit.disabled = false;
      say("Not created: the frontend does not answer (" + e + ").", "bad");
    });
  });
})();
"##;

/// The audit page: refreshed every 3 seconds from `GET /api/entries/audit`.
const AUDIT_JS: &str = r##"
(function () {
  "use strict";
  var table = document.getElementById("audit");
  var tbody = document.getElementById("audit-rows");
  var live = document.getElementById("live");
  var errorBox = document.getElementById("error");
  var entry = table.getAttribute("data-entry") || "";
  var el = zt.el;
  function row(ev) {
    var tr = el("tr");
    tr.setAttribute("data-action", ev.action);
    tr.setAttribute("data-id", String(ev.id));
    var at = el("td", "at");
    var t = el("time", null, ev.at || "");
    t.setAttribute("datetime", ev.at || "");
    at.appendChild(t);
    tr.appendChild(at);
    tr.appendChild(el("td", "actor mono", ev.actor));
    tr.appendChild(el("td", "action mono", ev.action));
    var sid = el("td", "spiffe mono");
    if (ev.spiffe_id) { sid.textContent = ev.spiffe_id; } else { sid.appendChild(el("span", "muted", ev.resource)); }
    tr.appendChild(sid);
    var out = el("td", "outcome");
    out.appendChild(el("span", "badge " + ev["class"], ev.outcome));
    out.appendChild(document.createTextNode(" "));
    out.appendChild(el("span", "muted", ev.detail));
    tr.appendChild(out);
    return tr;
  }
  function showError(what, todo) { zt.errorBox(errorBox, what, todo); }
  function refresh() {
    var url = "/api/entries/audit" + (entry ? "?entry=" + encodeURIComponent(entry) : "");
    fetch(url, { credentials: "same-origin", headers: { "accept": "application/json" } }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (b) { return { status: r.status, body: b }; });
    }).then(function (res) {
      if (res.body.ok) {
        showError(null);
        var frag = document.createDocumentFragment();
        res.body.events.forEach(function (ev) { frag.appendChild(row(ev)); });
        tbody.textContent = "";
        tbody.appendChild(frag);
        live.className = "ok";
        live.textContent = "Live: updated " + new Date().toLocaleTimeString();
      } else if (res.status === 401) {
        live.className = "bad";
        live.textContent = "Your session has ended: reload the page to sign in again.";
      } else {
        showError(res.body.error || ("HTTP " + res.status), res.body.todo);
      }
    }).catch(function () {
      live.className = "bad";
      live.textContent = "Live updates lost: the frontend does not answer. It retries by itself.";
    });
  }
  live.textContent = "Refreshes every 3 s.";
  setInterval(refresh, 3000);
})();
"##;

/// `POST /api/entries`'s body. Selectors may be a list of `type:value` lines or one text with a
/// line each; the TTL may be a number or a string of digits.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CreateRequest {
    /// The SPIFFE ID.
    pub spiffe_id: String,
    /// The parent ID (an agent's node alias).
    pub parent_id: String,
    /// `type:value` selectors.
    pub selectors: Lines,
    /// The X.509-SVID TTL, seconds.
    pub x509_svid_ttl: Value,
    /// The sites.
    pub site_ids: Vec<String>,
    /// The hint.
    pub hint: String,
}

/// Lines given as a list or as one text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Lines {
    /// One line each.
    List(Vec<String>),
    /// A text with a line each.
    Text(String),
}

impl Default for Lines {
    fn default() -> Self {
        Lines::List(Vec::new())
    }
}

impl Lines {
    fn lines(&self) -> Vec<String> {
        match self {
            Lines::List(v) => v.iter().flat_map(|l| l.split('\n')).map(str::to_owned).collect(),
            Lines::Text(t) => t.split('\n').map(str::to_owned).collect(),
        }
    }
}

/// A problem with one field of the form: the field (as `POST /api/entries` names it) and what
/// is wrong, in words for the page.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// `spiffe_id`, `parent_id`, `selectors`, `x509_svid_ttl`, `site_ids`, `hint` (or `id`).
    pub field: &'static str,
    /// What is wrong.
    pub error: String,
}

fn problem(field: &'static str, error: impl Into<String>) -> Problem {
    Problem { field, error: error.into() }
}

/// The form field of an API field path (`entry.selectors[1].type` → `selectors`); `entry`
/// alone (a duplicate entry) is the SPIFFE ID.
pub fn ui_field(path: &str) -> Option<&'static str> {
    let path = path.strip_prefix("entry.").unwrap_or(path);
    let head = path.split(['.', '[']).next().unwrap_or_default();
    Some(match head {
        "entry" | "spiffe_id" => "spiffe_id",
        "parent_id" => "parent_id",
        "selectors" => "selectors",
        "x509_svid_ttl" => "x509_svid_ttl",
        "site_ids" => "site_ids",
        "hint" => "hint",
        "id" => "id",
        _ => return None,
    })
}

fn check_id(field: &'static str, value: &str) -> Result<zt_identity::SpiffeId, Problem> {
    if value.is_empty() {
        return Err(problem(
            field,
            "is required: spiffe://<trust domain>/<path>, for example spiffe://ztlab.test/demo/my-app",
        ));
    }
    let id = validate::spiffe_id(field, value).map_err(|e| problem(field, e.message))?;
    if id.path().is_empty() {
        return Err(problem(
            field,
            format!("{value:?} needs a path after the trust domain, for example {value}/demo/my-app"),
        ));
    }
    Ok(id)
}

fn check_selectors(lines: &[String]) -> Result<Vec<pb::Selector>, Problem> {
    let mut out: Vec<pb::Selector> = Vec::new();
    let mut line_of = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        // The API's own parser (the CLI's too), with the line it is on.
        let s = validate::selector_str("selectors", line).map_err(|e| {
            let what = e.field.trim_start_matches("selectors").trim_start_matches('.');
            let what = if what.is_empty() { String::new() } else { format!("{what} ") };
            problem("selectors", format!("line {}: {what}{}", i + 1, e.message))
        })?;
        // The API refuses a repeated selector; say which lines, as the page does.
        if let Some(first) = out.iter().position(|o| *o == s) {
            return Err(problem("selectors", format!("line {}: duplicate of line {}", i + 1, line_of[first])));
        }
        out.push(s);
        line_of.push(i + 1);
    }
    if out.is_empty() {
        return Err(problem(
            "selectors",
            "enter at least one selector, one per line, as type:value (for example unix:uid:4242)",
        ));
    }
    if out.len() > MAX_SELECTORS {
        return Err(problem("selectors", format!("at most {MAX_SELECTORS} selectors, not {}", out.len())));
    }
    Ok(out)
}

fn check_ttl(v: &Value) -> Result<i32, Problem> {
    let text = match v {
        Value::Null => String::new(),
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    };
    if text.is_empty() {
        return Err(problem("x509_svid_ttl", "is required: a whole number of seconds, for example 300"));
    }
    if !text.chars().all(|c| c.is_ascii_digit()) {
        return Err(problem("x509_svid_ttl", format!("{text:?} is not a whole number of seconds (digits only)")));
    }
    let n: i64 = text.parse().unwrap_or(i64::MAX);
    if n == 0 {
        return Err(problem("x509_svid_ttl", "must be more than 0 seconds"));
    }
    match i32::try_from(n) {
        Ok(n) if (MIN_TTL..=MAX_TTL).contains(&n) => Ok(n),
        _ => Err(problem("x509_svid_ttl", format!("{text} s is out of range: use {MIN_TTL} to {MAX_TTL} seconds"))),
    }
}

/// Checks the create form on the server (as the page did while typing): every problem, each
/// naming its field, or the entry to send to entry-manager. The Developer's path prefix is
/// left to entry-manager, whose refusal is the point to show.
pub fn validate_create(req: &CreateRequest) -> Result<pb::EntrySpec, Vec<Problem>> {
    let mut problems = Vec::new();
    let id = check_id("spiffe_id", req.spiffe_id.trim()).map_err(|p| problems.push(p)).ok();
    let parent = check_id("parent_id", req.parent_id.trim()).map_err(|p| problems.push(p)).ok();
    if let (Some(id), Some(parent)) = (&id, &parent)
        && id.trust_domain_name() != parent.trust_domain_name()
    {
        problems.push(problem(
            "parent_id",
            format!("{parent} is not in the entry's trust domain {}", id.trust_domain_name()),
        ));
    } else if let (Some(id), Some(parent)) = (&id, &parent)
        && id == parent
    {
        problems.push(problem("parent_id", "is the entry's own SPIFFE ID: an entry cannot be its own parent"));
    }
    let selectors = check_selectors(&req.selectors.lines()).map_err(|p| problems.push(p)).ok();
    let ttl = check_ttl(&req.x509_svid_ttl).map_err(|p| problems.push(p)).ok();
    let mut sites: Vec<String> = Vec::new();
    if req.site_ids.is_empty() {
        problems.push(problem("site_ids", "choose at least one site"));
    }
    for s in &req.site_ids {
        match validate::site_id("site_ids", s) {
            Ok(s) if !sites.contains(&s) => sites.push(s),
            Ok(_) => {}
            Err(e) => {
                problems.push(problem("site_ids", e.message));
                break;
            }
        }
    }
    if req.hint.len() > 1024 || req.hint.chars().any(char::is_control) {
        problems.push(problem("hint", "must be at most 1024 printable characters"));
    }
    let (Some(id), Some(parent), Some(selectors), Some(ttl), true) = (id, parent, selectors, ttl, problems.is_empty())
    else {
        return Err(problems);
    };
    let spec = pb::EntrySpec {
        spiffe_id: id.to_string(),
        parent_id: parent.to_string(),
        selectors,
        x509_svid_ttl: ttl,
        jwt_svid_ttl: 0,
        dns_names: Vec::new(),
        admin: false,
        downstream: false,
        hint: req.hint.clone(),
        site_ids: sites,
    };
    // The API's own rules, so that the page hears of anything they add before entry-manager does.
    validate::ValidEntry::parse("entry", &spec)
        .map(|v| v.spec().clone())
        .map_err(|e| vec![problem(ui_field(&e.field).unwrap_or("spiffe_id"), format!("{}: {}", e.field, e.message))])
}

/// A JSON error answer.
fn json_error(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

fn problems_response(problems: &[Problem]) -> Response {
    let first = problems.first();
    json_error(
        StatusCode::BAD_REQUEST,
        json!({
            "error": first.map(|p| p.error.as_str()).unwrap_or("invalid input"),
            "field": first.map(|p| p.field),
            "errors": problems,
        }),
    )
}

/// An entry-manager refusal (or failure) as the page's `{"error","field"}` with an HTTP status:
/// InvalidArgument 400, PermissionDenied 403, NotFound 404, AlreadyExists (and the other
/// conflicts) 409, entry-manager down 502/504. A status whose `BadRequest` details name a field
/// puts the error next to that field; `fallback` is the field otherwise (for deletes: `id`).
pub fn rpc_error(url: &str, s: &tonic::Status, fallback: Option<&'static str>) -> (StatusCode, Value) {
    use tonic::Code;
    let status = match s.code() {
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::PermissionDenied | Code::Unauthenticated => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted | Code::FailedPrecondition => StatusCode::CONFLICT,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    };
    let field = validate::FieldError::from_status(s).and_then(|f| ui_field(&f.field));
    let answered = matches!(
        s.code(),
        Code::InvalidArgument
            | Code::OutOfRange
            | Code::PermissionDenied
            | Code::NotFound
            | Code::AlreadyExists
            | Code::Aborted
            | Code::FailedPrecondition
    );
    let body = if answered && (field.is_some() || s.code() != Code::PermissionDenied) {
        json!({
            "error": format!("{:?} from entry-manager: {}", s.code(), s.message()),
            "field": field.or(fallback),
            "code": format!("{:?}", s.code()),
        })
    } else {
        // Not about the input: the frontend itself is refused, or entry-manager is down.
        let f = Failure::from_status(url, s);
        json!({"error": f.what, "todo": f.todo, "field": field, "code": format!("{:?}", s.code())})
    };
    (status, body)
}

/// The trace ID of the UI request behind a write. entry-manager stores it with the audit row,
/// and the frontend's log lines of that request carry it with the signed-in user as `actor`, so
/// an audit row leads back to the person at the UI.
type Trace = Extension<zt_service::request::TraceId>;

fn no_entry_manager() -> Response {
    let f = Failure::no_svid();
    json_error(StatusCode::SERVICE_UNAVAILABLE, json!({"error": f.what, "todo": f.todo, "field": null}))
}

/// `POST /api/entries`.
async fn create_entry(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Extension(trace): Trace,
    body: Bytes,
) -> Response {
    let req: CreateRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                json!({"error": format!("the body is not the form's JSON: {e}"), "field": null}),
            );
        }
    };
    let spec = match validate_create(&req) {
        Ok(spec) => spec,
        Err(problems) => {
            tracing::info!(user = %session.user, spiffe_id = %req.spiffe_id, ?problems, "entry not created: invalid input");
            return problems_response(&problems);
        }
    };
    let Some(em) = state.entry_manager.clone() else {
        return no_entry_manager();
    };
    match em.create(spec.clone(), &trace.0).await {
        Ok(entry) => {
            tracing::info!(user = %session.user, spiffe_id = %entry.spiffe_id, entry_id = %entry.id,
                sites = ?entry.site_ids, "entry created via the UI");
            metrics::counter!("frontend_entry_writes_total", "action" => "create", "outcome" => "ok").increment(1);
            (StatusCode::CREATED, Json(json!({"ok": true, "entry": entry_json(&entry)}))).into_response()
        }
        Err(s) => {
            tracing::warn!(user = %session.user, spiffe_id = %spec.spiffe_id, code = ?s.code(),
                reason = %s.message(), "entry-manager refused the UI's create");
            metrics::counter!("frontend_entry_writes_total", "action" => "create", "outcome" => format!("{:?}", s.code()))
                .increment(1);
            let (status, body) = rpc_error(em.url(), &s, None);
            json_error(status, body)
        }
    }
}

/// An entry ID as entry-manager makes them (a UUID), so that nothing else is passed on.
fn valid_entry_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// `DELETE /api/entries/{id}`.
async fn delete_entry(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Extension(trace): Trace,
    Path(id): Path<String>,
) -> Response {
    if !valid_entry_id(&id) {
        return json_error(
            StatusCode::BAD_REQUEST,
            json!({"error": format!("{id:?} is not an entry ID (a UUID)"), "field": "id"}),
        );
    }
    let Some(em) = state.entry_manager.clone() else {
        return no_entry_manager();
    };
    match em.delete(&id, &trace.0).await {
        Ok(entry) => {
            tracing::info!(user = %session.user, spiffe_id = %entry.spiffe_id, entry_id = %id,
                "entry deleted via the UI (DELETING at every site)");
            metrics::counter!("frontend_entry_writes_total", "action" => "delete", "outcome" => "ok").increment(1);
            Json(json!({"ok": true, "entry": entry_json(&entry)})).into_response()
        }
        Err(s) => {
            tracing::warn!(user = %session.user, entry_id = %id, code = ?s.code(),
                reason = %s.message(), "entry-manager refused the UI's delete");
            metrics::counter!("frontend_entry_writes_total", "action" => "delete", "outcome" => format!("{:?}", s.code()))
                .increment(1);
            let (status, body) = rpc_error(em.url(), &s, Some("id"));
            json_error(status, body)
        }
    }
}

/// `?entry=<id>` of the audit views.
#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    /// Only this entry's events.
    #[serde(default)]
    pub entry: Option<String>,
}

impl AuditQuery {
    /// The entry asked for, or why it is not an entry ID.
    fn entry(&self) -> Result<Option<&str>, String> {
        match self.entry.as_deref().filter(|e| !e.is_empty()) {
            Some(e) if !valid_entry_id(e) => Err(format!("{e:?} is not an entry ID (a UUID)")),
            other => Ok(other),
        }
    }
}

/// How many audit events the views show.
const AUDIT_PAGE: i32 = 200;

async fn audit_events(state: &AppState, entry: Option<&str>) -> Result<Vec<pb::AuditEvent>, Failure> {
    let Some(em) = state.entry_manager.clone() else {
        return Err(Failure::no_svid());
    };
    em.audit(entry.unwrap_or_default(), AUDIT_PAGE).await.map_err(|s| Failure::from_status(em.url(), &s))
}

/// `GET /entries/audit`.
async fn audit_view(State(state): State<AppState>, Query(q): Query<AuditQuery>) -> Response {
    let entry = match q.entry() {
        Ok(e) => e,
        Err(_) => {
            let f = Failure {
                what: "the entry in the address is not an entry ID".into(),
                todo: "Open the history from an entry's History link on /entries.".into(),
            };
            return html(StatusCode::BAD_REQUEST, audit_page(None, Err(&f)));
        }
    };
    let events = audit_events(&state, entry).await;
    html(StatusCode::OK, audit_page(entry, events.as_deref()))
}

/// `GET /api/entries/audit`.
async fn audit_api(State(state): State<AppState>, Query(q): Query<AuditQuery>) -> Response {
    let entry = match q.entry() {
        Ok(e) => e,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, json!({"error": e, "field": "entry"})),
    };
    match audit_events(&state, entry).await {
        Ok(events) => {
            Json(json!({"ok": true, "events": events.iter().map(audit_json).collect::<Vec<_>>()})).into_response()
        }
        Err(f) => json_error(StatusCode::BAD_GATEWAY, json!({"ok": false, "error": f.what, "todo": f.todo})),
    }
}

/// `GET /entries/new`.
async fn new_entry(State(state): State<AppState>) -> Response {
    let snap = crate::entry_snapshot(&state).await;
    let lab = zt_runtime::lab::Lab::open(&state.state_dir).map_err(|e| e.to_string());
    let sites = snap.as_ref().map(|s| s.sites.as_slice()).unwrap_or_default();
    let form = NewEntryForm::new(sites, lab.as_ref().map(|l| l.spec()).map_err(Clone::clone));
    html(StatusCode::OK, new_entry_page(&form, snap.as_ref().map(|s| s.entries.as_slice())))
}

/// The entry pages' actions: the create form, create, delete and the audit history (merged
/// into the UI router behind the login).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/entries/new", get(new_entry))
        .route("/entries/audit", get(audit_view))
        .route("/api/entries", post(create_entry))
        .route("/api/entries/audit", get(audit_api))
        .route("/api/entries/{id}", delete(delete_entry))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::body::Body;
    use axum::http::{Request, header};
    use http_body_util::BodyExt as _;
    use tonic::Code;
    use tower::ServiceExt as _;
    use zt_entry_api::validate::FieldError;

    use super::*;

    fn good() -> CreateRequest {
        CreateRequest {
            spiffe_id: "spiffe://ztlab.test/demo/app".into(),
            parent_id: "spiffe://ztlab.test/ztlab/nodes/local".into(),
            selectors: Lines::Text("unix:uid:4242\n\n unix:path:/opt/app \n".into()),
            x509_svid_ttl: json!("300"),
            site_ids: vec!["b".into(), "a".into()],
            hint: "demo".into(),
        }
    }

    fn field_of(req: &CreateRequest) -> Vec<&'static str> {
        validate_create(req).expect_err("invalid").iter().map(|p| p.field).collect()
    }

    #[test]
    fn a_good_form_becomes_a_normalized_spec() {
        let spec = validate_create(&good()).expect("valid");
        assert_eq!(spec.spiffe_id, "spiffe://ztlab.test/demo/app");
        assert_eq!(spec.selectors.len(), 2);
        assert_eq!(spec.x509_svid_ttl, 300);
        assert_eq!(spec.site_ids, ["a", "b"]);
        let mut r = good();
        r.x509_svid_ttl = json!(120);
        r.selectors = Lines::List(vec!["unix:uid:1".into(), "".into()]);
        assert_eq!(validate_create(&r).expect("valid").x509_svid_ttl, 120);
        // Outside /demo is entry-manager's to refuse (PermissionDenied), not the form's.
        r.spiffe_id = "spiffe://ztlab.test/ns/other".into();
        assert!(validate_create(&r).is_ok());
    }

    #[test]
    fn bad_spiffe_ids_name_the_field() {
        for bad in [
            "",
            "http://ztlab.test/demo/x",
            "spiffe://ZTLAB.test/demo/x",
            "spiffe://ztlab.test",
            "spiffe://ztlab.test/",
            "spiffe://ztlab.test/demo//x",
            "spiffe://ztlab.test/demo/./x",
            "spiffe://ztlab.test/demo/../x",
            "spiffe://ztlab.test/demo/x/",
            "spiffe://ztlab.test/demo/x?y=1",
            "spiffe://ztlab.test/demo/x#f",
            "spiffe://ztlab.test/demo/a b",
            "spiffe://zt lab/demo",
        ] {
            let mut r = good();
            r.spiffe_id = bad.into();
            let problems = validate_create(&r).expect_err(bad);
            assert_eq!(problems[0].field, "spiffe_id", "{bad}: {problems:?}");
            assert!(!problems[0].error.is_empty());
        }
        let mut r = good();
        r.parent_id = "spiffe://other.test/ztlab/nodes/local".into();
        let p = validate_create(&r).expect_err("other td");
        assert_eq!(p[0].field, "parent_id");
        assert!(p[0].error.contains("trust domain ztlab.test"), "{p:?}");
        r.parent_id = "nope".into();
        assert_eq!(field_of(&r), ["parent_id"]);
    }

    #[test]
    fn bad_selectors_ttls_and_sites_name_their_field() {
        type Mutate = Box<dyn Fn(&mut CreateRequest)>;
        let cases: Vec<(&str, Mutate, &str)> = vec![
            ("selectors", Box::new(|r| r.selectors = Lines::Text(String::new())), "at least one selector"),
            ("selectors", Box::new(|r| r.selectors = Lines::Text("\n  \n".into())), "at least one selector"),
            ("selectors", Box::new(|r| r.selectors = Lines::Text("unix:uid:1\nnocolon".into())), "line 2"),
            ("selectors", Box::new(|r| r.selectors = Lines::Text(":uid:1".into())), "line 1: type is required"),
            ("selectors", Box::new(|r| r.selectors = Lines::Text("unix:".into())), "line 1: value is required"),
            ("selectors", Box::new(|r| r.selectors = Lines::Text("un ix:uid:1".into())), "line 1"),
            (
                "selectors",
                Box::new(|r| r.selectors = Lines::Text("unix:uid:1\nunix:gid:2\n\n unix:uid:1".into())),
                "line 4: duplicate of line 1",
            ),
            ("parent_id", Box::new(|r| r.parent_id = r.spiffe_id.clone()), "cannot be its own parent"),
            ("x509_svid_ttl", Box::new(|r| r.x509_svid_ttl = Value::Null), "required"),
            ("x509_svid_ttl", Box::new(|r| r.x509_svid_ttl = json!("")), "required"),
            ("x509_svid_ttl", Box::new(|r| r.x509_svid_ttl = json!("abc")), "whole number"),
            ("x509_svid_ttl", Box::new(|r| r.x509_svid_ttl = json!("-5")), "whole number"),
            ("x509_svid_ttl", Box::new(|r| r.x509_svid_ttl = json!(-5)), "whole number"),
            ("x509_svid_ttl", Box::new(|r| r.x509_svid_ttl = json!(1.5)), "whole number"),
            ("x509_svid_ttl", Box::new(|r| r.x509_svid_ttl = json!("0")), "more than 0"),
            ("x509_svid_ttl", Box::new(|r| r.x509_svid_ttl = json!(5)), "out of range"),
            ("x509_svid_ttl", Box::new(|r| r.x509_svid_ttl = json!("99999999999")), "out of range"),
            ("site_ids", Box::new(|r| r.site_ids.clear()), "at least one site"),
            ("site_ids", Box::new(|r| r.site_ids = vec!["Site A".into()]), "a-z"),
            ("hint", Box::new(|r| r.hint = "a\nb".into()), "printable"),
        ];
        for (field, mutate, says) in cases {
            let mut r = good();
            mutate(&mut r);
            let problems = validate_create(&r).expect_err(field);
            assert_eq!(problems.len(), 1, "{field}: {problems:?}");
            assert_eq!(problems[0].field, field, "{problems:?}");
            assert!(problems[0].error.contains(says), "{field}: {:?} should say {says:?}", problems[0].error);
        }
        // Every problem at once, each with its field.
        let r = CreateRequest::default();
        assert_eq!(field_of(&r), ["spiffe_id", "parent_id", "selectors", "x509_svid_ttl", "site_ids"]);
    }

    #[test]
    fn entry_manager_messages_map_to_their_field() {
        for (path, field) in [
            ("entry.spiffe_id", Some("spiffe_id")),
            ("entry", Some("spiffe_id")),
            ("entry.parent_id", Some("parent_id")),
            ("entry.selectors[1].type", Some("selectors")),
            ("entry.x509_svid_ttl", Some("x509_svid_ttl")),
            ("entry.site_ids[0]", Some("site_ids")),
            ("entry.hint", Some("hint")),
            ("id", Some("id")),
            ("entry.dns_names[0]", None),
        ] {
            assert_eq!(ui_field(path), field, "{path}");
        }
        let url = "https://127.0.0.1:8444";
        let denied = FieldError::new(
            "entry.spiffe_id",
            "spiffe://ztlab.test/ns/demo/sa/frontend (Developer) may only write SPIFFE IDs under [\"/demo\"], not \
             spiffe://ztlab.test/ns/x",
        )
        .into_status(Code::PermissionDenied);
        let (status, body) = rpc_error(url, &denied, None);
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["field"], "spiffe_id");
        assert!(body["error"].as_str().unwrap_or_default().starts_with("PermissionDenied from entry-manager: "));
        let exists =
            FieldError::new("entry", "an entry with the same SPIFFE ID, parent ID and selectors already exists");
        let (status, body) = rpc_error(url, &exists.into_status(Code::AlreadyExists), None);
        assert_eq!((status, body["field"].as_str()), (StatusCode::CONFLICT, Some("spiffe_id")));
        let (status, body) =
            rpc_error(url, &FieldError::new("entry.site_ids[0]", "site \"z\" does not exist").into(), None);
        assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("site_ids")));
        let (status, body) = rpc_error(url, &tonic::Status::not_found("entry x does not exist"), Some("id"));
        assert_eq!((status, body["field"].as_str()), (StatusCode::NOT_FOUND, Some("id")));
        // The field comes from the details, not from text that looks like a field.
        let (_, body) = rpc_error(url, &tonic::Status::invalid_argument("entry.hint: looks like a field"), None);
        assert!(body["field"].is_null(), "{body}");
        let (_, body) = rpc_error(url, &FieldError::new("entry.hint", "too long").into(), None);
        assert_eq!(body["error"], "InvalidArgument from entry-manager: entry.hint: too long", "the text is kept");
        // The frontend itself refused (an old Viewer config), or entry-manager down: what and what to do.
        let (status, body) = rpc_error(
            url,
            &tonic::Status::permission_denied(
                "spiffe://ztlab.test/ns/demo/sa/frontend (role Viewer) may not call CreateEntry",
            ),
            None,
        );
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body["field"].is_null() && body["todo"].as_str().unwrap_or_default().contains("Developer"), "{body}");
        let (status, body) = rpc_error(url, &tonic::Status::unavailable("connection refused"), None);
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert!(body["todo"].as_str().unwrap_or_default().contains("ztlab up"), "{body}");
    }

    fn pb_entry(id: &str, spiffe_id: &str, state: pb::SyncState) -> pb::Entry {
        pb::Entry {
            id: id.into(),
            spiffe_id: spiffe_id.into(),
            parent_id: "spiffe://ztlab.test/ztlab/nodes/local".into(),
            selectors: vec![pb::Selector { r#type: "unix".into(), value: "uid:4242".into() }],
            site_ids: vec!["a".into(), "b".into()],
            revision: 1,
            site_status: ["a", "b"]
                .iter()
                .map(|s| pb::SiteStatus { site_id: (*s).into(), state: state as i32, ..Default::default() })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_form_has_a_label_for_every_field_and_escapes_values() {
        let spec = zt_runtime::lab::LabSpec::default();
        let form = NewEntryForm::new(&[], Ok(&spec));
        assert_eq!(form.parents, ["spiffe://ztlab.test/ztlab/nodes/local"]);
        assert_eq!(form.sites.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        let html = new_entry_page(&form, Ok(&[]));
        for id in ["entry-spiffe-id", "entry-parent-id", "entry-selectors", "entry-ttl", "entry-hint", "entry-site-a"] {
            assert!(html.contains(&format!("<label for=\"{id}\">")), "label for {id}");
            assert!(html.contains(&format!("id=\"{id}\"")), "{id}");
        }
        for id in ["entry-spiffe-id", "entry-parent-id", "entry-selectors", "entry-ttl", "entry-hint", "entry-sites"] {
            assert!(html.contains(&format!("<p id=\"{id}-error\" class=\"field-error\"")), "error of {id}");
            assert!(html.contains(&format!("{id}-error\"")), "described by its error: {id}");
        }
        assert!(html.contains("aria-describedby=\"entry-spiffe-id-hint entry-spiffe-id-scope entry-spiffe-id-error\""));
        assert!(html.contains("<form id=\"entry-form\"") && html.contains("<textarea id=\"entry-selectors\""));
        assert!(html.contains("<button id=\"entry-create\" type=\"submit\""));
        assert!(html.contains("<p id=\"entry-form-status\" role=\"status\""));
        assert!(html.contains("value=\"spiffe://ztlab.test/ztlab/nodes/local\""), "default parent");
        assert!(html.contains("<legend>Sites</legend>") && html.contains("value=\"b\" checked"));
        assert!(html.contains("aria-current=\"page\">Entries"));
        assert!(html.contains("zt.follow(\"/events/entries\"") && html.contains("fetch(\"/api/entries\""));
        assert!(!html.contains("<script src") && !html.contains("<link"), "everything inline");
        assert!(!html.contains(".innerHTML"), "scripts insert text only");

        let evil = NewEntryForm {
            sites: vec![SiteChoice { id: "<b>".into(), trust_domain: "\"><script>x</script>".into() }],
            parents: vec!["\"><img src=x onerror=alert(1)>".into()],
            trust_domain: Some("<td>".into()),
            lab_error: Some("<script>alert(2)</script>".into()),
        };
        let list = [pb_entry("<e>", "spiffe://x/<script>alert(3)</script>", pb::SyncState::Pending)];
        let html = new_entry_page(&evil, Ok(&list));
        for raw in ["<b>", "<script>x", "<img src=x", "<td>", "<script>alert"] {
            assert!(!html.contains(raw), "{raw} is escaped");
        }
        assert!(html.contains("&lt;script&gt;alert(2)&lt;/script&gt;") && html.contains("&quot;&gt;&lt;img"));
        let f = Failure { what: "<what>".into(), todo: "<todo>".into() };
        let html = new_entry_page(&NewEntryForm::new(&[], Err("no lab".into())), Err(&f));
        assert!(html.contains("&lt;what&gt;") && html.contains("no lab"), "error box and the lab's error");
        let sites = [(
            pb::Site { id: "a".into(), trust_domain: "ztlab.test".into(), ..Default::default() },
            pb::SiteHealth::default(),
        )];
        let form = NewEntryForm::new(&sites, Err("no lab".into()));
        assert_eq!(form.parents, ["spiffe://ztlab.test/ztlab/nodes/local"], "the default alias without the spec");
    }

    #[test]
    fn rows_have_a_delete_button_and_the_page_a_dialog() {
        let list = [
            pb_entry("e1", "spiffe://ztlab.test/demo/a\"b", pb::SyncState::Synced),
            pb_entry("e2", "spiffe://ztlab.test/demo/gone", pb::SyncState::Deleting),
        ];
        let html = entries_page(Ok(&list));
        assert!(html.contains("<tr data-id=\"e1\" data-spiffe-id=\"spiffe://ztlab.test/demo/a&quot;b\">"), "{html}");
        assert!(html.contains("class=\"entry-delete danger small\" data-id=\"e1\""));
        assert!(html.contains("aria-label=\"Delete spiffe://ztlab.test/demo/gone\" disabled>Deleting…</button>"));
        assert!(html.contains("href=\"/entries/audit?entry=e1\">History</a>"));
        for id in ["confirm-delete", "confirm-delete-yes", "confirm-delete-no", "entries-status"] {
            assert!(html.contains(&format!("id=\"{id}\"")), "{id}");
        }
        assert!(html.contains("<dialog id=\"confirm-delete\""));
        assert!(html.contains("href=\"/entries/new\"") && html.contains("href=\"/entries/audit\""));
        assert!(html.contains("zt.follow(\"/events/entries\""));
    }

    #[test]
    fn audit_rows_say_who_did_what_to_which_id() {
        let created = pb::AuditEvent {
            id: 7,
            at: Some(prost_types::Timestamp { seconds: 1_700_000_000, nanos: 0 }),
            actor: "spiffe://ztlab.test/ns/demo/sa/frontend".into(),
            action: "entry.create".into(),
            resource_type: "entry".into(),
            resource_id: "e1".into(),
            after_json: json!({"spiffe_id": "spiffe://ztlab.test/demo/<x>", "revision": 1, "site_ids": ["a", "b"]})
                .to_string(),
            ..Default::default()
        };
        let deleted = pb::AuditEvent {
            id: 9,
            action: "entry.delete".into(),
            actor: "oidc:<admin>".into(),
            before_json: json!({"spiffe_id": "spiffe://ztlab.test/demo/y", "site_ids": ["a"]}).to_string(),
            ..Default::default()
        };
        let site = pb::AuditEvent {
            id: 3,
            action: "site.create".into(),
            resource_type: "site".into(),
            resource_id: "a".into(),
            ..Default::default()
        };
        let v = audit_json(&created);
        assert_eq!(v["spiffe_id"], "spiffe://ztlab.test/demo/<x>");
        assert_eq!(v["at"], "2023-11-14T22:13:20Z");
        assert_eq!(
            (v["outcome"].as_str(), v["detail"].as_str()),
            (Some("✓ created"), Some("revision 1, PENDING at a, b"))
        );
        assert_eq!(audit_json(&deleted)["detail"], "DELETING at a until gone");
        assert!(audit_json(&site)["spiffe_id"].is_null());
        let html = audit_page(Some("e1"), Ok(&[deleted.clone(), created.clone(), site.clone()]));
        assert!(html.contains("<table id=\"audit\"") && html.contains("data-entry=\"e1\""));
        assert!(html.contains("<tr data-action=\"entry.delete\" data-id=\"9\">"), "{html}");
        assert!(html.contains("<tr data-action=\"entry.create\" data-id=\"7\">"));
        assert!(html.contains("spiffe://ztlab.test/demo/&lt;x&gt;") && html.contains("oidc:&lt;admin&gt;"));
        assert!(!html.contains("<x>") && !html.contains("<admin>"));
        assert!(html.contains("<span class=\"muted\">site a</span>"));
        let f = Failure { what: "<w>".into(), todo: "t".into() };
        assert!(audit_page(None, Err(&f)).contains("&lt;w&gt;"));
    }

    /// A fake entry-manager that records every call and answers like the real one.
    #[derive(Debug, Clone, Default)]
    struct Fake {
        calls: Arc<Mutex<Vec<String>>>,
    }

    impl Fake {
        fn log(&self, call: String) {
            self.calls.lock().expect("lock").push(call);
        }
        fn calls(&self) -> Vec<String> {
            self.calls.lock().expect("lock").clone()
        }
    }

    type Res<T> = Result<tonic::Response<T>, tonic::Status>;

    #[tonic::async_trait]
    impl pb::workload_entry_service_server::WorkloadEntryService for Fake {
        async fn create_entry(&self, req: tonic::Request<pb::CreateEntryRequest>) -> Res<pb::Entry> {
            let trace = req.metadata().get("x-trace-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            let spec = req.into_inner().entry.unwrap_or_default();
            self.log(format!("create {} trace={}", spec.spiffe_id, !trace.is_empty()));
            let id = zt_identity::SpiffeId::new(&spec.spiffe_id).map_err(|e| tonic::Status::internal(e.to_string()))?;
            if !id.path().starts_with("/demo/") {
                let why = format!(
                    "spiffe://ztlab.test/ns/demo/sa/frontend (Developer) may only write SPIFFE IDs under \
                     [\"/demo\"], not {}",
                    spec.spiffe_id
                );
                return Err(FieldError::new("entry.spiffe_id", why).into_status(Code::PermissionDenied));
            }
            if id.path() == "/demo/dup" {
                let why = "an entry with the same SPIFFE ID, parent ID and selectors already exists";
                return Err(FieldError::new("entry", why).into_status(Code::AlreadyExists));
            }
            if let Some(s) = spec.site_ids.iter().find(|s| *s != "a" && *s != "b") {
                return Err(FieldError::new("entry.site_ids[0]", format!("site {s:?} does not exist")).into());
            }
            Ok(tonic::Response::new(pb::Entry {
                id: "0190-new".into(),
                spiffe_id: spec.spiffe_id,
                site_ids: spec.site_ids.clone(),
                revision: 1,
                site_status: spec
                    .site_ids
                    .iter()
                    .map(|s| pb::SiteStatus {
                        site_id: s.clone(),
                        state: pb::SyncState::Pending as i32,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }))
        }
        async fn get_entry(&self, _: tonic::Request<pb::GetEntryRequest>) -> Res<pb::Entry> {
            Err(tonic::Status::unimplemented("fake"))
        }
        async fn update_entry(&self, _: tonic::Request<pb::UpdateEntryRequest>) -> Res<pb::Entry> {
            Err(tonic::Status::unimplemented("fake"))
        }
        async fn delete_entry(&self, req: tonic::Request<pb::DeleteEntryRequest>) -> Res<pb::Entry> {
            let id = req.into_inner().id;
            self.log(format!("delete {id}"));
            match id.as_str() {
                "abc-1" => {
                    Ok(tonic::Response::new(pb_entry("abc-1", "spiffe://ztlab.test/demo/x", pb::SyncState::Deleting)))
                }
                "abc-2" => Err(FieldError::new(
                    "id",
                    "spiffe://ztlab.test/ns/demo/sa/frontend (Developer) may only write SPIFFE IDs under \
                     [\"/demo\"], not spiffe://ztlab.test/ns/demo/sa/backend",
                )
                .into_status(Code::PermissionDenied)),
                _ => Err(FieldError::new("id", format!("entry {id} does not exist")).into_status(Code::NotFound)),
            }
        }
        async fn list_entries(&self, _: tonic::Request<pb::ListEntriesRequest>) -> Res<pb::ListEntriesResponse> {
            Ok(tonic::Response::new(pb::ListEntriesResponse {
                entries: vec![pb_entry("abc-1", "spiffe://ztlab.test/demo/x", pb::SyncState::Synced)],
                next_page_token: String::new(),
            }))
        }
        async fn batch_create_entries(
            &self,
            _: tonic::Request<pb::BatchCreateEntriesRequest>,
        ) -> Res<pb::BatchCreateEntriesResponse> {
            Err(tonic::Status::unimplemented("fake"))
        }
        async fn batch_delete_entries(
            &self,
            _: tonic::Request<pb::BatchDeleteEntriesRequest>,
        ) -> Res<pb::BatchDeleteEntriesResponse> {
            Err(tonic::Status::unimplemented("fake"))
        }
    }

    #[tonic::async_trait]
    impl pb::audit_service_server::AuditService for Fake {
        async fn list_audit_events(
            &self,
            req: tonic::Request<pb::ListAuditEventsRequest>,
        ) -> Res<pb::ListAuditEventsResponse> {
            let r = req.into_inner();
            self.log(format!("audit entry={} size={}", r.entry_id, r.page_size));
            let ev = |id: i64, action: &str| pb::AuditEvent {
                id,
                action: action.into(),
                actor: "spiffe://ztlab.test/ns/demo/sa/frontend".into(),
                resource_type: "entry".into(),
                resource_id: "abc-1".into(),
                after_json: json!({"spiffe_id": "spiffe://ztlab.test/demo/x", "revision": 1}).to_string(),
                ..Default::default()
            };
            // Oldest first on purpose: the frontend shows newest first whatever it gets.
            Ok(tonic::Response::new(pb::ListAuditEventsResponse {
                events: vec![ev(1, "entry.create"), ev(2, "entry.delete")],
                next_page_token: String::new(),
            }))
        }
    }

    /// The frontend's state with a fake entry-manager, and a signed-in cookie.
    async fn with_fake() -> (AppState, Fake, String) {
        let fake = Fake::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let incoming = futures_util::stream::unfold(listener, |l| async move {
            let r = l.accept().await.map(|(s, _)| s);
            Some((r, l))
        });
        let server = tonic::transport::Server::builder()
            .add_service(pb::workload_entry_service_server::WorkloadEntryServiceServer::new(fake.clone()))
            .add_service(pb::audit_service_server::AuditServiceServer::new(fake.clone()))
            .serve_with_incoming(incoming);
        tokio::spawn(server);
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).expect("url").connect_lazy();
        let client = Client::with_channel(channel, None).expect("client");
        let mut state = crate::Config::default().state().expect("state");
        state.entry_manager = Some(Arc::new(EntryManager::over(client, "https://fake", Duration::from_secs(5))));
        let cookie = crate::auth::testing::sign_in(&mut state, "jake");
        (state, fake, cookie)
    }

    async fn call(state: &AppState, cookie: &str, method: &str, uri: &str, body: Value) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::COOKIE, cookie)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        let resp = crate::router(state.clone()).oneshot(req).await.expect("answer");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    fn form(spiffe_id: &str) -> Value {
        json!({
            "spiffe_id": spiffe_id,
            "parent_id": "spiffe://ztlab.test/ztlab/nodes/local",
            "selectors": ["unix:uid:4242", ""],
            "x509_svid_ttl": "300",
            "site_ids": ["a", "b"],
            "hint": "demo",
        })
    }

    #[tokio::test]
    async fn bad_input_is_refused_with_its_field_and_no_rpc() {
        let (state, fake, cookie) = with_fake().await;
        let cases = [
            ("spiffe_id", json!({"spiffe_id": "spiffe://ztlab.test/demo/x/"})),
            ("spiffe_id", json!({"spiffe_id": "spiffe://Bad/demo"})),
            ("selectors", json!({"selectors": ["nocolon"]})),
            ("selectors", json!({"selectors": "unix:"})),
            ("x509_svid_ttl", json!({"x509_svid_ttl": "-1"})),
            ("x509_svid_ttl", json!({"x509_svid_ttl": "abc"})),
            ("site_ids", json!({"site_ids": []})),
            ("selectors", json!({"selectors": ["unix:uid:4242", "unix:uid:4242"]})),
            ("parent_id", json!({"parent_id": "spiffe://ztlab.test/demo/x"})),
        ];
        for (field, change) in cases {
            let mut body = form("spiffe://ztlab.test/demo/x");
            for (k, v) in change.as_object().expect("object") {
                body[k] = v.clone();
            }
            let (status, answer) = call(&state, &cookie, "POST", "/api/entries", body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {answer}");
            assert_eq!(answer["field"], field, "{answer}");
            assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()), "{answer}");
            assert_eq!(answer["errors"][0]["field"], field, "{answer}");
        }
        let (status, answer) = call(&state, &cookie, "POST", "/api/entries", json!("not a form")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        let (status, _) = call(&state, &cookie, "DELETE", "/api/entries/..%2Fx", Value::Null).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(fake.calls().is_empty(), "nothing reached entry-manager: {:?}", fake.calls());
    }

    #[tokio::test]
    async fn writes_need_a_session() {
        let (state, fake, _) = with_fake().await;
        let (status, answer) = call(&state, "", "POST", "/api/entries", form("spiffe://ztlab.test/demo/x")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
        let (status, _) = call(&state, "", "DELETE", "/api/entries/abc-1", Value::Null).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = call(&state, "", "GET", "/api/entries/audit", Value::Null).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(fake.calls().is_empty());
    }

    #[tokio::test]
    async fn entry_manager_answers_reach_the_page_with_their_field() {
        let (state, fake, cookie) = with_fake().await;
        let (status, answer) =
            call(&state, &cookie, "POST", "/api/entries", form("spiffe://ztlab.test/demo/app")).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        assert_eq!(answer["entry"]["spiffe_id"], "spiffe://ztlab.test/demo/app");
        assert_eq!(answer["entry"]["sites"][0], json!({"site_id": "a", "state": "PENDING", "last_error": ""}));
        let (status, answer) =
            call(&state, &cookie, "POST", "/api/entries", form("spiffe://ztlab.test/ns/other")).await;
        assert_eq!((status, answer["field"].as_str()), (StatusCode::FORBIDDEN, Some("spiffe_id")), "{answer}");
        assert!(answer["error"].as_str().unwrap_or_default().contains("PermissionDenied"), "{answer}");
        let (status, answer) =
            call(&state, &cookie, "POST", "/api/entries", form("spiffe://ztlab.test/demo/dup")).await;
        assert_eq!((status, answer["field"].as_str()), (StatusCode::CONFLICT, Some("spiffe_id")), "{answer}");
        let mut body = form("spiffe://ztlab.test/demo/app");
        body["site_ids"] = json!(["zz"]);
        let (status, answer) = call(&state, &cookie, "POST", "/api/entries", body).await;
        assert_eq!((status, answer["field"].as_str()), (StatusCode::BAD_REQUEST, Some("site_ids")), "{answer}");

        let (status, answer) = call(&state, &cookie, "DELETE", "/api/entries/abc-1", Value::Null).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["entry"]["sites"][1]["state"], "DELETING");
        let (status, answer) = call(&state, &cookie, "DELETE", "/api/entries/abc-2", Value::Null).await;
        assert_eq!((status, answer["field"].as_str()), (StatusCode::FORBIDDEN, Some("id")), "{answer}");
        let (status, answer) = call(&state, &cookie, "DELETE", "/api/entries/abc-3", Value::Null).await;
        assert_eq!((status, answer["field"].as_str()), (StatusCode::NOT_FOUND, Some("id")), "{answer}");

        let (status, answer) = call(&state, &cookie, "GET", "/api/entries/audit?entry=abc-1", Value::Null).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["events"][0]["action"], "entry.delete", "newest first: {answer}");
        assert_eq!(answer["events"][1]["spiffe_id"], "spiffe://ztlab.test/demo/x");
        let (status, _) = call(&state, &cookie, "GET", "/api/entries/audit?entry=%3Cx%3E", Value::Null).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        let req = Request::builder()
            .uri("/entries/audit")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .expect("request");
        let resp = crate::router(state.clone()).oneshot(req).await.expect("answer");
        assert_eq!(resp.status(), StatusCode::OK);
        let html =
            String::from_utf8(resp.into_body().collect().await.expect("body").to_bytes().to_vec()).expect("utf8");
        assert!(html.contains("<tr data-action=\"entry.delete\"") && html.contains("Signed in as"), "{html}");

        assert_eq!(
            fake.calls(),
            [
                "create spiffe://ztlab.test/demo/app trace=true",
                "create spiffe://ztlab.test/ns/other trace=true",
                "create spiffe://ztlab.test/demo/dup trace=true",
                "create spiffe://ztlab.test/demo/app trace=true",
                "delete abc-1",
                "delete abc-2",
                "delete abc-3",
                "audit entry=abc-1 size=200",
                "audit entry= size=200",
            ]
        );
    }

    #[tokio::test]
    async fn the_form_page_is_served_behind_the_login() {
        let (state, _, cookie) = with_fake().await;
        let req = Request::builder().uri("/entries/new").header(header::COOKIE, &cookie).body(Body::empty());
        let resp = crate::router(state.clone()).oneshot(req.expect("request")).await.expect("answer");
        assert_eq!(resp.status(), StatusCode::OK);
        let html =
            String::from_utf8(resp.into_body().collect().await.expect("body").to_bytes().to_vec()).expect("utf8");
        assert!(html.contains("<form id=\"entry-form\"") && html.contains("Signed in as <strong id=\"whoami\">jake"));
        let req = Request::builder().uri("/entries/new").body(Body::empty()).expect("request");
        let resp = crate::router(state).oneshot(req).await.expect("answer");
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "to /login");
    }
}
