// The "Copy URL" button of a freshly made pre-signed URL (shown once, never stored).
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button) return;
    var field = document.getElementById(button.getAttribute("data-copy-target"));
    var status = document.querySelector("[data-copy-status]");
    if (!field) return;
    field.select();
    var done = function () { if (status) status.textContent = "Copied."; };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(field.value).then(done, function () {
        if (status) status.textContent = "Select the URL and copy it.";
      });
    } else {
      document.execCommand("copy");
      done();
    }
  });
})();
