// The policies page's RBAC section, updated in place from GET /events/policies.
(function () {
  "use strict";
  function byId(id) { return document.getElementById(id); }
  var live = byId("rbac-live");
  var el = zt.el;
  function box(target, problem) { zt.errorBox(target, problem && problem.what, problem && problem.todo); }
  function num(n) { return typeof n === "number" ? String(n) : "\u2014"; }
  zt.follow("/events/policies", live, function (v) {
    var mode = byId("rbac-mode");
    mode.textContent = v.mode || "none installed";
    mode.className = "badge " + (v.mode === "allow-frontend" ? "ok" : (v.mode ? "bad" : "warn"));
    byId("rbac-who").textContent = v.who || "";
    box(byId("rbac-error"), v.error);
    byId("rbac-policy").textContent = v.policy || "(no policy file)";
    byId("rbac-file").textContent = v.file || "";
    byId("rbac-allowed").textContent = num(v.allowed);
    byId("rbac-denied").textContent = num(v.denied);
    byId("rbac-counters-from").textContent = v.counters_from || "\u2014";
    box(byId("rbac-counters-error"), v.counters_error);
    var tbody = byId("rbac-counters");
    tbody.textContent = "";
    (v.counters || []).forEach(function (c) {
      var tr = el("tr");
      tr.appendChild(el("td", "mono", c.name));
      tr.appendChild(el("td", null, String(c.value)));
      tbody.appendChild(tr);
    });
  });
})();
