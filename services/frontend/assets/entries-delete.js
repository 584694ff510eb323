// The Delete buttons of the entries list and their confirmation dialog.
(function () {
  "use strict";
  var [dialog, idText, yes, no, status, tbody] = zt.ids("confirm-delete", "confirm-delete-id", "confirm-delete-yes", "confirm-delete-no", "entries-status", "rows");
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
