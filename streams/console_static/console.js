/* The Highway console's frame: API calls, DOM helpers and the routing of five views (in
 * views_live.js and views_analytics.js) by the URL's hash (#view?param=value…, so a funnel or a path
 * query can be linked). Data calls carry the token the login page kept in sessionStorage; a 401
 * sends the user back there. Values from the API are only ever set as text, never as HTML. */
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

  function value(id) { return document.getElementById(id).value; }

  function seconds(value) {
    if (value < 90) return value.toFixed(0) + " s";
    if (value < 5400) return (value / 60).toFixed(1) + " min";
    return (value / 3600).toFixed(1) + " h";
  }

  /* ---- routing ----------------------------------------------------------------------------- */
  var VIEWS = {};  // filled by views_live.js and views_analytics.js

  function show() {
    var route = parseHash();
    var render = VIEWS[route.name] || VIEWS.concurrency;
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

  window.HighwayConsole = {
    views: VIEWS, el: el, api: api, say: say, rendered: rendered, lane: lane, field: field, select: select,
    table: table, unavailable: unavailable, percent: percent, value: value, seconds: seconds, state: state,
    view: view, POLL_MS: POLL_MS
  };
  // The view scripts load after this one (defer keeps their order); all have run by DOMContentLoaded.
  document.addEventListener("DOMContentLoaded", start);
})();
