// The dashboard (GET /dashboard): rows updated in place from GET /events, SVID countdowns.
(function () {
  "use strict";
  var [tbody, errorBox, live] = zt.ids("components", "error", "live");
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
