//! The presenter's pages besides `/`: one shared [`layout`] (header with navigation, large type,
//! inline CSS only, no CDN), the [`dashboard`] of every lab component (updated in place from
//! `GET /events`), and the scenario pages ([`scenario_list`], [`scenario_page`],
//! [`unknown_scenario`]) from the one catalogue, `zt_scenarios`.
//!
//! Every value is HTML-escaped ([`esc`]); the dashboard's script inserts values as text.

use std::fmt::Write as _;

use serde::Serialize;
use zt_runtime::component::{Health, Kind};
use zt_runtime::lab::ComponentStatus;
use zt_scenarios::{Catalogue, Decision, Scenario, Step};

/// `s` with `& < > " '` escaped, for HTML text and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = r#"
:root { --ok: #0a7d32; --bad: #b3261e; --warn: #8a5a00; --muted: #5f6368; --ink: #1b1b1f; --bg: #f7f7f9; --card: #fff; }
* { box-sizing: border-box; }
body { margin: 0; font: 22px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: var(--bg); }
header { background: #1b1b1f; color: #fff; }
header .bar { max-width: 1400px; margin: 0 auto; padding: 14px 24px; display: flex; gap: 32px; align-items: center; flex-wrap: wrap; }
header .brand { font-size: 28px; font-weight: 700; }
nav ul { list-style: none; display: flex; gap: 8px; margin: 0; padding: 0; flex-wrap: wrap; }
nav a { color: #fff; text-decoration: none; font-size: 24px; padding: 6px 16px; border-radius: 8px; display: inline-block; }
nav a:hover { background: #3a3a44; }
nav a[aria-current="page"] { background: #1a56db; }
a:focus-visible, button:focus-visible { outline: 4px solid #f59e0b; outline-offset: 3px; }
main { max-width: 1400px; margin: 0 auto; padding: 28px 24px 64px; }
h1 { font-size: 42px; margin: 0 0 12px; }
h2 { font-size: 30px; margin: 28px 0 10px; }
p.lead { font-size: 24px; margin: 0 0 24px; }
.muted { color: var(--muted); }
.error-box { border: 3px solid var(--bad); background: #fdecea; color: #5c0f0a; border-radius: 12px; padding: 16px 22px; margin: 0 0 24px; }
.error-box strong { color: var(--bad); }
table { width: 100%; border-collapse: collapse; background: var(--card); box-shadow: 0 1px 3px rgba(0,0,0,.12); border-radius: 12px; overflow: hidden; }
th, td { text-align: left; padding: 10px 14px; border-bottom: 1px solid #e3e3e8; vertical-align: top; }
th { background: #ececf1; font-size: 20px; }
td.mono, .mono { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 18px; overflow-wrap: anywhere; }
td.spiffe { min-width: 22ch; }
.badge { display: inline-block; font-weight: 700; padding: 2px 12px; border-radius: 6px; color: #fff; background: var(--muted); white-space: nowrap; }
.badge.ok { background: var(--ok); } .badge.bad { background: var(--bad); } .badge.warn { background: var(--warn); }
td.sites .badge { margin: 2px 0; } td.lag, td.td { white-space: nowrap; }
.ttl.low { color: var(--bad); font-weight: 700; }
.panel { background: var(--card); border-radius: 12px; padding: 18px 24px; box-shadow: 0 1px 3px rgba(0,0,0,.12); margin: 0 0 20px; }
.narration { border-left: 12px solid #1a56db; font-size: 24px; white-space: pre-line; }
.expected { border-left: 12px solid var(--ok); font-weight: 600; }
ul.cards { list-style: none; padding: 0; display: grid; gap: 16px; }
ul.cards a { font-size: 28px; font-weight: 600; color: #1a56db; }
#live { font-weight: 600; }
pre.log { background: #111318; color: #e8e8ee; border-radius: 10px; padding: 14px 18px; font-size: 17px; max-height: 28em; overflow: auto; white-space: pre-wrap; }
ol.checks { list-style: none; padding: 0; display: grid; gap: 12px; }
ol.checks li.check { background: var(--card); border-radius: 10px; padding: 10px 18px; border-left: 10px solid var(--muted); }
ol.checks li.pass { border-left-color: var(--ok); } ol.checks li.fail { border-left-color: var(--bad); }
ol.checks p { margin: 4px 0; } ul.hops { margin: 6px 0; } .hop-ok { color: var(--ok); } .hop-bad { color: var(--bad); font-weight: 700; }
.counters { display: flex; gap: 40px; font-size: 30px; } .counters strong { font-size: 44px; }
td.case-result .reason { font-size: 18px; color: var(--muted); }
.skip { position: absolute; left: -9999px; top: 8px; background: #fff; color: #1a56db; padding: 8px 16px; border-radius: 8px; z-index: 10; }
.skip:focus { left: 12px; }
main:focus { outline: none; }
header .who { margin-left: auto; display: flex; gap: 12px; align-items: center; font-size: 20px; }
header .who form { margin: 0; }
header .who button { font: inherit; font-size: 20px; padding: 4px 14px; border-radius: 8px; border: 2px solid #fff; background: transparent; color: #fff; cursor: pointer; }
form.form { max-width: 900px; display: grid; gap: 18px; }
.field { display: grid; gap: 6px; }
.field label { font-weight: 700; }
.field .hint { font-size: 18px; color: var(--muted); margin: 0; }
input, select, textarea { font: inherit; font-size: 22px; padding: 8px 12px; border: 2px solid #8e8e99; border-radius: 8px; background: #fff; color: var(--ink); }
input:focus-visible, select:focus-visible, textarea:focus-visible { outline: 4px solid #f59e0b; outline-offset: 2px; }
input[aria-invalid="true"], textarea[aria-invalid="true"] { border-color: var(--bad); background: #fff6f5; }
.field-error { color: var(--bad); font-weight: 700; margin: 0; }
.field-ok { color: var(--ok); font-weight: 700; margin: 0; }
button.primary, button.danger, button.secondary { font: inherit; font-size: 24px; font-weight: 700; padding: 10px 26px; border-radius: 10px; border: 0; cursor: pointer; color: #fff; background: #1a56db; justify-self: start; }
button.danger { background: var(--bad); } button.secondary { background: #5f6368; }
button[disabled] { opacity: .55; cursor: progress; }
.notice { border: 3px solid #1a56db; background: #eef3ff; border-radius: 12px; padding: 12px 20px; }
#live.ok { color: var(--ok); } #live.bad { color: var(--bad); }
"#;

/// `html` as a page that is never cached.
pub fn html(status: axum::http::StatusCode, html: String) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    (status, [(axum::http::header::CACHE_CONTROL, "no-store")], axum::response::Html(html)).into_response()
}

/// The helpers every page's script uses, defined once in the layout's `<head>` as `zt`:
/// - `zt.el(tag, cls, text)`: an element, its text set as text (never as HTML);
/// - `zt.errorBox(target, what, todo)`: fills `target` with the "What failed / What to do" box
///   (role `alert`), or empties it when `what` is empty;
/// - `zt.row(tbody, attr, key, cols)`: the row of `tbody` whose `attr` is `key`, or a new one
///   with a `<td class=…>` per entry of `cols`;
/// - `zt.follow(url, live, onData)`: follows a server-sent event stream of JSON messages, calls
///   `onData(msg)` for each, and says in `live` (optional) whether updates arrive. The stream is
///   closed when the page is left: a browser opens at most six HTTP/1.1 connections to one host,
///   streams of pages kept in the back-forward cache would otherwise hold them, and the next
///   page's requests would wait. A page restored from that cache reloads, to show the present
///   state.
const COMMON_JS: &str = r#"
window.zt = {
  el: function (tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  },
  errorBox: function (target, what, todo) {
    target.textContent = "";
    if (!what) { return; }
    var el = window.zt.el, box = el("div", "error-box");
    box.setAttribute("role", "alert");
    var p1 = el("p"); p1.appendChild(el("strong", null, "What failed: ")); p1.appendChild(document.createTextNode(what));
    box.appendChild(p1);
    if (todo) {
      var p2 = el("p"); p2.appendChild(el("strong", null, "What to do: ")); p2.appendChild(document.createTextNode(todo));
      box.appendChild(p2);
    }
    target.appendChild(box);
  },
  row: function (tbody, attr, key, cols) {
    var rows = tbody.querySelectorAll("tr");
    for (var i = 0; i < rows.length; i++) { if (rows[i].getAttribute(attr) === key) { return rows[i]; } }
    var tr = window.zt.el("tr");
    tr.setAttribute(attr, key);
    cols.forEach(function (c) { tr.appendChild(window.zt.el("td", c)); });
    tbody.appendChild(tr);
    return tr;
  },
  follow: function (url, live, onData) {
    function say(cls, text) { if (live) { live.className = cls; live.textContent = text; } }
    if (!window.EventSource) { say("bad", "Live updates need a browser with EventSource; reload to refresh."); return; }
    var s = new EventSource(url);
    window.addEventListener("pagehide", function () { s.close(); });
    s.onmessage = function (ev) {
      var msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      onData(msg);
      say("ok", "Live: updated " + new Date().toLocaleTimeString());
    };
    s.onerror = function () {
      say("bad", "Live updates lost: the frontend does not answer. It retries by itself; check `ztlab status` if this stays.");
    };
  }
};
window.addEventListener("pageshow", function (e) { if (e.persisted) { location.reload(); } });
"#;

/// A page in the shared layout; `active` is the nav entry to mark (`dashboard`, `entries`,
/// `sites`, `scenarios`, `policies`, `demo`). `body` is HTML, `title` is text. The header
/// names the signed-in user ([`crate::auth::current_user`]) with a "Sign out" button.
pub fn layout(title: &str, active: &str, body: &str) -> String {
    let mut nav = String::new();
    for (key, href, label) in [
        ("dashboard", "/dashboard", "Dashboard"),
        ("entries", "/entries", "Entries"),
        ("sites", "/sites", "Sites"),
        ("scenarios", "/scenarios", "Scenarios"),
        ("policies", "/policies", "Policies"),
        ("demo", "/", "Run Demo"),
    ] {
        let current = if key == active { r#" aria-current="page""# } else { "" };
        let _ = write!(nav, r#"<li><a href="{href}"{current}>{label}</a></li>"#);
    }
    let who = match crate::auth::current_user() {
        Some(user) => format!(
            "<div class=\"who\"><span>Signed in as <strong id=\"whoami\">{}</strong></span>\
             <form method=\"post\" action=\"/logout\"><button type=\"submit\">Sign out</button></form></div>",
            esc(&user)
        ),
        None => String::new(),
    };
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{t} · ztlab</title>\n<style>{CSS}</style>\n<script>{COMMON_JS}</script>\n</head>\n<body>\n<a class=\"skip\" href=\"#main\">Skip to the content</a>\n\
         <header><div class=\"bar\"><span class=\"brand\">ztlab</span>\
         <nav aria-label=\"Main\"><ul>{nav}</ul></nav>{who}</div></header>\n\
         <main id=\"main\" tabindex=\"-1\">\n{body}\n</main>\n</body>\n</html>\n",
        t = esc(title),
    )
}

/// A component as the dashboard shows it: the status plus how it gets its SVID.
#[derive(Debug, Clone, Serialize)]
pub struct Row<'a> {
    /// The status line.
    #[serde(flatten)]
    pub status: &'a ComponentStatus,
    /// How it gets its SVID ([`svid_via`]).
    pub via: &'static str,
}

/// How a component gets its SVID: SDS for Envoys, files from spiffe-helper, the Workload API
/// for the ztlab services, `—` for infrastructure.
pub fn svid_via(c: &ComponentStatus) -> &'static str {
    match c.kind {
        Kind::Envoy => "SDS",
        Kind::SpiffeHelper => "helper",
        Kind::Workload => "native",
        _ => "—",
    }
}

/// The rows of `status`, for `GET /events`.
pub fn rows(status: &[ComponentStatus]) -> Vec<Row<'_>> {
    status.iter().map(|s| Row { status: s, via: svid_via(s) }).collect()
}

fn health_class(health: Health) -> &'static str {
    if health == Health::Healthy { "ok" } else { "bad" }
}

fn health_label(health: Health) -> String {
    match health {
        Health::Healthy => "✓ healthy".into(),
        Health::Stopped => "■ stopped".into(),
        Health::Unhealthy => "✗ unhealthy".into(),
    }
}

fn opt(v: Option<&str>) -> String {
    esc(v.filter(|s| !s.is_empty()).unwrap_or("—"))
}

fn component_row(c: &ComponentStatus) -> String {
    let ttl = match c.svid_seconds_left {
        Some(n) => format!(r#"<span class="ttl" data-left="{n}">{n} s</span>"#),
        None => r#"<span class="ttl">—</span>"#.into(),
    };
    let kind = c.kind.as_str();
    format!(
        "<tr data-name=\"{name}\"><td class=\"name\"><strong>{name}</strong></td><td class=\"kind\">{kind}</td>\
         <td class=\"spiffe mono\">{id}</td><td class=\"via\">{via}</td>\
         <td class=\"health\"><span class=\"badge {cls}\">{label}</span></td><td class=\"serial mono\">{serial}</td>\
         <td class=\"expiry\">{ttl}</td><td class=\"detail\">{detail}</td></tr>",
        name = esc(&c.name),
        kind = esc(kind),
        id = opt(c.spiffe_id.as_deref()),
        via = esc(svid_via(c)),
        cls = health_class(c.health),
        label = esc(&health_label(c.health)),
        serial = opt(c.svid_serial.as_deref()),
        detail = opt(c.detail.as_deref()),
    )
}

/// The error box: what failed and what to do.
pub fn error_box(what: &str, todo: &str) -> String {
    format!(
        "<div class=\"error-box\" role=\"alert\"><p><strong>What failed:</strong> {}</p>\
         <p><strong>What to do:</strong> {}</p></div>",
        esc(what),
        esc(todo)
    )
}

/// What to do when the lab state cannot be read.
pub const STATE_TODO: &str = "Start the lab with `ztlab up`. The frontend reads the lab state (lab.json) from \
                              its state_dir setting (ZT_STATE_DIR, default: its working directory, which \
                              `ztlab up` sets to the lab's state dir).";

/// `GET /dashboard`: the components from `status`, or the error box when `status` is `Err`.
pub fn dashboard(status: Result<&[ComponentStatus], &str>) -> String {
    let mut body = String::from(
        "<h1>Lab dashboard</h1>\n<p class=\"lead\">Every component of the lab, its SPIFFE ID, how it gets its SVID, \
         its health, and its SVID's serial and time left (the serial changes at every rotation). <span id=\"live\" class=\"muted\" role=\"status\" aria-live=\"polite\">Connecting…</span></p>\n\
         <div id=\"error\">",
    );
    let rows = match status {
        Ok(list) => list.iter().map(component_row).collect::<String>(),
        Err(e) => {
            body.push_str(&error_box(&format!("cannot read the lab state: {e}"), STATE_TODO));
            String::new()
        }
    };
    let _ = write!(
        body,
        "</div>\n<table aria-label=\"Lab components\"><thead><tr><th scope=\"col\">Component</th>\
         <th scope=\"col\">Kind</th><th scope=\"col\">SPIFFE ID</th><th scope=\"col\">SVID via</th>\
         <th scope=\"col\">Health</th><th scope=\"col\">Serial</th><th scope=\"col\">SVID expires in</th><th scope=\"col\">Detail</th></tr></thead>\
         <tbody id=\"components\">{rows}</tbody></table>\n<script>{DASHBOARD_JS}</script>"
    );
    layout("Dashboard", "dashboard", &body)
}

const DASHBOARD_JS: &str = r#"
(function () {
  "use strict";
  var tbody = document.getElementById("components");
  var errorBox = document.getElementById("error");
  var live = document.getElementById("live");
  var el = zt.el;
  function label(h) { return h === "healthy" ? "\u2713 healthy" : (h === "stopped" ? "\u25a0 stopped" : "\u2717 " + h); }
  var COLS = ["name", "kind", "spiffe mono", "via", "health", "serial mono", "expiry", "detail"];
  function rowFor(name) {
    var tr = zt.row(tbody, "data-name", name, COLS);
    if (!tr.querySelector(".badge")) {
      tr.querySelector(".name").appendChild(el("strong", null, name));
      tr.querySelector(".health").appendChild(el("span", "badge"));
      tr.querySelector(".expiry").appendChild(el("span", "ttl", "\u2014"));
    }
    return tr;
  }
  function update(c) {
    var tr = rowFor(c.name);
    tr.querySelector(".kind").textContent = c.kind || "\u2014";
    tr.querySelector(".spiffe").textContent = c.spiffe_id || "\u2014";
    tr.querySelector(".via").textContent = c.via;
    var badge = tr.querySelector(".badge");
    badge.className = "badge " + (c.health === "healthy" ? "ok" : "bad");
    badge.textContent = label(c.health);
    var ttl = tr.querySelector(".ttl");
    if (typeof c.svid_seconds_left === "number") { ttl.setAttribute("data-left", String(c.svid_seconds_left)); }
    else { ttl.removeAttribute("data-left"); ttl.textContent = "\u2014"; }
    tr.querySelector(".serial").textContent = c.svid_serial || "\u2014";
    tr.querySelector(".detail").textContent = c.detail || "\u2014";
  }
  function showError(what, todo) { zt.errorBox(errorBox, what, todo); }
  var base = Date.now();
  function tick() {
    var gone = Math.floor((Date.now() - base) / 1000);
    tbody.querySelectorAll(".ttl[data-left]").forEach(function (t) {
      var left = Math.max(0, parseInt(t.getAttribute("data-left"), 10) - gone);
      t.textContent = left + " s";
      t.className = "ttl" + (left < 30 ? " low" : "");
    });
  }
  tick();
  setInterval(tick, 1000);
  zt.follow("/events", live, function (msg) {
    base = Date.now();
    if (msg.ok) {
      showError(null);
      msg.components.forEach(update);
    } else {
      showError("cannot read the lab state: " + msg.error, msg.todo);
    }
    tick();
  });
})();
"#;

fn step_line(s: &Step) -> String {
    let mut parts = Vec::new();
    if let Some(m) = &s.mode {
        parts.push(format!("mode <strong>{}</strong>", esc(m)));
    }
    if let Some(u) = &s.user {
        parts.push(format!("user <strong>{}</strong>", esc(u)));
    }
    if let Some(site) = &s.site {
        parts.push(format!("site <strong>{}</strong>", esc(site)));
    }
    if let Some(n) = s.seconds {
        parts.push(format!("{n} s"));
    }
    if let Some(e) = &s.expect {
        parts.push(format!("expect <strong>{}</strong>", esc(e)));
    }
    let rest = if parts.is_empty() { String::new() } else { format!(": {}", parts.join(", ")) };
    format!("<li><span class=\"mono\">{}</span>{rest}</li>", esc(s.action.name()))
}

/// `GET /scenarios`.
pub fn scenario_list(c: &Catalogue) -> String {
    let mut body = String::from(
        "<h1>Scenarios</h1>\n<p class=\"lead\">Every demo scenario, from the one catalogue the tests also run.</p>\n\
         <ul class=\"cards\">",
    );
    for s in &c.scenario {
        let _ = write!(
            body,
            "<li class=\"panel\"><a href=\"/scenarios/{id}\">{title}</a><p class=\"muted\">{expected}</p></li>",
            id = esc(&s.id),
            title = esc(&s.title),
            expected = esc(&s.expected)
        );
    }
    body.push_str("</ul>");
    layout("Scenarios", "scenarios", &body)
}

/// `GET /scenarios/{id}`.
pub fn scenario_page(s: &Scenario) -> String {
    let mut body = format!(
        "<p><a href=\"/scenarios\">← All scenarios</a></p>\n<h1>{}</h1>\n\
         <section aria-label=\"Narration\" class=\"panel narration\">{}</section>\n",
        esc(&s.title),
        esc(s.narration.trim())
    );
    if !s.evidence.is_empty() {
        body.push_str("<h2>Evidence to show</h2><ul class=\"panel evidence\">");
        for e in &s.evidence {
            let _ = write!(body, "<li>{}</li>", esc(e));
        }
        body.push_str("</ul>");
    }
    let _ = write!(body, "<h2>Expected outcome</h2><p class=\"panel expected\">{}</p>", esc(&s.expected));
    if !s.step.is_empty() {
        body.push_str("<h2>Steps</h2><ol class=\"panel steps\">");
        for st in &s.step {
            body.push_str(&step_line(st));
        }
        body.push_str("</ol>");
    }
    if !s.case.is_empty() {
        body.push_str(
            "<h2>Cases</h2><table aria-label=\"Delegation cases\"><thead><tr><th scope=\"col\">#</th>\
             <th scope=\"col\">Request</th><th scope=\"col\">User</th><th scope=\"col\">Agent</th>\
             <th scope=\"col\">Document</th><th scope=\"col\">Expected</th><th scope=\"col\">Because</th>\
             <th scope=\"col\">Run</th><th scope=\"col\">Result</th></tr></thead><tbody>",
        );
        for c in &s.case {
            let (cls, label) = match c.expect {
                Decision::Granted => ("ok", "✓ granted"),
                Decision::Denied => ("bad", "✗ denied"),
            };
            let _ = write!(
                body,
                "<tr data-case=\"{n}\"><td>{n}</td><td>{l}</td><td>{u}</td><td>{a}</td><td class=\"mono\">{d}</td>\
                 <td><span class=\"badge {cls}\">{label}</span></td><td>{b}</td>\
                 <td><button type=\"button\" class=\"secondary run-case\" data-case=\"{n}\" \
                 aria-label=\"Run case {n}\">Run</button></td>\
                 <td class=\"case-result\" id=\"case-{n}-result\" aria-live=\"polite\">—</td></tr>",
                n = c.n,
                l = esc(&c.label()),
                u = opt(c.user.as_deref()),
                a = opt(c.agent.as_deref()),
                d = esc(&c.doc),
                b = opt(c.because.as_deref()),
            );
        }
        body.push_str("</tbody></table>");
    }
    let what = if s.case.is_empty() { "this scenario" } else { "every case" };
    let _ = write!(
        body,
        "<section class=\"panel run\" aria-labelledby=\"run-heading\" data-scenario=\"{id}\">\
         <h2 id=\"run-heading\">Run it against the live lab</h2>\
         <p class=\"muted\">The same runner as <code>scripts/demo.sh</code> and the tests \
         (<code>ztlab demo run {id}</code>); what it changes, it puts back.</p>\
         <p><button type=\"button\" class=\"primary\" id=\"run-scenario\">Run {what}</button> \
         <span id=\"run-state\" class=\"badge\" role=\"status\" aria-live=\"polite\">not run yet</span></p>\
         <div id=\"run-error\"></div>\
         <div id=\"run-counters\" class=\"counters\" hidden><span>requests <strong id=\"live-requests\">0</strong></span> \
         <span>failures <strong id=\"live-failures\">0</strong></span></div>\
         <ol id=\"run-result\" class=\"checks\" aria-label=\"Checks\"></ol>\
         <details open><summary>Runner output</summary><pre id=\"run-log\" class=\"log\" tabindex=\"0\" \
         aria-label=\"Runner output\"></pre></details></section>\n<script>{RUN_JS}</script>",
        id = esc(&s.id),
    );
    if s.step.iter().any(|st| st.action == zt_scenarios::Action::RunDemo) {
        body.push_str("<p>Or <a href=\"/\">open Run Demo</a> and press its button.</p>");
    }
    layout(&s.title, "scenarios", &body)
}

/// The scenario page's runner: starts a run (`POST /api/scenarios/{id}/run`), follows it over
/// `GET /events/scenarios/{id}`, and shows the progress lines, the rotation drill's load, the
/// checks and, for delegation, each case's decision in its row. Values are inserted as text.
const RUN_JS: &str = r#"
(function () {
  "use strict";
  var panel = document.querySelector("section.run");
  var id = panel.getAttribute("data-scenario");
  var button = document.getElementById("run-scenario");
  var stateEl = document.getElementById("run-state");
  var errorEl = document.getElementById("run-error");
  var log = document.getElementById("run-log");
  var list = document.getElementById("run-result");
  var counters = document.getElementById("run-counters");
  var caseButtons = document.querySelectorAll("button.run-case");
  var shownRun = 0, shownState = "";
  var el = zt.el;
  function showError(what, todo) { zt.errorBox(errorEl, what, todo); }
  function busy(on) {
    button.disabled = on;
    caseButtons.forEach(function (b) { b.disabled = on; });
  }
  function start(cases) {
    showError(null);
    busy(true);
    fetch("/api/scenarios/" + encodeURIComponent(id) + "/run", {
      method: "POST", headers: {"content-type": "application/json"}, body: JSON.stringify({cases: cases})
    }).then(function (r) {
      return r.json().then(function (j) { return {status: r.status, body: j}; });
    }).then(function (r) {
      if (r.status !== 202) { busy(false); showError(r.body.error || ("HTTP " + r.status), r.body.todo); }
    }).catch(function (e) { busy(false); showError("cannot reach the frontend: " + e, "Check that the lab is up, then reload."); });
  }
  button.addEventListener("click", function () { start([]); });
  caseButtons.forEach(function (b) {
    b.addEventListener("click", function () { start([parseInt(b.getAttribute("data-case"), 10)]); });
  });
  function hopLine(h) {
    var t = (h.from || "?") + " → " + (h.to || "?") + "  " + (h.ok ? "ok" : (h.reason || "failed"));
    if (h.evidence && typeof h.evidence === "object") {
      Object.keys(h.evidence).forEach(function (k) {
        var v = h.evidence[k];
        if (k !== "xfcc" && v !== null && typeof v !== "object") { t += "  " + k + "=" + v; }
      });
    }
    return t;
  }
  function renderChecks(result) {
    list.textContent = "";
    var scenarios = (result && result.scenarios) || [];
    scenarios.forEach(function (s) {
      (s.checks || []).forEach(function (c) {
        var li = el("li", "check " + (c.passed ? "pass" : "fail"));
        li.setAttribute("data-kind", c.kind); li.setAttribute("data-n", String(c.n));
        li.setAttribute("data-passed", String(c.passed));
        var head = el("p");
        head.appendChild(el("span", "badge " + (c.passed ? "ok" : "bad"), c.passed ? "✓ PASS" : "✗ FAIL"));
        head.appendChild(document.createTextNode(" " + c.kind + " " + c.n + ": " + c.label));
        li.appendChild(head);
        var got = el("p", "observed");
        got.appendChild(document.createTextNode("expected " + c.expected + ", got "));
        got.appendChild(el("strong", null, c.observed + (c.status ? " (" + c.status + ")" : "")));
        li.appendChild(got);
        if (c.reason) { li.appendChild(el("p", "reason", "reason: " + c.reason)); }
        if (c.caller_spiffe_id) { li.appendChild(el("p", "mono", "caller: " + c.caller_spiffe_id)); }
        if (Array.isArray(c.evidence)) {
          var ul = el("ul", "hops");
          c.evidence.forEach(function (h) { ul.appendChild(el("li", "mono " + (h.ok ? "hop-ok" : "hop-bad"), hopLine(h))); });
          li.appendChild(ul);
        }
        list.appendChild(li);
        if (c.kind === "case") {
          var cell = document.getElementById("case-" + c.n + "-result");
          if (cell) {
            cell.textContent = "";
            cell.appendChild(el("span", "badge " + (c.passed ? "ok" : "bad"), (c.observed || "") + (c.passed ? " ✓" : " ✗")));
            if (c.reason) { cell.appendChild(el("div", "reason", c.reason)); }
          }
        }
      });
    });
  }
  function showLoad(load) {
    if (!load) { return; }
    counters.hidden = false;
    document.getElementById("live-requests").textContent = String(load.requests);
    document.getElementById("live-failures").textContent = String(load.failures);
  }
  var labels = {running: "\u25b6 running", passed: "✓ passed", failed: "✗ failed", error: "✗ error", idle: "not run yet"};
  function update(r) {
    stateEl.textContent = labels[r.state] || r.state;
    stateEl.className = "badge" + (r.state === "passed" ? " ok" : (r.state === "failed" || r.state === "error") ? " bad" : (r.state === "running" ? " warn" : ""));
    stateEl.setAttribute("data-state", r.state);
    if (r.state === "idle") { busy(false); return; }
    busy(r.state === "running");
    var atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
    log.textContent = (r.lines || []).join("\n");
    if (atEnd) { log.scrollTop = log.scrollHeight; }
    showLoad(r.load);
    if (r.run !== shownRun || r.state !== shownState) {
      shownRun = r.run; shownState = r.state;
      if (r.state === "running") { list.textContent = ""; showError(null); }
      else { renderChecks(r.result); if (r.state === "error") { showError(r.error, r.todo); } }
    }
  }
  zt.follow("/events/scenarios/" + encodeURIComponent(id), null, update);
})();
"#;

/// The 404 page for an unknown scenario id, naming the known ones.
pub fn unknown_scenario(id: &str, c: &Catalogue) -> String {
    let mut body = String::from("<h1>No such scenario</h1>");
    body.push_str(&error_box(
        &format!("there is no scenario with id {id:?}"),
        "Pick one of the known scenarios below (ids come from demo/scenarios.toml).",
    ));
    body.push_str("<h2>Known ids</h2><ul class=\"panel\">");
    for s in &c.scenario {
        let _ = write!(
            body,
            "<li><a href=\"/scenarios/{id}\" class=\"mono\">{id}</a>: {t}</li>",
            id = esc(&s.id),
            t = esc(&s.title)
        );
    }
    body.push_str("</ul>");
    layout("No such scenario", "scenarios", &body)
}

/// A page for an error that keeps the catalogue from loading.
pub fn catalogue_error(e: &str) -> String {
    let body = format!(
        "<h1>Scenarios</h1>{}",
        error_box(
            &format!("the scenario catalogue does not load: {e}"),
            "Fix demo/scenarios.toml (the message names the field) and rebuild the frontend."
        )
    );
    layout("Scenarios", "scenarios", &body)
}
