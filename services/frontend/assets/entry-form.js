// The create form of /entries/new: checks as you type (hints only: the frontend and
// entry-manager check everything again), submit as JSON, server errors next to their field.
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
