// Live log of the session page. The server renders the log rows stored when
// the page was made; this follows the session's stream from the last of
// them (?since=), so nothing shows twice. EventSource resumes by itself
// with Last-Event-ID after a dropped connection. Rows render as the server
// renders them: "[stage] name state" lines, output prefixed "[stdout] " or
// "[stderr] " at each line start. Claude's stream-json output also gets a
// readable view, with the raw log a click away.
(function () {
  "use strict";

  var pre = document.getElementById("logs");
  if (!pre) return;
  var streamURL = pre.getAttribute("data-stream-url");
  var lastId = parseInt(pre.getAttribute("data-last-id"), 10) || 0;
  var lastTurn = parseInt(pre.getAttribute("data-last-turn"), 10) || 0;
  var runtime = pre.getAttribute("data-runtime");
  var statusEl = document.getElementById("session-status");
  var exitEl = document.getElementById("session-exit-code");
  var stateEl = document.getElementById("stream-state");
  var formattedEl = document.getElementById("logs-formatted");
  var toggle = document.getElementById("log-toggle");
  var followUpNote = document.getElementById("follow-up-note");
  var terminateForm = document.getElementById("terminate-form");

  var empty = pre.querySelector(".empty");
  var midLine = false; // the last output did not end its line
  var lastStream = "";
  if (!empty) {
    var text = pre.textContent;
    midLine = text.length > 0 && text.charAt(text.length - 1) !== "\n";
    var outs = pre.querySelectorAll("span.stdout, span.stderr");
    if (outs.length) lastStream = outs[outs.length - 1].className;
  }

  function span(cls, text) {
    var s = document.createElement("span");
    if (cls) s.className = cls;
    s.textContent = text;
    return s;
  }

  // nearBottom: keep following the end unless the reader scrolled up.
  function nearBottom(el) {
    return el.scrollHeight - el.scrollTop - el.clientHeight < 48;
  }

  function append(nodes) {
    if (!nodes.length) return;
    if (empty) {
      empty.parentNode.removeChild(empty);
      empty = null;
    }
    var stick = nearBottom(pre);
    for (var i = 0; i < nodes.length; i++) pre.appendChild(nodes[i]);
    if (stick) pre.scrollTop = pre.scrollHeight;
  }

  function endLine(out) {
    if (midLine) {
      out.push(document.createTextNode("\n"));
      midLine = false;
    }
  }

  function setState(text) {
    if (stateEl) stateEl.textContent = text;
  }

  function setStatus(status) {
    if (!statusEl || statusEl.textContent === status) return;
    statusEl.textContent = status;
    statusEl.className = "status-pill status-" + status;
    pre.setAttribute("data-status", status);
    if (status === "terminated" && terminateForm) terminateForm.hidden = true;
    if (followUpNote) {
      if (status === "completed") {
        followUpNote.textContent = "The session completed. ";
        var a = document.createElement("a");
        a.href = window.location.pathname;
        a.textContent = "Reload the page to send a follow-up.";
        followUpNote.appendChild(a);
      } else if (status === "failed") {
        followUpNote.textContent = "This session failed and cannot be resumed. Start a new session from its agent.";
      } else if (status === "terminated") {
        followUpNote.textContent = "This session was terminated and cannot be resumed. Start a new session from its agent.";
      }
    }
  }

  function isTerminalStatus(s) {
    return s === "completed" || s === "failed" || s === "terminated";
  }

  function markRunning() {
    if (statusEl && !isTerminalStatus(statusEl.textContent)) setStatus("running");
  }

  function stageText(ev) {
    var t = "[stage] " + ev.stage + " " + ev.state;
    if (typeof ev.duration_ms === "number" && ev.state !== "started") t += " (" + ev.duration_ms + " ms)";
    if (ev.message) t += ": " + ev.message;
    return t;
  }

  function onStage(ev) {
    var out = [];
    endLine(out);
    var t = stageText(ev);
    out.push(span("stage", t + "\n"));
    append(out);
    if (fmt) fmt.meta(t);
  }

  function onOutput(ev) {
    var out = [];
    if (ev.turn > 1 && ev.turn !== lastTurn) {
      endLine(out);
      out.push(span("turn", "[turn " + ev.turn + "]\n"));
      if (fmt) fmt.meta("[turn " + ev.turn + "]");
    }
    if (ev.turn > 0) lastTurn = ev.turn;
    var stream = ev.stream === "stderr" ? "stderr" : "stdout";
    if (midLine && stream !== lastStream) endLine(out);
    var data = String(ev.data || "");
    while (data !== "") {
      var i = data.indexOf("\n");
      var line = i < 0 ? data : data.slice(0, i + 1);
      data = i < 0 ? "" : data.slice(i + 1);
      if (!midLine) out.push(span("tag tag-" + stream, "[" + stream + "] "));
      out.push(span(stream, line));
      midLine = i < 0;
    }
    lastStream = stream;
    append(out);
    if (fmt) fmt.feed(stream, String(ev.data || ""));
    markRunning();
  }

  function onTerminal(ev) {
    var out = [];
    endLine(out);
    var text, status = null;
    switch (ev.type) {
      case "exit":
        text = "[exit] code " + (ev.code === null || ev.code === undefined ? "none" : ev.code);
        status = ev.code === 0 || ev.code === null || ev.code === undefined ? "completed" : "failed";
        if (exitEl) exitEl.textContent = ev.code === null || ev.code === undefined ? "—" : String(ev.code);
        break;
      case "error":
        text = "[error] " + ev.message;
        status = "failed";
        break;
      case "terminated":
        text = "[terminated] " + ev.message;
        status = "terminated";
        break;
      default: // stale: the session may still be running
        text = "[stale] " + ev.message;
    }
    out.push(span("end end-" + ev.type, text + "\n"));
    append(out);
    if (fmt) fmt.meta(text);
    if (status) setStatus(status);
    setState(ev.type === "stale" ? "Paused: no output for a while. Reload to keep watching." : "Finished");
    if (ev.type !== "stale") settle();
  }

  // settle asks the server how the session stands now that its turn
  // ended (an interrupted turn exits non-zero yet completes the session),
  // and opens the follow-up form when it takes one: no reload needed.
  function settle() {
    var header = document.getElementById("session-header");
    var url = header && header.getAttribute("data-state-url");
    if (!url || !window.fetch) return;
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (st) {
        if (!st) return;
        setStatus(st.status);
        if (exitEl) exitEl.textContent = st.exit_code === null || st.exit_code === undefined ? "—" : String(st.exit_code);
        var stop = document.getElementById("interrupt-form");
        if (stop) stop.hidden = true;
        var form = document.getElementById("follow-up-form");
        var note = document.getElementById("follow-up-note");
        if (st.status === "completed" && form) {
          form.hidden = false;
          if (note) note.hidden = true;
        } else if (note && st.status === "failed") {
          note.textContent = "This session failed and cannot be resumed. Start a new session from its agent.";
        }
      })
      .catch(function () {});
  }

  // --- Claude stream-json, readable ---

  function truncate(s, n) {
    s = String(s);
    return s.length > n ? s.slice(0, n) + "…" : s;
  }

  function toolInput(input) {
    if (!input || typeof input !== "object") return "";
    if (typeof input.command === "string") return input.command;
    if (typeof input.file_path === "string") return input.file_path;
    if (typeof input.pattern === "string") return input.pattern;
    if (typeof input.url === "string") return input.url;
    return JSON.stringify(input);
  }

  function resultText(content) {
    if (typeof content === "string") return content;
    if (Array.isArray(content)) {
      return content.map(function (c) {
        return c && typeof c.text === "string" ? c.text : JSON.stringify(c);
      }).join("\n");
    }
    return content === undefined || content === null ? "" : JSON.stringify(content);
  }

  function ClaudeFormatter(el) {
    this.el = el;
    this.buf = "";
  }

  ClaudeFormatter.prototype.block = function (cls, text) {
    var d = document.createElement("div");
    d.className = "entry " + cls;
    d.textContent = text;
    var stick = nearBottom(this.el);
    this.el.appendChild(d);
    if (stick) this.el.scrollTop = this.el.scrollHeight;
  };

  ClaudeFormatter.prototype.meta = function (text) {
    this.block("meta", text);
  };

  ClaudeFormatter.prototype.feed = function (stream, data) {
    if (stream !== "stdout") {
      this.block("stderr", data.replace(/\n$/, ""));
      return;
    }
    this.buf += data;
    var i;
    while ((i = this.buf.indexOf("\n")) >= 0) {
      var line = this.buf.slice(0, i);
      this.buf = this.buf.slice(i + 1);
      if (line.trim() !== "") this.line(line);
    }
  };

  ClaudeFormatter.prototype.line = function (line) {
    var ev = null;
    if (line.charAt(0) === "{") {
      try { ev = JSON.parse(line); } catch (e) { ev = null; }
    }
    if (!ev || typeof ev.type !== "string") {
      this.block("plain", line);
      return;
    }
    var self = this;
    var content = ev.message && ev.message.content;
    switch (ev.type) {
      case "system":
        if (ev.subtype === "init") {
          var tools = Array.isArray(ev.tools) ? ev.tools.length : 0;
          this.block("meta", "● session started · model " + (ev.model || "?") + " · " + tools + " tools" +
            (ev.cwd ? " · " + ev.cwd : ""));
        } else {
          this.block("meta", "● " + (ev.subtype || "system"));
        }
        break;
      case "assistant":
        if (typeof content === "string") content = [{ type: "text", text: content }];
        (content || []).forEach(function (c) {
          if (!c) return;
          if (c.type === "text") self.block("assistant", c.text);
          else if (c.type === "thinking") self.block("thinking", "(thinking) " + (c.thinking || ""));
          else if (c.type === "tool_use") self.block("tool", "→ " + c.name + "  " + truncate(toolInput(c.input), 400));
        });
        break;
      case "user":
        if (typeof content === "string") content = [{ type: "text", text: content }];
        (content || []).forEach(function (c) {
          if (!c) return;
          if (c.type === "tool_result") {
            self.block(c.is_error ? "tool-result error" : "tool-result", "← " + truncate(resultText(c.content), 1200));
          } else if (c.type === "text") {
            self.block("user", c.text);
          }
        });
        break;
      case "result":
        var parts = [(ev.is_error ? "✗ " : "✓ ") + (ev.subtype || "done")];
        if (typeof ev.duration_ms === "number") parts.push((ev.duration_ms / 1000).toFixed(1) + " s");
        if (typeof ev.num_turns === "number") parts.push(ev.num_turns + (ev.num_turns === 1 ? " turn" : " turns"));
        if (typeof ev.total_cost_usd === "number") parts.push("$" + ev.total_cost_usd.toFixed(4));
        this.block(ev.is_error ? "result error" : "result", parts.join(" · "));
        break;
      default:
        this.block("plain", line);
    }
  };

  var fmt = null;
  if (runtime === "claude" && formattedEl && toggle) {
    fmt = new ClaudeFormatter(formattedEl);
    // Replay what the server rendered into the readable view.
    var nodes = pre.childNodes;
    for (var n = 0; n < nodes.length; n++) {
      var node = nodes[n];
      if (node.nodeType !== 1) continue;
      var cls = node.className;
      if (cls === "stdout" || cls === "stderr") fmt.feed(cls, node.textContent);
      else if (cls === "stage" || cls === "turn") fmt.meta(node.textContent.replace(/\n$/, ""));
    }
    var showRaw = false;
    var show = function () {
      pre.hidden = !showRaw;
      formattedEl.hidden = showRaw;
      toggle.textContent = showRaw ? "Formatted" : "Raw";
      toggle.setAttribute("aria-pressed", showRaw ? "true" : "false");
      var el = showRaw ? pre : formattedEl;
      el.scrollTop = el.scrollHeight;
    };
    toggle.hidden = false;
    toggle.addEventListener("click", function () {
      showRaw = !showRaw;
      show();
    });
    show();
  }

  pre.scrollTop = pre.scrollHeight;
  if (!streamURL || !window.EventSource) return;

  // The stream resumes from the last event shown: EventSource does that
  // itself after a network error (Last-Event-ID); a refused connection (the
  // server's stream limits answer 429 or 503) closes it, so try again here,
  // waiting longer each time.
  var done = false;
  var retryIn = 2000;
  function connect() {
    var source = new EventSource(streamURL + "?since=" + lastId);
    setState("Connecting…");
    source.onopen = function () {
      retryIn = 2000;
      setState("Live");
    };
    source.onmessage = function (m) {
      var ev;
      try { ev = JSON.parse(m.data); } catch (e) { return; }
      if (!ev || typeof ev.type !== "string") return;
      if (m.lastEventId && /^\d+$/.test(m.lastEventId)) lastId = m.lastEventId;
      switch (ev.type) {
        case "start":
          break;
        case "turn_start":
          markRunning();
          break;
        case "stage":
          onStage(ev);
          break;
        case "output":
          onOutput(ev);
          break;
        case "exit":
        case "error":
        case "terminated":
        case "stale":
          done = true;
          source.close();
          onTerminal(ev);
          break;
      }
    };
    source.onerror = function () {
      if (done) return;
      if (source.readyState === EventSource.CLOSED) {
        setState("Disconnected; trying again in " + Math.round(retryIn / 1000) + " s…");
        setTimeout(connect, retryIn);
        retryIn = Math.min(retryIn * 2, 60000);
      } else {
        setState("Reconnecting…");
      }
    };
  }
  connect();
})();
