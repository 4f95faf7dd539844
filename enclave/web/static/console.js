// While a project server is starting or stopping, refresh the page until the hub says it
// is done. Without this script the page says to reload.
(function () {
  "use strict";
  if (document.querySelector("[data-refresh-while-pending]")) {
    window.setTimeout(function () { window.location.reload(); }, 2500);
  }
})();
