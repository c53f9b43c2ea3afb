/* The console's views over the analytics API: the funnel builder, the user-path Sankey, sessions. */
(function () {
  "use strict";
  var hw = window.HighwayConsole;
  var charts = window.HighwayCharts;
  var el = hw.el, api = hw.api, say = hw.say, rendered = hw.rendered, lane = hw.lane, field = hw.field;
  var select = hw.select, table = hw.table, unavailable = hw.unavailable, percent = hw.percent;
  var value = hw.value, seconds = hw.seconds, state = hw.state, view = hw.view, POLL_MS = hw.POLL_MS;

  /* The catalogue's event names as suggestions for the builders (cached by the worker; optional). */
  function suggestNames(generation, target) {
    if (!state.meta.features.catalog) return;
    api("/api/v1/catalog", { lane: lane() }).then(function (answer) {
      if (generation !== state.generation) return;
      answer.types.forEach(function (t) { target.appendChild(el("option", { value: t.event_name, text: t.event_name })); });
    }).catch(function () { /* suggestions only: the form works without them */ });
  }

  /* ---- (3) funnel builder ------------------------------------------------------------------ */
  function funnel(params, generation) {
    view.append(el("h2", { text: "Funnel" }));
    if (!state.meta.features.funnel) return unavailable("Funnels are", "this worker has no /api/v1/funnel (analytics API)");
    var form = el("form", { class: "controls", id: "funnel-form" }, [
      field("Steps (comma-separated event names)", el("input", { id: "steps", class: "wide", required: "", value: params.get("steps") || "" })),
      field("Within", el("input", { id: "within", value: params.get("within") || "30m", size: "6" })),
      field("By", select("funnel-by", [["", "(none)"], "platform", "app_version", "lane"], params.get("by") || "")),
      field("Order", select("order", ["strict", "relaxed"], params.get("order") || "strict")),
      el("button", { type: "submit", id: "run-funnel", text: "Run" })
    ]);
    var addStep = select("add-step", [["", "+ add a step"]], "");
    form.insertBefore(field("Event types", addStep), form.children[1]);
    addStep.addEventListener("change", function () {
      var steps = document.getElementById("steps");
      steps.value = steps.value.split(",").map(function (s) { return s.trim(); }).filter(Boolean).concat([addStep.value]).join(",");
      addStep.value = "";
    });
    suggestNames(generation, addStep);
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

  /* ---- (4) user paths (Sankey) ------------------------------------------------------------- */
  function paths(params, generation) {
    view.append(el("h2", { text: "User paths" }));
    if (!state.meta.features.paths) return unavailable("User paths are", "this worker has no /api/v1/paths (analytics API)");
    var form = el("form", { class: "controls", id: "paths-form" }, [
      field("Event", el("input", { id: "event", required: "", list: "event-names", value: params.get("event") || "" })),
      field("Direction", select("direction", ["after", "before"], params.get("direction") || "after")),
      field("Depth", el("input", { id: "depth", type: "number", min: "1", max: "10", value: params.get("depth") || "3" })),
      field("Top", el("input", { id: "top", type: "number", min: "1", max: "100", value: params.get("top") || "10" })),
      el("button", { type: "submit", id: "run-paths", text: "Run" })
    ]);
    var names = el("datalist", { id: "event-names" });
    form.appendChild(names);
    suggestNames(generation, names);
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

  hw.views.funnel = funnel;
  hw.views.paths = paths;
  hw.views.sessions = sessions;
})();
