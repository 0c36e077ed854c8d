// Snapshots Portal: the IMPORT SNAPSHOT dialog and the dashboard's live progress.
// Loaded as a file (no inline script) so that a strict Content-Security-Policy can be set.
(function () {
  "use strict";

  var GIB = 1024 * 1024 * 1024;

  // --- The dialog -------------------------------------------------------------------------

  var opener = null;

  function openDialog(dialog, from) {
    opener = from || document.activeElement;
    dialog.showModal();
    var first = dialog.querySelector("input:not([type=hidden]), textarea, select");
    if (first) first.focus();
  }

  function closeDialog(dialog) {
    if (dialog && dialog.open) dialog.close();
  }

  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    var open = target.closest("[data-dialog-open]");
    if (open) {
      var dialog = document.getElementById(open.getAttribute("data-dialog-open"));
      // Without <dialog> support the link goes on to the page with the same form.
      if (dialog && typeof dialog.showModal === "function") {
        event.preventDefault();
        openDialog(dialog, open);
      }
      return;
    }
    var close = target.closest("[data-dialog-close]");
    if (close) {
      closeDialog(close.closest("dialog"));
      return;
    }
    var use = target.closest("[data-use-size]");
    if (use) {
      var form = use.closest("form");
      var size = form && form.querySelector("[name=snapshot_size]");
      if (size) {
        size.value = use.getAttribute("data-use-size");
        size.dispatchEvent(new Event("input", { bubbles: true }));
        size.focus();
      }
    }
  });

  // Focus goes back to what opened the dialog, whatever closed it (Escape, Cancel, success).
  document.addEventListener(
    "close",
    function (event) {
      if (event.target instanceof HTMLDialogElement && opener && document.contains(opener)) {
        opener.focus();
      }
    },
    true
  );

  document.addEventListener("portal:imported", function () {
    closeDialog(document.getElementById("import-dialog"));
  });

  // --- A snapshot's action dialogs ---------------------------------------------------------
  // An action button loads its form into the one action dialog (over htmx), then the dialog
  // opens on it; a form sent with errors comes back into the same dialog. Without JavaScript
  // the button's GET form leads to the action's own page.

  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail && event.detail.target;
    if (!target || target.id !== "action-dialog-body") return;
    var dialog = document.getElementById("action-dialog");
    if (!dialog || typeof dialog.showModal !== "function") return;
    if (!dialog.open) {
      var from = event.detail.requestConfig && event.detail.requestConfig.elt;
      var menu = from && from.closest("details");
      if (menu) menu.open = false;
      openDialog(dialog, menu ? menu.querySelector("summary") : from);
    } else {
      var invalid = dialog.querySelector(".invalid input, .invalid select, .invalid textarea");
      if (invalid) invalid.focus();
    }
  });

  // --- The GiB equivalent of the Snapshot Size, shown live ----------------------------------

  function formatGib(text) {
    var digits = (text || "").replace(/[\s_]/g, "");
    if (!digits) return "";
    if (!/^\d+$/.test(digits)) return "Enter a whole number of bytes.";
    var bytes = Number(digits);
    if (bytes % GIB === 0) return "= " + bytes / GIB + " GiB";
    var gib = bytes / GIB;
    return gib < 0.01 ? "= less than 0.01 GiB" : "= " + gib.toFixed(2) + " GiB";
  }

  function refreshGib(root) {
    var outputs = (root || document).querySelectorAll("[data-gib-for]");
    outputs.forEach(function (output) {
      var input = document.getElementById(output.getAttribute("data-gib-for"));
      if (input) output.textContent = formatGib(input.value);
    });
  }

  document.addEventListener("input", function (event) {
    var target = event.target;
    if (target instanceof HTMLInputElement && target.name === "snapshot_size") refreshGib();
  });

  // --- Live progress: one poll per page and interval ----------------------------------------
  // The rows in flight carry a hidden `v` input (job id and the version the page shows); the
  // poller sends them all in one request. 200: rows changed (swapped out of band), poll again
  // soon. 204: nothing changed, wait longer (2, 4, 8, 16, then 30 s). 286: nothing sent is in
  // flight any more, stop. Nothing is sent while the tab is hidden.

  var MIN_DELAY = 2000;
  var MAX_DELAY = 30000;
  var delay = MIN_DELAY;
  var timer = null;
  var busy = false;
  var waitingForVisible = false;
  var sent = [];

  function poller() {
    return document.querySelector("[data-poller]");
  }

  function trackedIds() {
    return Array.prototype.map.call(document.querySelectorAll("[data-poll-version]"), function (el) {
      return el.value.split(".")[0];
    });
  }

  // Shown on the poller element, for people reading the DOM and for the browser tests.
  function setState(state) {
    var element = poller();
    if (element) element.setAttribute("data-poll-state", state);
  }

  function schedule(ms) {
    if (timer) clearTimeout(timer);
    timer = null;
    if (!poller() || trackedIds().length === 0) {
      setState("stopped");
      return;
    }
    setState("waiting " + ms / 1000 + "s");
    timer = setTimeout(fire, ms);
  }

  function fire() {
    timer = null;
    var element = poller();
    if (!element || busy) return;
    if (document.visibilityState !== "visible") {
      waitingForVisible = true;
      setState("paused");
      return;
    }
    sent = trackedIds();
    if (sent.length === 0) return;
    busy = true;
    setState("requesting");
    htmx.trigger(element, "portalpoll");
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible" && waitingForVisible) {
      waitingForVisible = false;
      fire();
    }
  });

  // "Import of X started" goes once X has ended: its row (or page) no longer follows it.
  function dropEndedNotices() {
    document.querySelectorAll("[data-toast-job]").forEach(function (notice) {
      var id = notice.getAttribute("data-toast-job");
      var shown = document.getElementById("job-" + id) || document.getElementById("job-summary-" + id);
      if (shown && !shown.querySelector("[data-poll-version]")) notice.remove();
    });
  }

  document.addEventListener("htmx:afterRequest", function (event) {
    if (event.target !== poller()) return;
    busy = false;
    // After the out-of-band rows have settled in.
    setTimeout(dropEndedNotices, 100);
    var status = event.detail.xhr ? event.detail.xhr.status : 0;
    if (status === 286) {
      // Rows added since the request (a new import) still need following.
      var fresh = trackedIds().filter(function (id) {
        return sent.indexOf(id) === -1;
      });
      delay = MIN_DELAY;
      if (fresh.length) schedule(delay);
      else setState("stopped");
      return;
    }
    delay = status === 200 ? MIN_DELAY : Math.min(delay * 2, MAX_DELAY);
    schedule(delay);
  });

  // New content (the page itself, a row added by the dialog): start following it.
  function onLoad(content) {
    refreshGib(content);
    if (!timer && !busy && !waitingForVisible && trackedIds().length) {
      delay = MIN_DELAY;
      schedule(delay);
    }
  }

  if (window.htmx) {
    htmx.onLoad(onLoad);
  } else {
    document.addEventListener("DOMContentLoaded", function () {
      onLoad(document.body);
    });
  }
})();

// --- Bulk selection on the dashboard -----------------------------------------------------
// The ticked snapshot ids live here, not only in the rows: a poll that swaps a row in ticks it
// again, and the toolbar says how many are selected. Without JavaScript the checkboxes still
// post as they are, and "select all on this page" selects the page's ids on the server.
(function () {
  var selected = new Set();

  function boxes() {
    return Array.prototype.slice.call(document.querySelectorAll("[data-bulk-select]"));
  }

  function sync() {
    var list = boxes();
    list.forEach(function (box) {
      box.checked = selected.has(box.value);
    });
    var all = document.querySelector("[data-bulk-all]");
    if (all) {
      var ticked = list.filter(function (box) { return box.checked; }).length;
      all.checked = list.length > 0 && ticked === list.length;
      all.indeterminate = ticked > 0 && ticked < list.length;
    }
    var count = document.querySelector("[data-bulk-count]");
    if (count) {
      count.textContent = selected.size ? "With " + selected.size + " selected:" : "With selected:";
    }
    document.querySelectorAll("[data-bulk-action]").forEach(function (button) {
      button.disabled = selected.size === 0;
    });
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (!(target instanceof HTMLInputElement)) return;
    if (target.hasAttribute("data-bulk-select")) {
      if (target.checked) selected.add(target.value);
      else selected.delete(target.value);
      sync();
    } else if (target.hasAttribute("data-bulk-all")) {
      boxes().forEach(function (box) {
        if (target.checked) selected.add(box.value);
        else selected.delete(box.value);
      });
      sync();
    }
  });

  // After any swap (a poll's rows, out of band or not): the rows show the selection again.
  document.addEventListener("htmx:afterSettle", sync);
  document.addEventListener("htmx:oobAfterSwap", sync);

  document.addEventListener("DOMContentLoaded", function () {
    // Boxes the browser ticked again on its own (back to the page) are selected too.
    boxes().forEach(function (box) {
      if (box.checked) selected.add(box.value);
    });
    if (document.querySelector("[data-bulk-all]")) sync();
  });
})();
