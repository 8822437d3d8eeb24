// Copy buttons: a button with data-copy="<id>" copies the text of the
// element with that id (a key shown once) to the clipboard. The buttons
// are hidden in the page and shown here, so without JavaScript there is
// no button that does nothing; the key can still be selected by hand.
(function () {
  "use strict";

  function selectText(el) {
    var range = document.createRange();
    range.selectNodeContents(el);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }

  // fallback copies through a selection where the Clipboard API is missing
  // or refused (a page served over plain http from another host).
  function fallback(el) {
    selectText(el);
    try {
      return document.execCommand("copy");
    } catch (e) {
      return false;
    }
  }

  var buttons = document.querySelectorAll("button[data-copy]");
  Array.prototype.forEach.call(buttons, function (button) {
    var target = document.getElementById(button.getAttribute("data-copy"));
    if (!target) return;
    var status = document.getElementById(button.getAttribute("data-copy") + "-copy-status");
    var say = function (text) {
      if (status) status.textContent = text;
    };
    button.hidden = false;
    button.addEventListener("click", function () {
      var text = target.textContent.trim();
      var done = function () { say("Copied."); };
      var failed = function () {
        if (fallback(target)) {
          done();
        } else {
          say("Press Ctrl+C (⌘C) to copy the selected key.");
        }
      };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text).then(done, failed);
      } else {
        failed();
      }
    });
  });
})();
