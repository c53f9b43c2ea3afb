/* Inline SVG charts without dependencies: a time-series line chart, a bar chart and a Sankey diagram.
 * Every mark carries its number in data-* attributes (data-value, …) so a test — or a user's own
 * script — can read what was drawn; labels are set with textContent, never parsed as HTML. */
window.HighwayCharts = (function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var PALETTE = ["#1f6feb", "#e8590c", "#2f9e44", "#ae3ec9", "#f08c00", "#0c8599", "#c2255c", "#5c940d",
    "#364fc7", "#862e9c"];

  function node(tag, attrs, parent, text) {
    var element = document.createElementNS(NS, tag);
    Object.keys(attrs || {}).forEach(function (name) { element.setAttribute(name, String(attrs[name])); });
    if (text !== undefined) element.textContent = String(text);
    if (parent) parent.appendChild(element);
    return element;
  }

  function canvas(container, width, height, label) {
    container.textContent = "";
    container.classList.add("chart");
    return node("svg", { viewBox: "0 0 " + width + " " + height, role: "img", "aria-label": label }, container);
  }

  function niceMax(value) {
    if (!(value > 0)) return 1;
    var power = Math.pow(10, Math.floor(Math.log10(value)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * power >= value) return steps[i] * power;
    return 10 * power;
  }

  function format(value) {
    if (typeof value !== "number") return String(value);
    return Number.isInteger(value) ? value.toLocaleString("en-US") : value.toLocaleString("en-US", { maximumFractionDigits: 2 });
  }

  function clock(ms, withSeconds) {
    var d = new Date(ms);
    var text = String(d.getUTCHours()).padStart(2, "0") + ":" + String(d.getUTCMinutes()).padStart(2, "0");
    return withSeconds ? text + ":" + String(d.getUTCSeconds()).padStart(2, "0") : text;
  }

  function yAxis(svg, box, max) {
    for (var i = 0; i <= 4; i++) {
      var y = box.bottom - (box.bottom - box.top) * i / 4;
      node("line", { class: "grid", x1: box.left, x2: box.right, y1: y, y2: y }, svg);
      node("text", { x: box.left - 6, y: y + 4, "text-anchor": "end" }, svg, format(max * i / 4));
    }
  }

  /* series: [{name, points: [[x ms, y], ...]}] */
  function line(container, series, options) {
    options = options || {};
    var W = 860, H = 300;
    var box = { left: 56, right: W - 170, top: 12, bottom: H - 28 };
    var svg = canvas(container, W, H, options.label || "line chart");
    var xs = [], max = 0;
    series.forEach(function (s) { s.points.forEach(function (p) { xs.push(p[0]); max = Math.max(max, p[1]); }); });
    if (!xs.length) {
      node("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, svg, options.empty || "no data yet");
      return svg;
    }
    var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
    if (x1 === x0) { x0 -= 60000; x1 += 60000; }
    var top = niceMax(max);
    var sx = function (x) { return box.left + (box.right - box.left) * (x - x0) / (x1 - x0); };
    var sy = function (y) { return box.bottom - (box.bottom - box.top) * y / top; };
    yAxis(svg, box, top);
    var fine = x1 - x0 < 10 * 60000;  // ticks minutes apart or less: show the seconds
    for (var i = 0; i <= 5; i++) {
      var t = x0 + (x1 - x0) * i / 5;
      node("text", { x: sx(t), y: H - 8, "text-anchor": "middle" }, svg, clock(t, fine));
    }
    series.forEach(function (s, index) {
      var color = PALETTE[index % PALETTE.length];
      var points = s.points.slice().sort(function (a, b) { return a[0] - b[0]; });
      var d = points.map(function (p, i) { return (i ? "L" : "M") + sx(p[0]).toFixed(1) + "," + sy(p[1]).toFixed(1); });
      var group = node("g", { class: "series", "data-series": s.name }, svg);
      node("path", { d: d.join(" "), fill: "none", stroke: color, "stroke-width": 2 }, group);
      points.forEach(function (p) {
        var dot = node("circle", { class: "point", cx: sx(p[0]).toFixed(1), cy: sy(p[1]).toFixed(1), r: 3, fill: color,
          "data-series": s.name, "data-x": p[0], "data-value": p[1], "data-complete": p[2] === false ? "false" : "true" }, group);
        node("title", {}, dot, s.name + " " + clock(p[0], true) + " UTC: " + format(p[1]));
      });
      var last = points[points.length - 1];
      var ly = box.top + 6 + index * 18;
      node("rect", { x: box.right + 14, y: ly - 8, width: 10, height: 10, fill: color }, svg);
      node("text", { class: "legend", x: box.right + 30, y: ly + 1, "data-series": s.name, "data-value": last[1] }, svg,
        s.name + ": " + format(last[1]));
    });
    return svg;
  }

  /* items: [{label, value, caption}] */
  function bars(container, items, options) {
    options = options || {};
    var W = 860, H = 300;
    var box = { left: 56, right: W - 12, top: 22, bottom: H - 46 };
    var svg = canvas(container, W, H, options.label || "bar chart");
    if (!items.length) {
      node("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, svg, options.empty || "no data");
      return svg;
    }
    var top = niceMax(Math.max.apply(null, items.map(function (item) { return item.value; })));
    yAxis(svg, box, top);
    var slot = (box.right - box.left) / items.length;
    var width = Math.min(120, slot * 0.7);
    items.forEach(function (item, index) {
      var height = (box.bottom - box.top) * item.value / top;
      var x = box.left + slot * index + (slot - width) / 2;
      var color = options.color || PALETTE[0];
      var bar = node("rect", { class: "bar", x: x.toFixed(1), y: (box.bottom - height).toFixed(2), width: width.toFixed(1),
        height: height.toFixed(2), fill: color, "data-label": item.label, "data-value": item.value }, svg);
      node("title", {}, bar, item.label + ": " + format(item.value));
      node("text", { class: "value", x: x + width / 2, y: box.bottom - height - 5, "text-anchor": "middle",
        "data-label": item.label }, svg, format(item.value));
      var name = item.label.length > 22 ? item.label.slice(0, 21) + "…" : item.label;
      node("text", { class: "label", x: x + width / 2, y: box.bottom + 15, "text-anchor": "middle" }, svg, name);
      if (item.caption) {
        node("text", { class: "caption", x: x + width / 2, y: box.bottom + 31, "text-anchor": "middle" }, svg, item.caption);
      }
    });
    return svg;
  }

  function sankeyLayout(data, W, H, nodeWidth, padding) {
    var nodes = data.nodes.map(function (n, i) {
      return { name: n.name, index: i, inValue: 0, outValue: 0, depth: 0, ins: [], outs: [] };
    });
    var links = data.links.filter(function (l) {
      return nodes[l.source] && nodes[l.target] && l.source !== l.target && l.value > 0;
    }).map(function (l) { return { source: nodes[l.source], target: nodes[l.target], value: Number(l.value) }; });
    links.forEach(function (l) {
      l.source.outValue += l.value; l.target.inValue += l.value;
      l.source.outs.push(l); l.target.ins.push(l);
    });
    // Longest path from a source node; a cycle stops growing after as many rounds as there are nodes.
    for (var round = 0; round < nodes.length; round++) {
      var moved = false;
      links.forEach(function (l) {
        if (l.target.depth < l.source.depth + 1) { l.target.depth = l.source.depth + 1; moved = true; }
      });
      if (!moved) break;
    }
    var used = nodes.filter(function (n) { return n.ins.length || n.outs.length; });
    var maxDepth = Math.max.apply(null, used.map(function (n) { return n.depth; }).concat([1]));
    var columns = [];
    used.forEach(function (n) {
      n.value = Math.max(n.inValue, n.outValue);
      (columns[n.depth] = columns[n.depth] || []).push(n);
    });
    var ky = Infinity;
    columns.forEach(function (column) {
      var total = column.reduce(function (sum, n) { return sum + n.value; }, 0);
      ky = Math.min(ky, (H - padding * (column.length - 1)) / total);
    });
    columns.forEach(function (column) {
      column.sort(function (a, b) { return b.value - a.value; });
      var y = 0;
      column.forEach(function (n) {
        n.x = (W - nodeWidth) * n.depth / maxDepth;
        n.y = y;
        n.height = Math.max(1, n.value * ky);
        y += n.height + padding;
      });
    });
    used.forEach(function (n) {
      n.outs.sort(function (a, b) { return a.target.y - b.target.y; });
      n.ins.sort(function (a, b) { return a.source.y - b.source.y; });
      var sy = n.y, ty = n.y;
      n.outs.forEach(function (l) { l.width = Math.max(1, l.value * ky); l.sy = sy + l.width / 2; sy += l.width; });
      n.ins.forEach(function (l) { l.ty = ty + Math.max(1, l.value * ky) / 2; ty += Math.max(1, l.value * ky); });
    });
    return { nodes: used, links: links, maxDepth: maxDepth };
  }

  /* data: {nodes: [{name}], links: [{source, target, value}]} (indexes into nodes) */
  function sankey(container, data, options) {
    options = options || {};
    var W = 860, H = 380, M = { left: 10, right: 10, top: 10, bottom: 10 }, nodeWidth = 14;
    var svg = canvas(container, W, H, options.label || "Sankey diagram");
    if (!data || !data.links || !data.links.length) {
      node("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, svg, options.empty || "no paths");
      return svg;
    }
    var layout = sankeyLayout(data, W - M.left - M.right, H - M.top - M.bottom, nodeWidth, 10);
    var root = node("g", { transform: "translate(" + M.left + "," + M.top + ")" }, svg);
    layout.links.forEach(function (l) {
      var x0 = l.source.x + nodeWidth, x1 = l.target.x, xm = (x0 + x1) / 2;
      var path = node("path", { class: "link", d: "M" + x0 + "," + l.sy + "C" + xm + "," + l.sy + " " + xm + "," + l.ty +
        " " + x1 + "," + l.ty, stroke: PALETTE[l.source.index % PALETTE.length], "stroke-width": l.width.toFixed(2),
        "data-source": l.source.name, "data-target": l.target.name, "data-value": l.value }, root);
      node("title", {}, path, l.source.name + " → " + l.target.name + ": " + format(l.value));
    });
    layout.nodes.forEach(function (n) {
      var rect = node("rect", { class: "node", x: n.x, y: n.y.toFixed(2), width: nodeWidth, height: n.height.toFixed(2),
        fill: PALETTE[n.index % PALETTE.length], "data-name": n.name, "data-value": n.value }, root);
      node("title", {}, rect, n.name + ": " + format(n.value));
      var right = n.depth < layout.maxDepth;
      node("text", { x: right ? n.x + nodeWidth + 4 : n.x - 4, y: n.y + n.height / 2 + 4,
        "text-anchor": right ? "start" : "end" }, root, n.name + " (" + format(n.value) + ")");
    });
    return svg;
  }

  return { line: line, bars: bars, sankey: sankey, format: format, sankeyLayout: sankeyLayout };
})();
