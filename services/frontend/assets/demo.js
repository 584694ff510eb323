// The Run Demo page: POST /api/run-demo, then each hop with PASS/FAIL/SKIPPED, its reason,
// error and evidence. Text from the server is inserted as text, never as HTML.
(function () {
  "use strict";
  var [button, summary, list] = zt.ids("run", "summary", "hops");

  var el = zt.el;

  function show(value) {
    if (value === null || value === undefined) { return "—"; }
    return typeof value === "object" ? JSON.stringify(value) : String(value);
  }

  function renderHop(hop) {
    var skipped = hop.reason === "skipped";
    var item = el("li", "hop " + (hop.ok ? "ok" : (skipped ? "skip" : "bad")));
    var title = el("h2");
    title.appendChild(el("span", null, hop.from + " \u2192 " + hop.to));
    title.appendChild(el("span", "badge", hop.ok ? "\u2713 PASS" : (skipped ? "SKIPPED" : "\u2717 FAIL")));
    item.appendChild(title);
    item.appendChild(el("p", "via", "via " + hop.via));
    if (!hop.ok && hop.error) {
      item.appendChild(el("p", "error", (hop.reason && !skipped ? "[" + hop.reason + "] " : "") + hop.error));
    }
    var keys = hop.evidence ? Object.keys(hop.evidence) : [];
    if (keys.length) {
      var dl = el("dl");
      dl.setAttribute("aria-label", "Evidence");
      keys.forEach(function (k) {
        dl.appendChild(el("dt", null, k));
        dl.appendChild(el("dd", null, show(hop.evidence[k])));
      });
      item.appendChild(dl);
    }
    return item;
  }

  function run() {
    button.disabled = true;
    summary.className = "";
    summary.textContent = "Running\u2026";
    fetch("/api/run-demo", { method: "POST", headers: { "accept": "application/json" } })
      .then(function (r) {
        if (!r.ok) { throw new Error("the frontend answered HTTP " + r.status); }
        return r.json();
      })
      .then(function (report) {
        list.replaceChildren.apply(list, report.hops.map(renderHop));
        var passed = report.hops.filter(function (h) { return h.ok; }).length;
        summary.className = report.ok ? "ok" : "bad";
        summary.textContent = (report.ok ? "All hops passed" : passed + " of " + report.hops.length + " hops passed") +
          " in " + report.took_ms + " ms.";
      })
      .catch(function (err) {
        list.replaceChildren();
        summary.className = "bad";
        summary.textContent = "The demo could not run: " + err.message;
      })
      .finally(function () { button.disabled = false; button.focus(); });
  }

  button.addEventListener("click", run);
})();
