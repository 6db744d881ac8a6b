// Locksmith console: progressive enhancement only. Every page works without
// this file; with it, copy buttons appear next to copyable values.
(function () {
  "use strict";
  if (!navigator.clipboard) {
    return;
  }
  document.querySelectorAll("[data-copy]").forEach(function (b) {
    b.hidden = false;
  });
  document.addEventListener("click", function (e) {
    var b = e.target.closest("[data-copy]");
    if (!b) {
      return;
    }
    var src = document.getElementById(b.getAttribute("data-copy"));
    if (!src) {
      return;
    }
    var text = "value" in src ? src.value : src.textContent;
    var status = document.getElementById(b.getAttribute("data-copy") + "-status");
    navigator.clipboard.writeText(text).then(function () {
      b.textContent = "Copied";
      if (status) {
        status.textContent = "Copied to the clipboard.";
      }
      setTimeout(function () {
        b.textContent = "Copy";
        if (status) {
          status.textContent = "";
        }
      }, 2000);
    });
  });
})();
