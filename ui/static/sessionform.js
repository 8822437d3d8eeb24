// The start-session form of an agent's page: "Add" buttons for the
// repository and secret rows, and the equivalent curl command kept in step
// with the fields. Without this script the form works the same: it has
// blank rows to fill, and the server writes the command from what was
// submitted. The command is built as the server builds it (ui/sessionform.go):
// blank fields left out, keys sorted, tokens and secret values shown as
// placeholders.
(function () {
  "use strict";

  var form = document.getElementById("start-session-form");
  if (!form) return;
  var curl = document.getElementById("start-session-curl");

  function values(name) {
    return Array.prototype.map.call(form.querySelectorAll('[name="' + name + '"]'), function (el) {
      return el.value;
    });
  }
  function value(name) {
    var v = values(name);
    return v.length ? v[0] : "";
  }
  function at(list, i) {
    return i < list.length ? list[i] : "";
  }

  // sorted copies objects with their keys in order, as Go writes maps.
  function sorted(v) {
    if (Array.isArray(v)) return v.map(sorted);
    if (v && typeof v === "object") {
      var out = {};
      Object.keys(v).sort().forEach(function (k) { out[k] = sorted(v[k]); });
      return out;
    }
    return v;
  }

  function body() {
    var b = { agent_id: curl.getAttribute("data-agent-id") };
    var prompt = value("prompt").replace(/\r\n/g, "\n");
    b.prompt = prompt.trim() === "" ? "<prompt>" : prompt;
    var timeout = value("timeout").trim();
    if (timeout !== "") b.timeout = /^[+-]?\d+$/.test(timeout) ? parseInt(timeout, 10) : timeout;
    var env = value("environment_id").trim();
    if (env !== "") b.environment_id = env;

    var urls = values("repo_url"), mounts = values("repo_mount_path"),
        checkouts = values("repo_checkout"), tokens = values("repo_token");
    var n = Math.max(urls.length, mounts.length, checkouts.length, tokens.length);
    var repos = [];
    for (var i = 0; i < n; i++) {
      var u = at(urls, i).trim(), m = at(mounts, i).trim(), c = at(checkouts, i).trim(), t = at(tokens, i).trim();
      if (!u && !m && !c && !t) continue;
      var r = { type: "github_repository" };
      if (u) r.url = u;
      if (m) r.mount_path = m;
      if (c) r.checkout = c;
      if (t) r.authorization_token = "<token>";
      repos.push(r);
    }
    if (repos.length) b.resources = repos;

    var names = values("secret_name"), secretValues = values("secret_value");
    var vars = {}, any = false;
    for (var j = 0; j < Math.max(names.length, secretValues.length); j++) {
      var name = at(names, j).trim();
      if (name === "" && at(secretValues, j) === "") continue;
      vars[name] = "<value>";
      any = true;
    }
    if (any) b.secret_env_vars = vars;

    var budget = value("budget_usd").trim();
    if (budget !== "") {
      var f = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(budget) ? Number(budget) : NaN;
      b.budget_usd = isFinite(f) ? f : budget;
    }
    return sorted(b);
  }

  function update() {
    if (!curl) return;
    var data = JSON.stringify(body(), null, 2);
    curl.textContent = "curl -X POST " + curl.getAttribute("data-url") + " \\\n" +
      "  -H \"Authorization: Bearer $AOD_API_TOKEN\" \\\n" +
      "  -H \"Content-Type: application/json\" \\\n" +
      "  -d '" + data.replace(/'/g, "'\\''") + "'";
  }

  // addRow copies a group's last row, blank, with the next number, and
  // puts the keyboard in its first field.
  function addRow(group) {
    var rows = group.querySelectorAll("[data-row]");
    var last = rows[rows.length - 1];
    if (!last) return;
    var n = rows.length;
    var row = last.cloneNode(true);
    Array.prototype.forEach.call(row.querySelectorAll(".errorlist, .re-enter"), function (el) {
      el.parentNode.removeChild(el);
    });
    Array.prototype.forEach.call(row.querySelectorAll("[id]"), function (el) {
      el.id = el.id.replace(/_\d+$/, "_" + n);
    });
    Array.prototype.forEach.call(row.querySelectorAll("label[for]"), function (el) {
      el.htmlFor = el.htmlFor.replace(/_\d+$/, "_" + n);
    });
    Array.prototype.forEach.call(row.querySelectorAll("input"), function (el) {
      el.value = "";
      el.removeAttribute("aria-describedby");
    });
    var number = row.querySelector("[data-row-number]");
    if (number) number.textContent = String(n + 1);
    last.parentNode.insertBefore(row, last.nextSibling);
    var first = row.querySelector("input");
    if (first) first.focus();
    update();
  }

  Array.prototype.forEach.call(form.querySelectorAll("[data-add-row]"), function (button) {
    var group = document.getElementById(button.getAttribute("data-add-row"));
    if (!group) return;
    button.hidden = false;
    button.addEventListener("click", function () { addRow(group); });
  });

  if (curl) {
    form.addEventListener("input", update);
    form.addEventListener("change", update);
    update(); // fields a browser restored (back button) count too
  }
})();
