// bes report: draws the parts of the page that need JavaScript from the
// data inlined as JSON in the element #bes-data: the tests
// table, the timing charts (Chart.js), artifacts, options and metrics, and
// the console search. The header, the failures and the console are HTML
// already, readable without it.
(function () {
  "use strict";
  // window.besTimings: milliseconds each step took, for the tests that
  // measure how fast a page opens.
  var timings = window.besTimings = { script: performance.now() };
  var t0 = performance.now();
  var data = JSON.parse(document.getElementById("bes-data").textContent);
  timings.parse = performance.now() - t0;
  if (window.Chart) {
    Chart.defaults.animation = false;
    Chart.defaults.font.size = 11;
  }

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    if (attrs) {
      for (var k in attrs) {
        if (k === "text") e.textContent = attrs[k];
        else if (k === "className") e.className = attrs[k];
        else e.setAttribute(k, attrs[k]);
      }
    }
    (children || []).forEach(function (c) {
      if (c != null) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return e;
  }
  function secs(s) {
    if (s == null) return "";
    if (s < 1) return Math.round(s * 1000) + "ms";
    if (s < 60) return s.toFixed(3).replace(/\.?0+$/, "") + "s";
    var m = Math.floor(s / 60);
    return m + "m" + (s - m * 60).toFixed(1) + "s";
  }
  function bytes(n) {
    if (!n) return "";
    var u = ["B", "KB", "MB", "GB", "TB"], i = 0;
    while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
    return (i ? n.toFixed(1) : n) + " " + u[i];
  }
  // fullURI puts back the prefix a test log's or an output file's URI was
  // written without (data.uri_prefix, "~" and the rest).
  function fullURI(u) {
    return u && data.uri_prefix && u.charAt(0) === "~" ? data.uri_prefix + u.slice(1) : u;
  }
  function link(uri, text) {
    uri = fullURI(uri);
    return uri ? el("a", { href: uri, text: text || uri }) : document.createTextNode(text || "");
  }
  function showMore(container, total, shown, more) {
    if (shown >= total) return;
    var b = el("button", { type: "button", text: "Show " + Math.min(500, total - shown) + " more of " + (total - shown) });
    b.addEventListener("click", function () { b.remove(); more(); });
    container.appendChild(el("div", { className: "tools" }, [b]));
  }

  // ---- Tests ----
  // Failing statuses first, then flaky, then the others; a status unknown
  // to the page (a newer Bazel's) counts as failing, as bes counts it.
  var rank = { FAILED: 0, TIMEOUT: 0, INCOMPLETE: 0, REMOTE_FAILURE: 0, FAILED_TO_BUILD: 1, TOOL_HALTED_BEFORE_TESTING: 1, FLAKY: 2, NO_STATUS: 3, PASSED: 4 };
  function statusRank(t) { return t.did_not_report ? 0 : (t.status in rank ? rank[t.status] : 0); }
  function statusText(t) {
    if (t.did_not_report) return t.status + " (did not report)";
    if (t.aborted) return t.status + " (aborted: " + t.aborted.reason + ")";
    return t.status;
  }
  function drawTests() {
    var root = document.getElementById("tests-root");
    var tests = data.tests || [];
    if (!tests.length) { root.appendChild(el("p", { className: "none", text: "No tests." })); return; }
    var cols = [
      { name: "Status", key: function (t) { return statusRank(t); }, cell: function (t) { return el("span", { className: "status status-" + t.status, text: statusText(t) }); } },
      { name: "Label", key: function (t) { return t.label; }, cell: function (t) { return el("code", { text: t.label }); } },
      { name: "Kind", key: function (t) { return (t.kind || "") + " " + (t.size || ""); }, cell: function (t) { return ((t.kind || "").replace(/ rule$/, "") + " " + (t.size || "").toLowerCase()).trim(); } },
      { name: "Duration", num: true, key: function (t) { return t.duration_seconds; }, cell: function (t) { return secs(t.duration_seconds); } },
      { name: "Runs", num: true, key: function (t) { return t.total_runs; }, cell: function (t) { return String(t.total_runs); } },
      { name: "Attempts", num: true, key: function (t) { return t.attempts; }, cell: function (t) { return String(t.attempts); } },
      { name: "Shards", num: true, key: function (t) { return t.shards; }, cell: function (t) { return String(t.shards); } },
      { name: "Cached", num: true, key: function (t) { return t.cached; }, cell: function (t) { return String(t.cached); } }
    ];
    var counts = {};
    tests.forEach(function (t) { counts[t.status] = (counts[t.status] || 0) + 1; });
    var filters = [{ name: "All", test: function () { return true; } },
      { name: "Failing", test: function (t) { return statusRank(t) <= 1; } },
      { name: "Flaky", test: function (t) { return t.status === "FLAKY"; } },
      { name: "Passed", test: function (t) { return t.status === "PASSED"; } }];
    var state = { filter: filters[0], query: "", sort: 0, dir: 1, shown: 0 };
    var search = el("input", { type: "search", placeholder: "Filter by label or status", "aria-label": "Filter tests" });
    var tools = el("div", { className: "tools" }, [search]);
    var buttons = filters.map(function (f) {
      var b = el("button", { type: "button", "aria-pressed": String(f === state.filter), text: f.name });
      b.addEventListener("click", function () {
        state.filter = f;
        buttons.forEach(function (x) { x.setAttribute("aria-pressed", String(x === b)); });
        render();
      });
      tools.appendChild(b);
      return b;
    });
    tools.appendChild(el("span", { className: "note", id: "tests-count" }));
    root.appendChild(el("p", { text: Object.keys(counts).sort(function (a, b) { return (rank[a] || 0) - (rank[b] || 0); }).map(function (s) { return counts[s] + " " + s; }).join(", ") + " (" + tests.length + " test targets); click a row for its runs and attempts." }));
    root.appendChild(tools);
    var table = el("table", { className: "data", id: "tests-table" });
    var head = el("tr");
    cols.forEach(function (c, i) {
      var th = el("th", { text: c.name, scope: "col" });
      th.addEventListener("click", function () {
        state.dir = state.sort === i ? -state.dir : (c.num ? -1 : 1);
        state.sort = i;
        render();
      });
      head.appendChild(th);
    });
    table.appendChild(el("thead", null, [head]));
    var body = el("tbody");
    table.appendChild(body);
    root.appendChild(table);
    var more = el("div");
    root.appendChild(more);
    var rows = [];
    // logTail links an attempt to the end of its test.log, shown in the
    // section test-logs.
    function logTail(id) {
      var a = el("a", { href: "#log-" + id, text: "its end" });
      a.addEventListener("click", function () { var d = document.getElementById("log-" + id); if (d) d.open = true; });
      return a;
    }
    function runsRow(t) {
      var inner = el("table", { className: "data" });
      inner.appendChild(el("tr", null, ["Run", "Shard", "Attempt", "Status", "Cached", "Duration", "Start", "Strategy", "Log"].map(function (h) { return el("th", { text: h }); })));
      (t.runs || []).forEach(function (r) {
        inner.appendChild(el("tr", null, [
          el("td", { className: "num", text: String(r.run) }), el("td", { className: "num", text: String(r.shard) }), el("td", { className: "num", text: String(r.attempt) }),
          el("td", null, [el("span", { className: "status status-" + r.status, text: r.status })]),
          el("td", { text: r.cached_locally ? "local" : r.cached_remotely ? "remote" : "" }),
          el("td", { className: "num", text: secs(r.duration_seconds) }),
          el("td", { text: r.start || "" }), el("td", { text: r.strategy || "" }),
          el("td", null, [link(r.log, r.log ? "test.log" : ""), r.log_tail ? " " : null, r.log_tail ? logTail(r.log_tail) : null])
        ]));
      });
      if (t.aborted && t.aborted.description) inner.appendChild(el("tr", null, [el("td", { colspan: "9", text: "aborted: " + t.aborted.description })]));
      return el("tr", { className: "runs" }, [el("td", { colspan: String(cols.length) }, [inner])]);
    }
    function append(n) {
      var end = Math.min(rows.length, state.shown + n);
      for (var i = state.shown; i < end; i++) {
        (function (t) {
          var tr = el("tr", { "data-label": t.label, "data-status": t.status });
          cols.forEach(function (c) { tr.appendChild(el("td", c.num ? { className: "num" } : null, [c.cell(t)])); });
          var open = null;
          tr.addEventListener("click", function () {
            if (open) { open.remove(); open = null; return; }
            open = runsRow(t);
            tr.after(open);
          });
          body.appendChild(tr);
        })(rows[i]);
      }
      state.shown = end;
      more.textContent = "";
      showMore(more, rows.length, state.shown, function () { append(500); });
    }
    function render() {
      var q = state.query.toLowerCase(), c = cols[state.sort];
      rows = tests.filter(function (t) {
        return state.filter.test(t) && (!q || t.label.toLowerCase().indexOf(q) >= 0 || statusText(t).toLowerCase().indexOf(q) >= 0);
      });
      rows.sort(function (a, b) {
        var x = c.key(a), y = c.key(b);
        var d = x < y ? -1 : x > y ? 1 : 0;
        if (!d && state.sort === 0) d = b.duration_seconds - a.duration_seconds;
        if (!d) d = a.label < b.label ? -1 : a.label > b.label ? 1 : 0;
        return d * (state.sort === 0 ? 1 : state.dir);
      });
      head.querySelectorAll("th").forEach(function (th, i) {
        if (i === state.sort) th.setAttribute("aria-sort", state.dir > 0 ? "ascending" : "descending");
        else th.removeAttribute("aria-sort");
      });
      body.textContent = "";
      state.shown = 0;
      document.getElementById("tests-count").textContent = rows.length + " shown";
      append(500);
    }
    var timer;
    search.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { state.query = search.value; render(); }, 150);
    });
    render();
  }

  // ---- Timing ----
  var colors = { passed: "#2da44e", failed: "#cf222e", flaky: "#bf8700", other: "#8c959f", action: "#0969da", failedAction: "#a40e26" };
  function chartBox(root, title, height, note) {
    var box = el("div", { className: "chart" }, [el("h3", { text: title })]);
    if (note) box.appendChild(el("p", { className: "note", text: note }));
    var wrap = el("div", { style: "position:relative;height:" + height + "px" });
    var canvas = el("canvas");
    wrap.appendChild(canvas);
    box.appendChild(wrap);
    root.appendChild(box);
    return canvas;
  }
  // lanes packs intervals [s, e] into the fewest rows that do not overlap
  // (first fit, by start): the build's parallelism as it ran.
  function lanes(items) {
    items.sort(function (a, b) { return a.s - b.s; });
    var ends = [];
    items.forEach(function (it) {
      var i = 0;
      while (i < ends.length && ends[i] > it.s) i++;
      ends[i] = it.e;
      it.lane = i;
    });
    return ends.length;
  }
  function drawTiming() {
    var root = document.getElementById("timing-root");
    var t0 = data.summary && data.summary.start ? Date.parse(data.summary.start) : NaN;
    var items = [];
    (data.tests || []).forEach(function (t) {
      (t.runs || []).forEach(function (r) {
        if (!r.start || r.cached_locally || r.cached_remotely) return;
        var s = Date.parse(r.start);
        if (isNaN(s)) return;
        var kind = r.status === "PASSED" ? (t.status === "FLAKY" ? "flaky" : "passed") : (r.status === "NO_STATUS" ? "other" : "failed");
        items.push({ s: s, e: s + Math.max(1, r.duration_seconds * 1000), kind: kind, what: t.label + (t.shards > 1 ? " shard " + r.shard : "") + " attempt " + r.attempt + ": " + r.status + " in " + secs(r.duration_seconds) });
      });
    });
    (data.actions || []).forEach(function (a) {
      if (!a.start || a.duration_seconds == null) return;
      var s = Date.parse(a.start);
      if (isNaN(s)) return;
      items.push({ s: s, e: s + Math.max(1, a.duration_seconds * 1000), kind: a.success ? "action" : "failedAction", what: a.mnemonic + " " + a.label + (a.success ? "" : ": failed") + " in " + secs(a.duration_seconds) });
    });
    var drawn = 0;
    if (items.length && window.Chart) {
      var limit = 3000, note = "Every test attempt the BEP times (cached results left out), and every action it reports with a start time (all of them with --build_event_publish_all_actions), packed into rows that run side by side.";
      if (items.length > limit) {
        items.sort(function (a, b) { return (b.e - b.s) - (a.e - a.s); });
        note += " The " + limit + " longest of " + items.length + " are shown.";
        items = items.slice(0, limit);
      }
      var base = isNaN(t0) ? Math.min.apply(null, items.map(function (i) { return i.s; })) : t0;
      var n = lanes(items);
      var sets = {};
      items.forEach(function (it) {
        var d = sets[it.kind] || (sets[it.kind] = []);
        d.push({ x: [(it.s - base) / 1000, (it.e - base) / 1000], y: it.lane, what: it.what });
      });
      var names = { passed: "test attempt passed", failed: "test attempt failed", flaky: "passed after a failure (flaky)", other: "no status", action: "action", failedAction: "failed action" };
      var canvas = chartBox(root, "Timeline: test attempts and actions", Math.min(900, 80 + n * 14), note);
      canvas.id = "timeline";
      new Chart(canvas, {
        type: "bar",
        data: { datasets: Object.keys(sets).map(function (k) { return { label: names[k], data: sets[k], backgroundColor: colors[k], grouped: false, barPercentage: 0.9, categoryPercentage: 1, minBarLength: 2 }; }) },
        options: {
          indexAxis: "y", responsive: true, maintainAspectRatio: false, parsing: { xAxisKey: "x", yAxisKey: "y" },
          scales: { x: { type: "linear", min: 0, title: { display: true, text: "seconds since the build started" } }, y: { type: "linear", reverse: true, min: -0.5, max: n - 0.5, ticks: { display: false }, grid: { display: false }, title: { display: true, text: "run side by side" } } },
          plugins: { tooltip: { callbacks: { label: function (c) { return c.raw.what; } } } }
        }
      });
      drawn++;
    }
    var cp = data.critical_path || [];
    if (cp.length && window.Chart) {
      var total = data.summary && data.summary.metrics && data.summary.metrics.critical_path_seconds;
      var c2 = chartBox(root, "Critical path" + (total != null ? ": " + secs(total) : ""), Math.min(600, 60 + cp.length * 22), "The steps of Bazel's critical path log (BuildToolLogs \"critical path\"), longest first in Bazel's order.");
      c2.id = "critical-path";
      new Chart(c2, {
        type: "bar",
        data: { labels: cp.map(function (s) { return s.what; }), datasets: [{ label: "seconds", data: cp.map(function (s) { return s.seconds; }), backgroundColor: colors.action }] },
        options: { indexAxis: "y", responsive: true, maintainAspectRatio: false, plugins: { legend: { display: false } }, scales: { y: { ticks: { autoSkip: false, callback: function (v) { var l = this.getLabelForValue(v); return l.length > 70 ? l.slice(0, 69) + "…" : l; } } } } }
      });
      drawn++;
    }
    // The slowest test targets (time of all their attempts) and targets
    // (time of their actions, when the BEP reports actions).
    var slow = [];
    (data.tests || []).forEach(function (t) { if (t.duration_seconds > 0) slow.push({ what: "test " + t.label, s: t.duration_seconds, failed: statusRank(t) <= 1 }); });
    (data.slowest_targets || []).forEach(function (t) { slow.push({ what: "actions of " + t.label, s: t.seconds }); });
    slow.sort(function (a, b) { return b.s - a.s; });
    slow = slow.slice(0, 25);
    if (slow.length && window.Chart) {
      var c3 = chartBox(root, "Slowest tests and targets", 60 + slow.length * 22, "Tests by the time of all their attempts; targets by the time of the actions the BEP reports for them.");
      c3.id = "slowest";
      new Chart(c3, {
        type: "bar",
        data: { labels: slow.map(function (s) { return s.what; }), datasets: [{ label: "seconds", data: slow.map(function (s) { return s.s; }), backgroundColor: slow.map(function (s) { return s.failed ? colors.failed : colors.action; }) }] },
        options: { indexAxis: "y", responsive: true, maintainAspectRatio: false, plugins: { legend: { display: false }, tooltip: { callbacks: { label: function (c) { return secs(c.raw); } } } }, scales: { x: { title: { display: true, text: "seconds" } }, y: { ticks: { autoSkip: false } } } }
      });
      drawn++;
    }
    if (!drawn) root.appendChild(el("p", { className: "none", text: "The stream times no test attempt or action, and has no critical path." }));
  }

  // ---- Console search ----
  function consoleSearch() {
    var input = document.getElementById("console-search");
    if (!input) return;
    var box = document.getElementById("console-lines");
    var lines = box.querySelectorAll(".line");
    var only = document.getElementById("console-only");
    var count = document.getElementById("console-count");
    var timer;
    function run() {
      var q = input.value.toLowerCase(), hits = 0, first = null;
      for (var i = 0; i < lines.length; i++) {
        var hit = q !== "" && lines[i].textContent.toLowerCase().indexOf(q) >= 0;
        lines[i].classList.toggle("hit", hit);
        if (hit) { hits++; if (!first) first = lines[i]; }
      }
      box.classList.toggle("only", only.checked && q !== "");
      count.textContent = q ? hits + " matching lines of " + lines.length : lines.length + " lines";
      if (first && !only.checked) first.scrollIntoView({ block: "nearest" });
    }
    input.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(run, 150); });
    only.addEventListener("change", run);
    run();
  }

  // ---- Artifacts ----
  function drawArtifacts() {
    var root = document.getElementById("artifacts-root");
    var arts = data.artifacts || [];
    if (!arts.length) { root.appendChild(el("p", { className: "none", text: "No output files in the stream." })); return; }
    var targets = [], byKey = {};
    arts.forEach(function (a) {
      var key = a.label + (a.aspect ? " (aspect " + a.aspect + ")" : "") + (a.configuration ? " " + a.configuration : "");
      var t = byKey[key];
      if (!t) { t = byKey[key] = { name: a.label + (a.aspect ? " (aspect " + a.aspect + ")" : ""), files: [] }; targets.push(t); }
      t.files.push(a);
    });
    var note = arts.length + " output files of " + targets.length + " targets, by target and output group.";
    if (data.artifacts_left) note += " " + data.artifacts_left + " more are left out of the page: bes artifacts lists them all.";
    root.appendChild(el("p", { text: note }));
    var list = el("div");
    root.appendChild(list);
    var shown = 0;
    function append(n) {
      var end = Math.min(targets.length, shown + n);
      for (var i = shown; i < end; i++) {
        (function (t) {
          var d = el("details", { className: "target" }, [el("summary", null, [el("code", { text: t.name }), " ", el("span", { className: "group", text: t.files.length + (t.files.length === 1 ? " file" : " files") })])]);
          d.addEventListener("toggle", function () {
            if (!d.open || d.querySelector("ul")) return;
            var groups = {}, order = [];
            t.files.forEach(function (f) {
              var g = f.output_group || (f.directory ? "(directory)" : f.important ? "(important)" : "");
              if (!groups[g]) { groups[g] = []; order.push(g); }
              groups[g].push(f);
            });
            order.forEach(function (g) {
              d.appendChild(el("div", { className: "group", text: "output group " + (g || "(none)") + (groups[g][0].incomplete ? " (incomplete)" : "") }));
              d.appendChild(el("ul", null, groups[g].map(function (f) {
                return el("li", null, [link(f.uri, (f.path_prefix || []).concat([f.name]).join("/")), f.length ? " " + bytes(f.length) : "", f.digest ? " " + f.digest : ""]);
              })));
            });
          });
          list.appendChild(d);
        })(targets[i]);
      }
      shown = end;
      showMore(list, targets.length, shown, function () { append(500); });
    }
    append(500);
  }

  // ---- Options and command line ----
  function drawOptions() {
    var root = document.getElementById("options-root");
    var any = false;
    (data.command_lines || []).forEach(function (c) {
      root.appendChild(el("h3", { text: "Command line: " + (c.label || "(unlabelled)") }));
      root.appendChild(el("pre", { text: c.text }));
      any = true;
    });
    var o = data.options;
    if (o) {
      [["explicit_cmd_line", "Options given explicitly"], ["cmd_line", "Every option of the command (rc files included)"], ["explicit_startup_options", "Startup options given explicitly"], ["startup_options", "Startup options"]].forEach(function (p) {
        var v = o[p[0]] || [];
        if (!v.length) return;
        root.appendChild(el("h3", { text: p[1] + " (" + v.length + ")" }));
        root.appendChild(el("ul", { className: "options mono" }, v.map(function (x) { return el("li", { text: x }); })));
        any = true;
      });
      if (o.tool_tag) root.appendChild(el("p", { text: "tool tag: " + o.tool_tag }));
    }
    if (!any) root.appendChild(el("p", { className: "none", text: "The stream gives no command line or options." }));
  }

  // ---- Metrics ----
  function drawMetrics() {
    var root = document.getElementById("metrics-root");
    var m = data.summary && data.summary.metrics;
    if (!m) { root.appendChild(el("p", { className: "none", text: "The stream has no BuildMetrics or BuildToolLogs event." })); return; }
    var rows = [
      ["actions executed", m.actions_executed], ["actions created", m.actions_created],
      ["action cache hits", m.action_cache_hits], ["action cache misses", m.action_cache_misses],
      ["processes", m.process_stats || m.processes], ["critical path", secs(m.critical_path_seconds)],
      ["packages loaded", m.packages_loaded], ["targets loaded", m.targets_loaded], ["targets configured", m.targets_configured],
      ["wall time", secs(m.wall_time_seconds)], ["CPU time", secs(m.cpu_time_seconds)],
      ["analysis phase", secs(m.analysis_time_seconds)], ["execution phase", secs(m.execution_time_seconds)],
      ["peak heap after GC", bytes(m.peak_heap_bytes)], ["profile", m.profile_uri]
    ];
    var dl = el("dl", { className: "kv" });
    rows.forEach(function (r) {
      if (r[1] == null || r[1] === "" || r[1] === 0) return;
      dl.appendChild(el("dt", { text: r[0] }));
      dl.appendChild(el("dd", null, [r[0] === "profile" ? link(String(r[1])) : String(r[1])]));
    });
    root.appendChild(dl);
    var s = data.summary;
    if (s.configurations && s.configurations.length) root.appendChild(el("p", { text: "configurations: " + s.configurations.join(", ") }));
  }

  [drawTests, drawTiming, consoleSearch, drawArtifacts, drawOptions, drawMetrics].forEach(function (f) {
    var t = performance.now();
    try { f(); timings[f.name] = performance.now() - t; } catch (e) {
      var p = el("p", { className: "note", text: "bes report: " + f.name + ": " + e });
      document.querySelector("main").appendChild(p);
      if (window.console) console.error(e);
    }
  });
  document.documentElement.setAttribute("data-ready", "true");
})();
