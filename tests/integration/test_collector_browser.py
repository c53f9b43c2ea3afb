"""The JavaScript snippet in a real headless browser (Debian's chromium) against a collector.

A page on one origin loads ``highway.js`` from the collector's origin (``/v1/highway.js``), tracks
events, and sends them: by fetch (a CORS preflight, then POSTs with the key in the Authorization
header), by ``navigator.sendBeacon`` when its tab is hidden (``visibilitychange``), and again by
beacon when the page is left (``visibilitychange`` and ``pagehide``).

* ``test_real_collector_stores_every_tracked_event_once``: the real ``collector`` role (a
  ``highway worker --role collector`` process on the session broker) with the lane's key and the
  page's origin allowed; every tracked event must be in ``<lane>.events.all`` exactly once, with the
  snippet's fields, in the requests the snippet batched.
* ``test_fake_collector_sees_the_wire_contract_and_a_503_retry``: a recording fake speaking the
  contract (docs/collector-clients.md). The real collector answers 503 only when Kafka is away or it
  is stopping — not on demand for one request — so the retry path (same body, not before
  ``Retry-After``) and the exact requests on the wire (preflight headers, beacon content type and
  ``?key=``) are checked here.

In both, the browser's console must hold no error but the one a scripted 503 causes.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from selenium import webdriver

from connectors.collector_js import SNIPPET_CONTENT_TYPE, snippet_bytes
from core.collect.keys import hash_key
from core.envvars import with_overrides
from core.errors import TransientError
from tests.integration.browser_support import LoopThread, chromium, serve, wait_until
from tests.integration.collector_support import topic_events
from tests.support import WorkerProcess
from tests.support import wait_until as wait_for

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[2] / ".highway" / "artifacts"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
KAFKA_WAIT_S = 60.0
REAL_KEY = "browser-test-key-real-collector"


@dataclass
class Post:
    content_type: str
    authorization: str | None
    query_key: str | None
    events: list[dict[str, Any]]
    status: int
    at: float


@dataclass
class FakeCollector:
    """Speaks the collector contract's HTTP side and records what it read; writes to no Kafka."""

    key: str = "browser-test-key"
    lane: str = "web"
    origin_allowed: str = ""
    url: str = ""
    posts: list[Post] = field(default_factory=list)
    preflights: list[dict[str, str]] = field(default_factory=list)
    answer_next: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def cors(self, request: web.Request) -> dict[str, str]:
        origin = request.headers.get("Origin", "")
        if origin != self.origin_allowed:
            return {}
        return {"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": "Retry-After"}

    async def preflight(self, request: web.Request) -> web.Response:
        with self.lock:
            self.preflights.append(dict(request.headers))
        if not self.cors(request):
            return web.json_response({"error": "origin not allowed"}, status=403)
        headers = {
            **self.cors(request),
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": "Authorization, Content-Type, Content-Encoding, X-Highway-Key",
            "Access-Control-Max-Age": "600",
        }
        return web.Response(status=204, headers=headers)

    async def events(self, request: web.Request) -> web.Response:
        authorization = request.headers.get("Authorization")
        query_key = request.query.get("key")
        if authorization != f"Bearer {self.key}" and query_key != self.key:
            return web.json_response({"error": "bad key"}, status=401, headers=self.cors(request))
        events = json.loads(await request.read())
        with self.lock:
            status, extra = self.answer_next.pop(0) if self.answer_next else (200, {})
            post = Post(request.content_type, authorization, query_key, events, status, time.monotonic())
            self.posts.append(post)
        body = {"accepted": len(events) if status == 200 else 0, "rejected": [], "request_id": "fake"}
        return web.json_response(body, status=status, headers={**self.cors(request), **extra})

    async def snippet(self, request: web.Request) -> web.Response:
        return web.Response(body=snippet_bytes(), headers={"Content-Type": SNIPPET_CONTENT_TYPE})

    def received(self) -> list[dict[str, Any]]:
        """Events of the requests the collector answered 200: what it accepted."""
        with self.lock:
            return [event for post in self.posts if post.status == 200 for event in post.events]


PAGE = """<!doctype html><html><head><title>highway snippet test</title><link rel="icon" href="data:,">
<script src="{collector}/v1/highway.js"></script></head>
<body><h1>Highway collector snippet</h1><p id="state">loading</p><script>
window.highwayErrors = [];
highway.init({{url: "{collector}", key: "{key}", lane: "{lane}", batchSize: 5, flushMs: 600000,
  baseBackoffMs: 50, onError: function (kind, detail) {{ window.highwayErrors.push([kind, detail]); }}}});
highway.identify("browser-user-1");
document.getElementById("state").textContent = "ready";
</script></body></html>"""


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.stop()


@pytest.fixture
def collector(loop_thread: LoopThread) -> Iterator[FakeCollector]:
    fake = FakeCollector()
    app = web.Application()
    app.router.add_route("OPTIONS", "/v1/events", fake.preflight)
    app.router.add_post("/v1/events", fake.events)
    app.router.add_get("/v1/highway.js", fake.snippet)
    runner, fake.url = loop_thread.run(serve(app))
    yield fake
    loop_thread.run(runner.cleanup())


@pytest.fixture
def serve_page(loop_thread: LoopThread) -> Iterator[Callable[[str, str, str], str]]:
    """``serve_page(collector_url, key, lane)``: a second origin serving the test page (and a page to
    navigate away to); returns that origin."""
    runners: list[web.AppRunner] = []

    def start(collector_url: str, key: str, lane: str) -> str:
        page = PAGE.format(collector=collector_url, key=key, lane=lane)

        async def index(request: web.Request) -> web.Response:
            return web.Response(text=page, content_type="text/html")

        async def elsewhere(request: web.Request) -> web.Response:
            text = '<!doctype html><link rel="icon" href="data:,"><title>elsewhere</title>'
            return web.Response(text=text, content_type="text/html")

        app = web.Application()
        app.router.add_get("/", index)
        app.router.add_get("/elsewhere", elsewhere)
        runner, url = loop_thread.run(serve(app))
        runners.append(runner)
        return url

    yield start
    for runner in runners:
        loop_thread.run(runner.cleanup())


@pytest.fixture
def page_origin(serve_page: Callable[[str, str, str], str], collector: FakeCollector) -> str:
    url = serve_page(collector.url, collector.key, collector.lane)
    collector.origin_allowed = url
    return url


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    with chromium(tmp_path / "chromium-profile") as driver:
        yield driver


def test_real_collector_stores_every_tracked_event_once(
    browser: webdriver.Chrome, serve_page: Callable[[str, str, str], str], make_settings: Any
) -> None:
    base = make_settings()
    lane = base.lanes[0]
    page_origin = serve_page(f"http://{base.http_host}:{base.http_port}", REAL_KEY, lane)
    settings = with_overrides(
        base, collector_api_keys={lane: [hash_key(REAL_KEY)]}, collector_cors_origins=[page_origin]
    )

    def stored_once(count: int) -> list[dict[str, Any]] | None:
        try:
            events = topic_events(settings)
        except TransientError:  # a just-created topic's partition leader is not known yet: ask again
            return None
        return events if len(events) >= count else None

    with WorkerProcess(settings, roles="collector") as worker:
        worker.wait_healthy()
        wait_for(
            lambda: httpx.get(f"{worker.base_url}/ready", timeout=2).status_code == 200, 60, 0.2, "/ready"
        )
        browser.get(page_origin + "/")  # the snippet itself comes from the collector's /v1/highway.js
        wait_until(
            browser, lambda: browser.find_element("id", "state").text == "ready", "the page initialised"
        )

        # fetch: two full batches of 5, each preflighted (cross-origin JSON with Authorization).
        browser.execute_script("for (var i = 0; i < 10; i++) highway.track('page_view', {n: i});")
        wait_for(lambda: stored_once(10), KAFKA_WAIT_S, 0.5, "10 fetched events in the topic")

        # visibilitychange → hidden: 3 buffered events go by beacon (text/plain, ?key=).
        browser.execute_script("for (var i = 10; i < 13; i++) highway.track('scroll', {n: i});")
        page_tab = browser.current_window_handle
        browser.switch_to.new_window("tab")
        wait_for(lambda: stored_once(13), KAFKA_WAIT_S, 0.5, "3 events beaconed when the tab was hidden")
        browser.close()
        browser.switch_to.window(page_tab)

        # Leaving the page: 2 more by beacon, once although Chromium fires visibilitychange and pagehide.
        browser.execute_script("for (var i = 13; i < 15; i++) highway.track('click', {n: i});")
        logs = browser.get_log("browser")
        errors = browser.execute_script("return window.highwayErrors")
        browser.get(page_origin + "/elsewhere")
        events = wait_for(lambda: stored_once(15), KAFKA_WAIT_S, 0.5, "2 events beaconed on pagehide")
        metrics = httpx.get(f"{worker.base_url}/metrics", timeout=5).text

    assert sorted(e["properties"]["n"] for e in events) == list(range(15)), "an event is missing or twice"
    ids = [e["event_id"] for e in events]
    assert len(set(ids)) == 15
    assert all(UUID_RE.match(event_id) for event_id in ids)
    # One request per batch, in order: fetch 5 + 5, beacon 3 (hidden tab), beacon 2 (left page).
    per_request: dict[str, list[int]] = {}
    for event in events:
        per_request.setdefault(event["request_id"], []).append(event["properties"]["n"])
    assert sorted(map(sorted, per_request.values())) == [
        [0, 1, 2, 3, 4],
        [5, 6, 7, 8, 9],
        [10, 11, 12],
        [13, 14],
    ]
    assert 'highway_collector_requests_total{code="200"} 4.0' in metrics
    assert {e["user_id"] for e in events} == {"browser-user-1"}
    assert len({e["session_id"] for e in events}) == 1
    assert len({e["device_id"] for e in events}) == 1
    assert {e["platform"] for e in events} == {"web"}
    assert {e["lane"] for e in events} == {lane}
    assert all(isinstance(e["client_ts"], int) and e["client_ts"] > 1_600_000_000_000 for e in events)
    assert all(e["server_ts"] >= e["client_ts"] - 60_000 for e in events)  # stamped by the collector
    assert {e["event_name"] for e in events} == {"page_view", "scroll", "click"}
    assert errors == []
    logs += browser.get_log("browser")
    assert [entry["message"] for entry in logs if entry["level"] == "SEVERE"] == []


def test_fake_collector_sees_the_wire_contract_and_a_503_retry(
    browser: webdriver.Chrome, collector: FakeCollector, page_origin: str
) -> None:
    browser.get(page_origin + "/")
    wait_until(browser, lambda: browser.find_element("id", "state").text == "ready", "the page initialised")

    # fetch: two full batches of 5; the first is answered 503 and retried with the same body, no sooner
    # than its Retry-After (readable cross-origin only through Access-Control-Expose-Headers).
    collector.answer_next.append((503, {"Retry-After": "1"}))
    browser.execute_script("for (var i = 0; i < 10; i++) highway.track('page_view', {n: i});")
    wait_until(browser, lambda: len(collector.received()) == 10, "10 fetched events accepted")
    assert [p.status for p in collector.posts] == [503, 200, 200]
    retried = next(p for p in collector.posts[1:] if p.events[0]["properties"]["n"] == 0)
    assert collector.posts[0].events == retried.events, "a retry must resend the same events and event_ids"
    assert retried.at - collector.posts[0].at >= 1.0, "the retry came before Retry-After"
    assert all(p.authorization == f"Bearer {collector.key}" for p in collector.posts)
    assert all(p.content_type == "application/json" for p in collector.posts)
    assert collector.preflights, "a cross-origin JSON POST with Authorization must be preflighted"
    preflight = collector.preflights[0]
    assert preflight["Origin"] == page_origin
    assert preflight["Access-Control-Request-Method"] == "POST"
    assert "authorization" in preflight["Access-Control-Request-Headers"].lower()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "collector-browser.png"))

    # visibilitychange → hidden: 3 buffered events (less than a batch, no timer due) go by beacon.
    browser.execute_script("for (var i = 10; i < 13; i++) highway.track('scroll', {n: i});")
    page_tab = browser.current_window_handle
    browser.switch_to.new_window("tab")
    wait_until(browser, lambda: len(collector.received()) == 13, "3 events beaconed when the tab was hidden")
    browser.close()
    browser.switch_to.window(page_tab)

    # Leaving the page: 2 more leave by beacon. Chromium fires visibilitychange (hidden) while unloading
    # and then pagehide; the snippet listens to both (Safari may give only pagehide), nothing goes twice.
    browser.execute_script("for (var i = 13; i < 15; i++) highway.track('click', {n: i});")
    logs = browser.get_log("browser")  # read before leaving: the page's log goes with it
    errors = browser.execute_script("return window.highwayErrors")
    browser.get(page_origin + "/elsewhere")
    wait_until(browser, lambda: len(collector.received()) == 15, "2 events beaconed on pagehide")

    beacons = [p for p in collector.posts if p.authorization is None]
    assert [len(p.events) for p in beacons] == [3, 2]
    assert all(p.content_type == "text/plain" and p.query_key == collector.key for p in beacons)

    events = collector.received()
    assert sorted(e["properties"]["n"] for e in events) == list(range(15))
    ids = [e["event_id"] for e in events]
    assert len(set(ids)) == 15, "an event was accepted twice"
    assert all(UUID_RE.match(event_id) for event_id in ids)
    assert {e["user_id"] for e in events} == {"browser-user-1"}
    assert len({e["session_id"] for e in events}) == 1
    assert len({e["device_id"] for e in events}) == 1
    assert {e["platform"] for e in events} == {"web"}
    assert {e["lane"] for e in events} == {collector.lane}
    assert all(isinstance(e["client_ts"], int) and e["client_ts"] > 1_600_000_000_000 for e in events)
    assert {e["event_name"] for e in events} == {"page_view", "scroll", "click"}

    assert errors == []
    logs += browser.get_log("browser")
    severe = [entry["message"] for entry in logs if entry["level"] == "SEVERE"]
    unexpected = [m for m in severe if "status of 503" not in m]
    assert unexpected == [], unexpected
