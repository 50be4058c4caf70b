// switchyard console: the pages work without this script (forms post, links link); it adds
// a quiet refresh, keyboard shortcuts, confirmations, and live checks of a silence's
// condition. No framework, no network but this server.
(function () {
  "use strict";
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  // Refresh <main data-refresh="N"> every N seconds, in place: only while the tab is
  // visible and nothing in it has focus or is opened, so nothing moves under the reader.
  var main = document.querySelector("main[data-refresh]");
  if (main) {
    var every = Math.max(2, parseInt(main.getAttribute("data-refresh"), 10) || 5) * 1000;
    setInterval(function () {
      if (document.hidden) return;
      if (main.contains(document.activeElement) && document.activeElement !== main) return;
      if (main.querySelector("details[open]")) return;
      fetch(location.href, { credentials: "same-origin", headers: { "X-Switchyard-Refresh": "1" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (!html) return;
          var next = new DOMParser().parseFromString(html, "text/html").querySelector("main");
          if (next && next.innerHTML !== main.innerHTML) main.innerHTML = next.innerHTML;
        })
        .catch(function () {});
    }, every);
  }

  // A form with data-confirm asks first.
  document.addEventListener("submit", function (e) {
    var msg = e.target.getAttribute && e.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) e.preventDefault();
  });

  // Keys: 1-6 open the pages, "/" goes to the first field, "r" refreshes. Not while typing.
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    var t = e.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable)) return;
    var link = document.querySelector('nav.tabs a[data-key="' + e.key + '"]');
    if (link) { e.preventDefault(); location.href = link.href; return; }
    if (e.key === "/") {
      var field = document.querySelector("main input[type=text], main textarea, main select");
      if (field) { e.preventDefault(); field.focus(); }
    } else if (e.key === "r") {
      location.reload();
    }
  });

  // A silence's condition is checked as it is typed, by the same checker as the rules.
  var cond = document.getElementById("condition");
  var out = document.getElementById("condition-check");
  if (cond && out) {
    var timer = null;
    cond.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        var body = new URLSearchParams({ condition: cond.value });
        fetch(cond.getAttribute("data-check"), {
          method: "POST", credentials: "same-origin", body: body,
          headers: { "X-Switchyard-Csrf": csrf }
        })
          .then(function (r) { return r.text(); })
          .then(function (html) { out.innerHTML = html; })
          .catch(function () {});
      }, 250);
    });
  }
})();
