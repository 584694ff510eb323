// The audit page: refreshed every 3 seconds from GET /api/entries/audit.
(function () {
  "use strict";
  var [table, tbody, live, errorBox] = zt.ids("audit", "audit-rows", "live", "error");
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
