/* Highway collector snippet: dependency-free browser client for POST /v1/events (docs/collector-clients.md).
 *
 *   highway.init({url: "https://collect.example.com", key: "<lane key>", lane: "web", batchSize: 20, flushMs: 5000});
 *   highway.identify("user-42");                 // optional; until then user_id is the device id
 *   highway.track("contest_join", {contest_id: "c1", fee: 49});
 *
 * Events are batched (batchSize, or flushMs after the first buffered one) and sent with fetch (keepalive).
 * When the page is hidden (visibilitychange) or left (pagehide) whatever is unsent goes with
 * navigator.sendBeacon as text/plain with the key in the query (a beacon cannot set headers nor trigger a
 * CORS preflight). 429, 5xx and network errors are retried with exponential backoff and full jitter, at
 * least Retry-After seconds when the collector exposes that header. A retry resends the same body, so an
 * event that lands twice lands with the same event_id, which the pipeline deduplicates on.
 */
(function (root) {
  "use strict";
  var RETRY = { 429: 1, 500: 1, 502: 1, 503: 1, 504: 1 };
  var BEACON_MAX_BYTES = 60000; // browsers refuse beacons (and keepalive fetches) above 64 KiB in flight
  var cfg = null;
  var queue = [];
  var waiting = []; // batches between a failed attempt and their retry: {body, attempt, timer}
  var timer = null;

  function uuid() {
    var c = root.crypto;
    if (c && typeof c.randomUUID === "function") return c.randomUUID();
    var b = c.getRandomValues(new Uint8Array(16)); // randomUUID needs a secure context; this does not
    b[6] = (b[6] & 15) | 64;
    b[8] = (b[8] & 63) | 128;
    var h = Array.prototype.map.call(b, function (x) { return (x + 256).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  function stored(storage, name) {
    try {
      var value = root[storage].getItem(name);
      if (!value) { value = uuid(); root[storage].setItem(name, value); }
      return value;
    } catch (e) {
      return uuid(); // storage blocked (privacy mode): ids last as long as the page
    }
  }

  function endpoint(withKey) {
    var q = "?lane=" + encodeURIComponent(cfg.lane);
    return cfg.url + "/v1/events" + q + (withKey ? "&key=" + encodeURIComponent(cfg.key) : "");
  }

  function report(kind, detail) {
    if (cfg && typeof cfg.onError === "function") cfg.onError(kind, detail);
  }

  function delayMs(attempt, retryAfter) {
    var jitter = Math.random() * Math.min(cfg.maxBackoffMs, cfg.baseBackoffMs * Math.pow(2, attempt));
    var floor = parseFloat(retryAfter);
    return isNaN(floor) ? jitter : floor * 1000 + Math.min(jitter, 2 * cfg.baseBackoffMs);
  }

  function retryLater(body, attempt, retryAfter, why) {
    if (attempt + 1 > cfg.maxRetries) { report("gave_up", why); return; }
    var entry = { body: body, attempt: attempt + 1, timer: null };
    entry.timer = setTimeout(function () {
      waiting.splice(waiting.indexOf(entry), 1);
      post(entry.body, entry.attempt);
    }, delayMs(attempt, retryAfter));
    waiting.push(entry);
  }

  function post(body, attempt) {
    var headers = { "Content-Type": "application/json", Authorization: "Bearer " + cfg.key };
    var keepalive = body.length < BEACON_MAX_BYTES;
    return fetch(endpoint(false), { method: "POST", headers: headers, body: body, keepalive: keepalive, credentials: "omit" })
      .then(function (res) {
        if (res.ok) return res.json().then(function (answer) {
          if (answer.rejected && answer.rejected.length) report("rejected", answer.rejected);
        }, function () {});
        if (RETRY[res.status]) return retryLater(body, attempt, res.headers.get("Retry-After"), res.status);
        report("http_" + res.status, body); // 400 all rejected, 401 bad key, 413 too large: retrying cannot help
      }, function (err) {
        retryLater(body, attempt, null, String(err));
      });
  }

  function take() {
    if (timer) { clearTimeout(timer); timer = null; }
    var batch = queue;
    queue = [];
    return batch;
  }

  function flush() {
    var sends = [];
    var batch = take();
    for (var i = 0; i < batch.length; i += cfg.batchSize) {
      sends.push(post(JSON.stringify(batch.slice(i, i + cfg.batchSize)), 0));
    }
    return Promise.all(sends).then(function () {});
  }

  function beaconChunks(events) {
    var chunks = [], chunk = [], size = 2;
    events.forEach(function (event) {
      var text = JSON.stringify(event);
      if (chunk.length && size + text.length + 1 > BEACON_MAX_BYTES) { chunks.push(chunk); chunk = []; size = 2; }
      chunk.push(event);
      size += text.length + 1;
    });
    if (chunk.length) chunks.push(chunk);
    return chunks.map(function (c) { return JSON.stringify(c); });
  }

  function flushBeacon() {
    if (!cfg) return;
    var bodies = beaconChunks(take());
    waiting.splice(0).forEach(function (entry) { clearTimeout(entry.timer); bodies.push(entry.body); });
    bodies.forEach(function (body) {
      var sent = false;
      try { sent = !!(root.navigator.sendBeacon && root.navigator.sendBeacon(endpoint(true), body)); } catch (e) {}
      if (!sent) post(body, 0); // beacon refused (quota): a keepalive fetch still outlives the page
    });
  }

  function init(options) {
    if (!options || !options.url || !options.key || !options.lane) throw new Error("highway.init needs url, key and lane");
    cfg = {
      url: String(options.url).replace(/\/+$/, ""),
      key: options.key,
      lane: options.lane,
      batchSize: options.batchSize || 20,
      flushMs: options.flushMs === undefined ? 5000 : options.flushMs,
      maxRetries: options.maxRetries === undefined ? 10 : options.maxRetries,
      baseBackoffMs: options.baseBackoffMs || 250,
      maxBackoffMs: options.maxBackoffMs || 30000,
      appVersion: options.appVersion || "web",
      onError: options.onError,
      deviceId: stored("localStorage", "highway_device_id"),
      sessionId: stored("sessionStorage", "highway_session_id"),
      userId: options.userId || null,
    };
    root.document.addEventListener("visibilitychange", function () {
      if (root.document.visibilityState === "hidden") flushBeacon();
    });
    root.addEventListener("pagehide", flushBeacon);
  }

  function track(name, props) {
    if (!cfg) throw new Error("highway.track before highway.init");
    queue.push({
      event_name: String(name),
      event_id: uuid(),
      user_id: cfg.userId || cfg.deviceId,
      session_id: cfg.sessionId,
      lane: cfg.lane,
      platform: "web",
      app_version: cfg.appVersion,
      device_id: cfg.deviceId,
      client_ts: Date.now(),
      properties: props || {},
    });
    if (queue.length >= cfg.batchSize) flush();
    else if (!timer && cfg.flushMs > 0) timer = setTimeout(flush, cfg.flushMs);
  }

  root.highway = {
    init: init,
    track: track,
    flush: flush,
    identify: function (userId) { cfg.userId = String(userId); },
    pending: function () { return queue.length + waiting.length; },
  };
})(typeof window !== "undefined" ? window : this);
