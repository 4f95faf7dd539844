// While a project server is starting or stopping, refresh the page until the hub says it
// is done. Without this script the page says to reload.
(function () {
  "use strict";
  if (document.querySelector("[data-refresh-while-pending]")) {
    // Without the query: the message about asking the hub no longer applies.
    window.setTimeout(function () { window.location.replace(window.location.pathname + window.location.hash); }, 2500);
  }
})();
