/* The console's views over the live data: concurrency by platform and the event-type catalogue. */
(function () {
  "use strict";
  var hw = window.HighwayConsole;
  var charts = window.HighwayCharts;
  var el = hw.el, api = hw.api, say = hw.say, rendered = hw.rendered, lane = hw.lane, field = hw.field;
  var select = hw.select, table = hw.table, unavailable = hw.unavailable, percent = hw.percent;
  var value = hw.value, seconds = hw.seconds, state = hw.state, view = hw.view, POLL_MS = hw.POLL_MS;

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
      return [name, last ? new Date(last[0]).toISOString().slice(0, 19).replace("T", " ") : null, last ? last[1] : null];
    });
    latest.textContent = "";
    latest.append(el("h3", { text: "Last complete window" }), table([by || "users", "window start (UTC)", "users"], rows, [false, false, true]));
  }


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
    view.appendChild(el("p", { class: "note", text: note + " Read at " + answer.read_at + ". Lake format: " + answer.lake_format +
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


  hw.views.concurrency = concurrency;
  hw.views.catalog = catalog;
})();
