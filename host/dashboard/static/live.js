// jalkal dashboard: live figures without a reload. The server says on /events
// (server-sent events) when the store's frames changed; the page then reads its
// own JSON (main's data-api, the same numbers the page was drawn from) and
// writes the cells marked data-field (a village) or data-path (a summary row).
(function () {
  "use strict";
  var main = document.getElementById("main");
  if (!main || !main.dataset.api || !window.EventSource) return;
  var labels = JSON.parse(main.dataset.statusLabels || "{}");

  function get(obj, path) {
    return path.split(".").reduce(function (o, k) {
      return o === null || o === undefined ? null : o[k];
    }, obj);
  }
  function format(fmt, v) {
    if (v === null || v === undefined) return fmt === "when" ? "never" : "–";
    if (fmt === "num") return Math.round(v).toLocaleString("en-US");
    if (fmt === "lpcd") return Number(v).toFixed(1);
    if (fmt === "when") return String(v).replace("T", " ").slice(0, 16) + "Z";
    if (fmt === "status") return labels[v] || v;
    return String(v);
  }
  function put(el, text) {
    if (el.textContent !== text) {
      el.textContent = text;
      el.classList.remove("flash");
      void el.offsetWidth;
      el.classList.add("flash");
    }
  }
  function apply(data) {
    var list = data.villages || (data.village ? [data.village] : []);
    list.forEach(function (v) {
      document.querySelectorAll('[data-id="' + v.id + '"] [data-field]').forEach(
        function (el) { put(el, format(el.dataset.fmt, get(v, el.dataset.field))); });
    });
    var rows = (data.rows || []).slice();
    if (data.total) rows.push(Object.assign({ name: "__total__" }, data.total));
    rows.forEach(function (r) {
      document.querySelectorAll("[data-row]").forEach(function (tr) {
        if (tr.dataset.row !== r.name) return;
        tr.querySelectorAll("[data-path]").forEach(function (el) {
          put(el, String(get(r, el.dataset.path)));
        });
      });
    });
    var asof = document.getElementById("as-of");
    if (asof && data.as_of) asof.textContent = format("when", data.as_of);
    var frames = document.getElementById("frames");
    if (frames) frames.textContent = Number(data.frames).toLocaleString("en-US");
  }
  var busy = false, again = false;
  function reload() {
    if (busy) { again = true; return; }
    busy = true;
    again = false;
    fetch(main.dataset.api, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (d) { if (d) apply(d); })
      .catch(function () {})
      .finally(function () { busy = false; if (again) reload(); });
  }
  var es = new EventSource("/events");
  es.addEventListener("update", reload);
  es.addEventListener("open", reload); // a reconnect may have missed an update
})();
