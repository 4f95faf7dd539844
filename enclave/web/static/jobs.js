// Follows job runs while they are queued or running: the run page's status and log, the
// list page's states. Progressive: without this script the pages say "reload".
// It only reads the JSON API (same origin, the session cookie) and never changes anything.
(function () {
  "use strict";
  var POLL_MS = 2000;

  function show(el) { if (el) { el.hidden = false; } }
  document.querySelectorAll(".live-hint").forEach(show);

  // Choosing another notebook shows its parameters (the form's own button does the same).
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });

  function poll(url, handle) {
    var stopped = false;
    function tick() {
      if (stopped) { return; }
      fetch(url(), { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (data && handle(data) === false) { stopped = true; return; }
          window.setTimeout(tick, POLL_MS);
        })
        .catch(function () { window.setTimeout(tick, POLL_MS * 3); });
    }
    window.setTimeout(tick, POLL_MS);
  }

  var status = document.getElementById("run-status");
  if (status && status.dataset.liveUrl) {
    var log = document.getElementById("job-log");
    var offset = log ? parseInt(log.dataset.offset || "0", 10) : 0;
    poll(function () { return status.dataset.liveUrl + "?offset=" + offset; }, function (data) {
      if (log && data.log) {
        log.hidden = false;
        var none = document.getElementById("no-log");
        if (none) { none.hidden = true; }
        log.appendChild(document.createTextNode(data.log));
        log.scrollTop = log.scrollHeight;
      }
      offset = data.next_offset;
      var badge = status.querySelector(".badge");
      if (badge && data.status !== status.dataset.status) {
        badge.className = "badge badge-" + data.status;
        badge.textContent = data.status.replace(/_/g, " ");
        status.dataset.status = data.status;
      }
      if (data.final) {
        // The finished run's outputs, comparison and actions are drawn by the server; the
        // message about queueing it no longer applies.
        window.location.replace(window.location.pathname);
        return false;
      }
      return true;
    });
  }

  var runs = document.getElementById("runs");
  if (runs && runs.dataset.liveRuns) {
    poll(function () { return runs.dataset.liveRuns; }, function (list) {
      var changed = list.some(function (run) {
        var row = runs.querySelector('tr[data-run="' + run.id + '"]');
        return !row || row.dataset.status !== run.status;
      });
      if (changed) { window.location.reload(); return false; }
      return true;
    });
  }
})();
