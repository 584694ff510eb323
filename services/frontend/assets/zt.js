// The helpers every page's script uses, loaded in the layout's <head> as `zt`:
// - zt.el(tag, cls, text): an element, its text set as text (never as HTML);
// - zt.ids(id, ...): the elements with these ids, in order (for `var [a, b] = zt.ids("a", "b")`);
// - zt.errorBox(target, what, todo): fills `target` with the "What failed / What to do" box
//   (role alert), or empties it when `what` is empty;
// - zt.row(tbody, attr, key, cols): the row of `tbody` whose `attr` is `key`, or a new one with a
//   <td class=…> per entry of `cols`;
// - zt.follow(url, live, onData): follows a server-sent event stream of JSON messages, calls
//   onData(msg) for each, and says in `live` (optional) whether updates arrive. The stream is
//   closed when the page is left: a browser opens at most six HTTP/1.1 connections to one host,
//   streams of pages kept in the back-forward cache would otherwise hold them, and the next page's
//   requests would wait. A page restored from that cache reloads, to show the present state.
window.zt = {
  ids: function () {
    return Array.prototype.map.call(arguments, function (id) { return document.getElementById(id); });
  },
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
