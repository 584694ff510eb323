//! The read-only entry-management pages: `GET /entries` (every entry with a per-site badge) and
//! `GET /sites` (each site's health), both updated in place from `GET /events/entries`, a
//! server-sent event stream that pushes [`snapshot_json`] every second.
//!
//! The data comes from entry-manager's mTLS listener (`entry_manager_url`), called with the
//! frontend's own SVID; the server must present entry-manager's SPIFFE ID. entry-manager grants
//! the frontend the `Viewer` role (config `[[identities]]`), so it can only read.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use zt_entry_api::client::Client;
use zt_entry_api::json as views;
use zt_entry_api::pb;
use zt_tls::X509Source;

use crate::ui::{error_box, esc, layout};

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
                       as a Viewer in its [[identities]]; `ztlab up` writes that config. Restart entry-manager \
                       (`ztlab up`) if it runs with an older config."
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
    format!(
        "<tr data-id=\"{id}\"><td class=\"spiffe mono\">{sid}</td><td class=\"selectors mono\">{sel}</td>\
         <td class=\"revision\">{rev}</td><td class=\"sites\">{badges}</td></tr>",
        id = esc(&e.id),
        sid = esc(&e.spiffe_id),
        sel = if selectors.is_empty() { "—".into() } else { selectors.join("<br>") },
        rev = e.revision,
    )
}

fn site_row(site: &pb::Site, h: &pb::SiteHealth) -> String {
    let (cls, label) = if h.agent_connected { ("ok", "✓ connected") } else { ("bad", "✗ DISCONNECTED") };
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

/// `GET /entries`: every entry, or the error box.
pub fn entries_page(r: Result<&[pb::Entry], &Failure>) -> String {
    let mut body = String::from("<h1>Entries</h1>\n");
    body.push_str(&live_line(
        "Every registration entry in entry-manager, with its sync state at each site (read-only).",
    ));
    let rows = match r {
        Ok(list) => list.iter().map(entry_row).collect::<String>(),
        Err(f) => {
            body.push_str(&error_box(&f.what, &f.todo));
            String::new()
        }
    };
    let _ = write!(
        body,
        "</div>\n<table aria-label=\"Registration entries\"><thead><tr><th scope=\"col\">SPIFFE ID</th>\
         <th scope=\"col\">Selectors</th><th scope=\"col\">Revision</th><th scope=\"col\">Sites</th></tr></thead>\
         <tbody id=\"rows\">{rows}</tbody></table>\n<script>var ZT_PAGE = \"entries\";{JS}</script>"
    );
    layout("Entries", "entries", &body)
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
    ? ["spiffe mono", "selectors mono", "revision", "sites"]
    : ["site", "td mono", "agent", "contact", "lag", "synced", "pending", "failed", "unmanaged"];
  var KEY = ZT_PAGE === "entries" ? "data-id" : "data-site";
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function badge(state) {
    switch (state) {
      case "SYNCED": return ["ok", "\u2713 SYNCED"];
      case "PENDING": return ["warn", "\u2026 PENDING"];
      case "FAILED": return ["bad", "\u2717 FAILED"];
      case "DELETING": return ["muted", "\u2212 DELETING"];
      default: return ["muted", state];
    }
  }
  function rowFor(key) {
    var rows = tbody.querySelectorAll("tr");
    for (var i = 0; i < rows.length; i++) { if (rows[i].getAttribute(KEY) === key) { return rows[i]; } }
    var tr = el("tr");
    tr.setAttribute(KEY, key);
    COLS.forEach(function (c) { tr.appendChild(el("td", c)); });
    tbody.appendChild(tr);
    return tr;
  }
  function cell(tr, cls) { return tr.querySelector("." + cls.split(" ")[0]); }
  function updateEntry(e) {
    var tr = rowFor(e.id);
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
    agent.appendChild(el("span", "badge " + (s.agent_connected ? "ok" : "bad"),
      s.agent_connected ? "\u2713 connected" : "\u2717 DISCONNECTED"));
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
  function showError(what, todo) {
    errorBox.textContent = "";
    if (!what) { return; }
    var box = el("div", "error-box");
    box.setAttribute("role", "alert");
    var p1 = el("p"); p1.appendChild(el("strong", null, "What failed: ")); p1.appendChild(document.createTextNode(what));
    var p2 = el("p"); p2.appendChild(el("strong", null, "What to do: ")); p2.appendChild(document.createTextNode(todo));
    box.appendChild(p1); box.appendChild(p2); errorBox.appendChild(box);
  }
  if (!window.EventSource) { live.textContent = "Live updates need a browser with EventSource; reload to refresh."; return; }
  var source = new EventSource("/events/entries");
  source.onmessage = function (ev) {
    var msg;
    try { msg = JSON.parse(ev.data); } catch (e) { return; }
    if (msg.ok) {
      showError(null);
      var keep = {};
      (ZT_PAGE === "entries" ? msg.entries.map(updateEntry) : msg.sites.map(updateSite))
        .forEach(function (k) { keep[k] = true; });
      tbody.querySelectorAll("tr").forEach(function (tr) { if (!keep[tr.getAttribute(KEY)]) { tr.remove(); } });
    } else {
      showError(msg.error, msg.todo);
    }
    live.className = "ok";
    live.textContent = "Live: updated " + new Date().toLocaleTimeString();
  };
  source.onerror = function () {
    live.className = "bad";
    live.textContent = "Live updates lost: the frontend does not answer. It retries by itself; check `ztlab status` if this stays.";
  };
})();
"#;
