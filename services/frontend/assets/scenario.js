// A scenario page's runner: starts a run (POST /api/scenarios/{id}/run), follows it over
// GET /events/scenarios/{id}, and shows the progress lines, the rotation drill's load, the checks
// and, for delegation, each case's decision in its row. Values are inserted as text.
(function () {
  "use strict";
  var panel = document.querySelector("section.run");
  var id = panel.getAttribute("data-scenario");
  var [button, stateEl, errorEl, log, list, counters] = zt.ids("run-scenario", "run-state", "run-error", "run-log", "run-result", "run-counters");
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
