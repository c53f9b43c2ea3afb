/* The Highway console: five views over the worker's JSON API, routed by the URL's hash
 * (#view?param=value…, so a funnel or a path query can be linked). Data calls carry the token the
 * login page kept in sessionStorage; a 401 sends the user back there. Values from the API are only
 * ever set as text, never as HTML. */
(function () {
  "use strict";
  var KEY = "highway.console.token";
  var POLL_MS = 5000;
  var charts = window.HighwayCharts;
  var authMode = document.querySelector('meta[name="highway-auth"]').content;
  var view = document.getElementById("view");
  var status = document.getElementById("status");
  var laneSelect = document.getElementById("lane");
  var state = { meta: null, timer: null, generation: 0, renderedGeneration: -1, openedAt: 0 };
  var perf = (window.highwayConsole = { renders: [] });

  function toLogin() {
    location.replace("/console/login#" + encodeURIComponent(location.hash.slice(1)));
  }

  function el(tag, attrs, children) {
    var element = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      if (name === "text") element.textContent = attrs.text;
      else element.setAttribute(name, attrs[name]);
    });
    (children || []).forEach(function (child) {
      element.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return element;
  }

  function api(path, params) {
    var query = new URLSearchParams(params || {}).toString();
    var headers = {};
    var token = sessionStorage.getItem(KEY);
    if (token) headers.Authorization = "Bearer " + token;
    return fetch(path + (query ? "?" + query : ""), { headers: headers, cache: "no-store" }).then(function (response) {
      if (response.status === 401) {
        sessionStorage.removeItem(KEY);
        toLogin();
        throw new Error("the API token is missing or wrong");
      }
      return response.json().then(function (body) {
        if (!response.ok) throw new Error(body.error || "the worker answered " + response.status);
        return body;
      });
    });
  }

  function say(text, isError) {
    status.textContent = text || "";
    status.className = isError ? "error" : "";
  }

  function rendered(name) {
    // When the view's data first reached the screen: since navigation and since the view opened.
    if (state.renderedGeneration !== state.generation) {
      state.renderedGeneration = state.generation;
      var now = performance.now();
      perf.renders.push({ view: name, since_navigation_ms: Math.round(now), since_view_ms: Math.round(now - state.openedAt) });
    }
    document.body.setAttribute("data-rendered", name);
  }

  function lane() { return laneSelect.value; }

  function parseHash() {
    var hash = location.hash.slice(1);
    var at = hash.indexOf("?");
    var name = at < 0 ? hash : hash.slice(0, at);
    var params = new URLSearchParams(at < 0 ? "" : hash.slice(at + 1));
    return { name: name || "concurrency", params: params };
  }

  function field(label, input) { return el("label", {}, [label, input]); }

  function select(id, options, chosen) {
    var box = el("select", { id: id });
    options.forEach(function (option) {
      var value = Array.isArray(option) ? option[0] : option;
      var text = Array.isArray(option) ? option[1] : option;
      var item = el("option", { value: value, text: text });
      if (value === chosen) item.selected = true;
      box.appendChild(item);
    });
    return box;
  }

  function table(headers, rows, numeric) {
    var head = el("tr", {}, headers.map(function (h, i) { return el("th", { class: numeric && numeric[i] ? "num" : "", text: h }); }));
    var body = rows.map(function (row) {
      return el("tr", {}, row.map(function (cell, i) {
        return el("td", { class: numeric && numeric[i] ? "num" : "", text: cell === null || cell === undefined ? "—" : String(cell) });
      }));
    });
    return el("table", {}, [el("thead", {}, [head]), el("tbody", {}, body)]);
  }

  function unavailable(what, why) {
    view.appendChild(el("p", { class: "unavailable", id: "unavailable", text: what + " not available: " + why }));
  }

  function percent(value) { return value === null || value === undefined ? "—" : (value * 100).toFixed(1) + "%"; }

  /* ---- (1) live concurrency ---------------------------------------------------------------- */
  function concurrency(params, generation) {
    var meta = state.meta;
    if (!meta.features.concurrency) return unavailable("Live concurrency is", "this worker does not run the realtime role");
    var dims = meta.dimensions;
    var by = params.get("by") || (dims.indexOf("platform") >= 0 ? "platform" : "");
    var controls = el("div", { class: "controls" }, [
      field("Window", select("window", meta.windows, params.get("window") || meta.windows[0])),
      field("By", select("by", [["", "(all users)"]].concat(dims), by)),
      field("Span", select("span", [["900", "15 minutes"], ["3600", "1 hour"], ["21600", "6 hours"]], params.get("span") || "3600"))
    ]);
    var chart = el("div", { id: "concurrency-chart" });
    var latest = el("div", { id: "concurrency-latest" });
    view.append(el("h2", { text: "Live concurrency" }), controls, chart, latest);
    controls.addEventListener("change", function () {
      location.hash = "concurrency?" + new URLSearchParams({ window: value("window"), by: value("by"), span: value("span") });
    });
    function poll() {
      if (generation !== state.generation) return;
      var query = { lane: lane(), window: value("window"), from: String(Math.floor(Date.now() / 1000) - Number(value("span"))) };
      if (value("by")) query.by = value("by");
      api("/api/v1/concurrency", query).then(function (answer) {
        if (generation !== state.generation) return;
        drawConcurrency(answer, chart, latest);
        say("Updated " + new Date().toISOString().slice(11, 19) + " UTC; polling every " + POLL_MS / 1000 + " s.");
        rendered("concurrency");
      }).catch(function (error) { say(error.message, true); });
    }
    poll();
    state.timer = setInterval(poll, POLL_MS);
  }

  function drawConcurrency(answer, chart, latest) {
    var by = answer.by;
    var series = {};
    answer.rows.forEach(function (row) {
      var name = by ? String(row[by]) : "all";
      (series[name] = series[name] || []).push([row.window_start, row.value, row.complete]);
    });
    var names = Object.keys(series).sort();
    charts.line(chart, names.map(function (name) { return { name: name, points: series[name] }; }),
      { label: "distinct users per " + answer.window + " window" + (by ? " by " + by : ""), empty: "no closed window yet" });
    var rows = names.map(function (name) {
      var complete = series[name].filter(function (p) { return p[2]; });
      var last = complete[complete.length - 1];
      return [name, last ? new Date(last[0]).toISOString().slice(0, 16).replace("T", " ") : null, last ? last[1] : null];
    });
    latest.textContent = "";
    latest.append(el("h3", { text: "Last complete window" }), table([by || "users", "window start (UTC)", "users"], rows, [false, false, true]));
  }

  function value(id) { return document.getElementById(id).value; }

  /* ---- (2) event catalogue ----------------------------------------------------------------- */
  function catalog(params, generation) {
    view.append(el("h2", { text: "Event catalogue" }));
    api("/api/v1/catalog", { lane: lane() }).then(function (answer) {
      if (generation !== state.generation) return;
      drawCatalog(answer, params.get("type"));
      rendered("catalog");
    }).catch(function (error) { say(error.message, true); });
  }

  function drawCatalog(answer, chosen) {
    Object.keys(answer.errors || {}).forEach(function (source) {
      view.appendChild(el("p", { class: "error", text: source + ": " + answer.errors[source] }));
    });
    var note = answer.window_s ? "Rate: events of the last complete " + answer.window_s + " s window (" +
      (answer.last_complete_window || "none yet") + ")." : "No realtime rates on this worker.";
    view.appendChild(el("p", { class: "note", text: note + " Lake format: " + answer.lake_format +
      (answer.dlq_read === null ? "." : "; dead letters read: " + answer.dlq_read + " (newest).") }));
    var chart = el("div", { id: "catalog-chart" });
    view.appendChild(chart);
    charts.bars(chart, answer.types.filter(function (t) { return t.events_in_history; }).map(function (t) {
      return { label: t.event_name, value: t.events_in_history };
    }), { label: "events per type within the realtime history", empty: "no realtime counts" });
    var detail = el("div", { id: "catalog-detail" });
    var body = el("tbody");
    answer.types.forEach(function (t) {
      var row = el("tr", { class: "selectable", "data-type": t.event_name }, [
        el("td", { text: t.event_name }),
        el("td", { class: "num", text: t.rate_per_s === null ? "—" : charts.format(t.rate_per_s) }),
        el("td", { class: "num", text: t.events_in_history === null ? "—" : charts.format(t.events_in_history) }),
        el("td", { text: t.first_seen || "—" }),
        el("td", { text: t.last_seen || "—" }),
        el("td", { class: "num", text: t.lake && t.lake.rows !== null ? charts.format(t.lake.rows) : "—" }),
        el("td", { class: "num", text: t.lake ? charts.format(t.lake.files) : "—" }),
        el("td", { class: "num", text: String(t.columns.length) }),
        el("td", { class: "num dlq", text: t.dlq ? String(t.dlq.count) : "—" })
      ]);
      row.addEventListener("click", function () { showType(t, detail, body, row); });
      body.appendChild(row);
      if (t.event_name === chosen) showType(t, detail, body, row);
    });
    var head = el("tr", {}, ["event type", "events/s", "events (history)", "first seen", "last seen", "lake rows", "files",
      "columns", "dead letters"].map(function (h, i) { return el("th", { class: i === 0 || i === 3 || i === 4 ? "" : "num", text: h }); }));
    view.append(el("table", { id: "catalog-table" }, [el("thead", {}, [head]), body]), detail);
    if (answer.unnamed_dlq && answer.unnamed_dlq.count) {
      view.appendChild(el("h3", { text: "Dead letters without an event name" }));
      view.appendChild(dlqBlock(answer.unnamed_dlq));
    }
  }

  function showType(t, detail, body, row) {
    Array.prototype.forEach.call(body.children, function (r) { r.classList.remove("selected"); });
    row.classList.add("selected");
    detail.textContent = "";
    detail.appendChild(el("h3", { text: t.event_name + (t.table ? " (table " + t.table + ")" : "") }));
    if (t.columns.length) {
      detail.appendChild(table(["column", "type", "event property"], t.columns.map(function (c) {
        return [c.name, c.type, c.property || ""];
      })));
    } else {
      detail.appendChild(el("p", { class: "note", text: "No lake table yet." }));
    }
    if (t.dlq) detail.appendChild(dlqBlock(t.dlq));
  }

  function dlqBlock(dlq) {
    var block = el("div", { class: "dlq-reasons" });
    if (!dlq.count) {
      block.appendChild(el("p", { class: "note", text: "No dead letters among the newest read." }));
      return block;
    }
    dlq.reasons.forEach(function (reason) {
      block.appendChild(el("h4", { class: "dlq-reason", "data-reason": reason.reason, "data-count": String(reason.count),
        text: reason.reason + " — " + reason.count }));
      reason.samples.forEach(function (sample) {
        block.appendChild(el("p", { class: "note", text: (sample.at || "") + " partition " + sample.partition + " offset " +
          sample.offset + ": " + sample.detail }));
        block.appendChild(el("pre", { text: sample.value }));
      });
    });
    return block;
  }

  /* ---- (3) funnel builder ------------------------------------------------------------------ */
  function funnel(params, generation) {
    view.append(el("h2", { text: "Funnel" }));
    if (!state.meta.features.funnel) return unavailable("Funnels are", "this worker has no /api/v1/funnel (analytics API)");
    var form = el("form", { class: "controls", id: "funnel-form" }, [
      field("Steps (comma-separated event names)", el("input", { id: "steps", class: "wide", required: "", value: params.get("steps") || "" })),
      field("Within", el("input", { id: "within", value: params.get("within") || "30m", size: "6" })),
      field("By", select("funnel-by", [["", "(none)"]].concat(state.meta.dimensions.filter(function (d) { return d !== "event_name"; })),
        params.get("by") || "")),
      field("Order", select("order", ["strict", "relaxed"], params.get("order") || "strict")),
      el("button", { type: "submit", id: "run-funnel", text: "Run" })
    ]);
    var chart = el("div", { id: "funnel-chart" });
    var details = el("div", { id: "funnel-table" });
    view.append(form, chart, details);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var query = { steps: value("steps").split(",").map(function (s) { return s.trim(); }).filter(Boolean).join(","),
        within: value("within"), order: value("order") };
      if (value("funnel-by")) query.by = value("funnel-by");
      location.hash = "funnel?" + new URLSearchParams(query);
    });
    if (!params.get("steps")) return;
    var query = { lane: lane(), steps: params.get("steps"), within: params.get("within") || "30m", order: params.get("order") || "strict" };
    if (params.get("by")) query.by = params.get("by");
    say("Running the funnel…");
    api("/api/v1/funnel", query).then(function (answer) {
      if (generation !== state.generation) return;
      say("");
      drawFunnel(answer, chart, details, params.get("by"));
      rendered("funnel");
    }).catch(function (error) { say(error.message, true); });
  }

  function drawFunnel(answer, chart, details, by) {
    var steps = answer.steps || [];
    charts.bars(chart, steps.map(function (step, i) {
      return { label: step.name, value: step.users, caption: i ? percent(step.conversion_from_previous) + " of previous" : "" };
    }), { label: "users per funnel step" });
    details.append(table(["step", "users", "from previous", "from first", "median time to convert"], steps.map(function (step, i) {
      return [step.name, charts.format(step.users), i ? percent(step.conversion_from_previous) : "—", percent(step.conversion_from_first),
        step.median_seconds_to_convert === null || step.median_seconds_to_convert === undefined ? "—" : seconds(step.median_seconds_to_convert)];
    }), [false, true, true, true, true]));
    var groups = answer.groups || {};
    var names = Object.keys(groups).sort();
    if (!names.length) return;
    details.appendChild(el("h3", { text: "By " + (by || "group") }));
    var rows = names.map(function (name) {
      var group = groups[name];
      var groupSteps = Array.isArray(group) ? group : group.steps || [];
      return [name].concat(groupSteps.map(function (step) { return charts.format(step.users); }));
    });
    var table_ = table(["group"].concat(steps.map(function (s) { return s.name; })), rows,
      [false].concat(steps.map(function () { return true; })));
    table_.id = "funnel-groups";
    details.appendChild(table_);
  }

  function seconds(value) {
    if (value < 90) return value.toFixed(0) + " s";
    if (value < 5400) return (value / 60).toFixed(1) + " min";
    return (value / 3600).toFixed(1) + " h";
  }

  /* ---- (4) user paths (Sankey) ------------------------------------------------------------- */
  function paths(params, generation) {
    view.append(el("h2", { text: "User paths" }));
    if (!state.meta.features.paths) return unavailable("User paths are", "this worker has no /api/v1/paths (analytics API)");
    var form = el("form", { class: "controls", id: "paths-form" }, [
      field("Event", el("input", { id: "event", required: "", value: params.get("event") || "" })),
      field("Direction", select("direction", ["after", "before"], params.get("direction") || "after")),
      field("Depth", el("input", { id: "depth", type: "number", min: "1", max: "10", value: params.get("depth") || "3" })),
      field("Top", el("input", { id: "top", type: "number", min: "1", max: "100", value: params.get("top") || "10" })),
      el("button", { type: "submit", id: "run-paths", text: "Run" })
    ]);
    var chart = el("div", { id: "paths-chart" });
    var details = el("div", { id: "paths-table" });
    view.append(form, chart, details);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      location.hash = "paths?" + new URLSearchParams({ event: value("event").trim(), direction: value("direction"),
        depth: value("depth"), top: value("top") });
    });
    if (!params.get("event")) return;
    say("Finding paths…");
    api("/api/v1/paths", { lane: lane(), event: params.get("event"), direction: params.get("direction") || "after",
      depth: params.get("depth") || "3", top: params.get("top") || "10" }).then(function (answer) {
      if (generation !== state.generation) return;
      say("");
      charts.sankey(chart, answer.sankey, { label: "user paths " + (params.get("direction") || "after") + " " + params.get("event") });
      var anchor = params.get("event");
      var before = (params.get("direction") || "after") === "before";
      // The API's steps leave the anchor event out; the table shows it where the path meets it.
      details.appendChild(table(["path", "users"], (answer.paths || []).map(function (p) {
        return [(before ? p.steps.concat([anchor]) : [anchor].concat(p.steps)).join(" → "), charts.format(p.users)];
      }), [false, true]));
      rendered("paths");
    }).catch(function (error) { say(error.message, true); });
  }

  /* ---- (5) session statistics -------------------------------------------------------------- */
  function sessions(params, generation) {
    view.append(el("h2", { text: "Sessions" }));
    if (!state.meta.features.sessions) {
      return unavailable("Session statistics are", "this worker has no /api/v1/sessions/stats yet (the sessions stage)");
    }
    api("/api/v1/sessions/stats", { lane: lane() }).then(function (answer) {
      if (generation !== state.generation) return;
      drawSessions(answer);
      rendered("sessions");
    }).catch(function (error) { say(error.message, true); });
  }

  function drawSessions(answer) {
    // The sessions stage's answer: sessions, duration_s {median, p90}, events_per_session {mean,
    // median}, and the same per platform in by_platform.
    function row(name, stats) {
      var duration = stats.duration_s || {};
      var events = stats.events_per_session || {};
      return [name, charts.format(stats.sessions), seconds_or_dash(duration.median), seconds_or_dash(duration.p90),
        number_or_dash(events.mean), number_or_dash(events.median)];
    }
    var byPlatform = answer.by_platform || {};
    var platforms = Object.keys(byPlatform).sort();
    var chart = el("div", { id: "sessions-chart" });
    view.appendChild(chart);
    charts.bars(chart, platforms.map(function (name) { return { label: name, value: byPlatform[name].sessions }; }),
      { label: "sessions per platform", empty: "no sessions yet" });
    var summary = table(["", "sessions", "median duration", "p90 duration", "events per session (mean)", "(median)"],
      [row("all platforms", answer)].concat(platforms.map(function (name) { return row(name, byPlatform[name]); })),
      [false, true, true, true, true, true]);
    summary.id = "sessions-summary";
    view.appendChild(summary);
  }

  function seconds_or_dash(value) { return value === null || value === undefined ? "—" : seconds(value); }
  function number_or_dash(value) { return value === null || value === undefined ? "—" : charts.format(value); }

  /* ---- routing ----------------------------------------------------------------------------- */
  var VIEWS = { concurrency: concurrency, catalog: catalog, funnel: funnel, paths: paths, sessions: sessions };

  function show() {
    var route = parseHash();
    var render = VIEWS[route.name] || concurrency;
    state.generation += 1;
    state.openedAt = performance.now();
    if (state.timer) clearInterval(state.timer);
    state.timer = null;
    say("");
    view.textContent = "";
    document.body.removeAttribute("data-rendered");
    Array.prototype.forEach.call(document.querySelectorAll("nav a"), function (a) {
      a.classList.toggle("active", a.getAttribute("data-view") === route.name);
    });
    render(route.params, state.generation);
  }

  function start() {
    if (authMode === "token" && !sessionStorage.getItem(KEY)) return toLogin();
    document.getElementById("logout").addEventListener("click", function () {
      sessionStorage.removeItem(KEY);
      location.replace("/console/login");
    });
    api("/api/v1/console").then(function (meta) {
      state.meta = meta;
      meta.lanes.forEach(function (name) { laneSelect.appendChild(el("option", { value: name, text: name })); });
      var wanted = sessionStorage.getItem("highway.console.lane");
      if (wanted && meta.lanes.indexOf(wanted) >= 0) laneSelect.value = wanted;
      laneSelect.addEventListener("change", function () {
        sessionStorage.setItem("highway.console.lane", lane());
        show();
      });
      window.addEventListener("hashchange", show);
      show();
    }).catch(function (error) { say(error.message, true); });
  }

  start();
})();
