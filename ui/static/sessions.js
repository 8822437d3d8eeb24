// Live rows of the session list and the dashboard. A table with
// data-live-url lists sessions, one row per session (data-session-id,
// data-status); while some of them are pending or running, this asks the
// server every 2 seconds how those stand (one request for all of them,
// authenticated by the login cookie) and updates their status, duration,
// turns and cost in place. It stops once none is live, pauses while the
// tab is hidden and waits longer after a failed request. Without it the
// page is the same, current as of its last load.
(function () {
  "use strict";

  var table = document.querySelector("table[data-live-url]");
  if (!table || !window.fetch) return;
  var url = table.getAttribute("data-live-url");
  var note = document.getElementById("live-note");
  var every = 2000;
  var wait = every;
  var timer = null;
  var busy = false;

  // Which column holds what, from the header's data-col.
  var columns = {};
  var heads = table.querySelectorAll("thead th");
  for (var i = 0; i < heads.length; i++) {
    var name = heads[i].getAttribute("data-col");
    if (name) columns[name] = i;
  }

  function isLive(status) {
    return status === "pending" || status === "running";
  }

  function liveRows() {
    var out = [];
    var rows = table.querySelectorAll("tbody tr[data-session-id]");
    for (var i = 0; i < rows.length; i++) {
      if (isLive(rows[i].getAttribute("data-status"))) out.push(rows[i]);
    }
    return out;
  }

  function cell(row, name) {
    var i = columns[name];
    return i === undefined ? null : row.cells[i] || null;
  }

  function setText(el, text) {
    if (el && typeof text === "string" && el.textContent !== text) el.textContent = text;
  }

  function update(row, st) {
    var was = row.getAttribute("data-status");
    row.setAttribute("data-status", st.status);
    var statusCell = cell(row, "status");
    var pill = statusCell && statusCell.querySelector(".status-pill");
    if (pill && pill.textContent !== st.status) {
      pill.textContent = st.status;
      pill.className = "status-pill status-" + st.status;
    }
    setText(cell(row, "duration"), st.duration);
    setText(cell(row, "turns"), String(st.turns));
    setText(cell(row, "cost"), st.cost);
    if (isLive(was) && !isLive(st.status)) {
      row.classList.add("just-ended");
      var link = row.querySelector("a code");
      if (note) note.textContent = "Session " + (link ? link.textContent : "") + " " + st.status + ".";
    }
  }

  function schedule(ms) {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    if (document.hidden || !liveRows().length) return;
    timer = setTimeout(poll, ms);
  }

  function poll() {
    timer = null;
    if (busy) return;
    var rows = liveRows();
    if (!rows.length) return;
    var ids = rows.map(function (r) { return r.getAttribute("data-session-id"); });
    busy = true;
    fetch(url + "?ids=" + encodeURIComponent(ids.join(",")), {
      credentials: "same-origin",
      headers: { "Accept": "application/json" }
    })
      .then(function (r) {
        if (!r.ok) throw new Error("status " + r.status);
        return r.json();
      })
      .then(function (body) {
        var byID = {};
        (body && body.sessions || []).forEach(function (st) { byID[st.id] = st; });
        rows.forEach(function (row) {
          var st = byID[row.getAttribute("data-session-id")];
          if (st) update(row, st);
          else row.setAttribute("data-status", "gone"); // deleted meanwhile: stop asking
        });
        wait = every;
      })
      .catch(function () {
        wait = Math.min(wait * 2, 60000); // a login that expired answers the login page: back off
      })
      .then(function () {
        busy = false;
        schedule(wait);
      });
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) schedule(0);
  });
  schedule(every);
})();
