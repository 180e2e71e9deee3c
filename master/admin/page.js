(function () {
  "use strict";
  var live = document.getElementById("live");
  var conn = document.getElementById("conn");
  function refresh() {
    fetch("/?fragment=1", { cache: "no-store" })
      .then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.text();
      })
      .then(function (html) {
        live.innerHTML = html;
        conn.textContent = "live";
        conn.className = "";
      })
      .catch(function (e) {
        conn.textContent = "stale: " + e.message;
        conn.className = "bad";
      });
  }
  setInterval(refresh, 2000);
})();
