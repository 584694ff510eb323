// The live list of /entries and /sites (tbody#rows, data-page="entries" or "sites"), from GET /events/entries.
(function () {
  "use strict";
  var tbody = document.getElementById("rows");
  var ZT_PAGE = tbody.getAttribute("data-page");
  var [errorBox, live] = zt.ids("error", "live");
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
    if (!link) { link = el("a", "history", "History"); td.appendChild(link); }
    link.href = "/entries/audit?entry=" + encodeURIComponent(e.id);
    // Only what entry-manager would let the UI's caller delete gets a button.
    if (e.may_delete === false) {
      if (btn) { td.removeChild(btn.nextSibling); td.removeChild(btn); }
      return;
    }
    if (!btn) {
      btn = el("button", "entry-delete danger small", "Delete");
      btn.type = "button";
      td.insertBefore(document.createTextNode(" "), link);
      td.insertBefore(btn, td.firstChild);
    }
    btn.setAttribute("data-id", e.id);
    btn.setAttribute("data-spiffe-id", e.spiffe_id);
    btn.setAttribute("aria-label", "Delete " + e.spiffe_id);
    var deleting = tr.getAttribute("data-deleting") === "1" ||
      (e.sites.length > 0 && e.sites.every(function (s) { return s.state === "DELETING"; }));
    btn.disabled = deleting;
    btn.textContent = deleting ? "Deleting\u2026" : "Delete";
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
