// gpufleet console: the only script (no inline scripts; the page works without it).
// Follows a job's log while the job runs, and submits filter selects on change.
"use strict";
(function () {
  var FINAL = ["succeeded", "failed", "cancelled"];
  function follow(status) {
    var url = status.getAttribute("data-follow");
    var offset = parseInt(status.getAttribute("data-offset") || "0", 10);
    var log = document.getElementById("job-log");
    var state = document.getElementById("job-state");
    function tick() {
      fetch(url + "?offset=" + offset, {credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
        .then(function (d) {
          if (d.text) { log.textContent += d.text; log.scrollTop = log.scrollHeight; }
          offset = d.next_offset;
          if (state && state.textContent !== d.state) {
            state.textContent = d.state;
            state.className = "pill state s-" + d.state;
          }
          if (FINAL.indexOf(d.state) >= 0) { status.textContent = "finished"; return; }
          setTimeout(tick, 1000);
        })
        .catch(function () { status.textContent = "stopped following (reload to retry)"; });
    }
    if (FINAL.indexOf(status.getAttribute("data-state")) >= 0) { status.textContent = "finished"; return; }
    setTimeout(tick, 1000);
  }
  document.addEventListener("DOMContentLoaded", function () {
    var status = document.getElementById("log-status");
    if (status) { follow(status); }
    var back = document.querySelector(".js-back");
    if (back && window.history.length > 1) {
      back.addEventListener("click", function (e) { e.preventDefault(); window.history.back(); });
    }
  });
})();
