"""The web console in a real headless browser (Debian's chromium through Selenium).

* ``test_console_on_a_real_worker``: a worker with the router, lake and realtime roles and an API
  token; known events go through the real pipeline (``<lane>.events.all`` → router → per-event
  topics, the lake, the realtime windows, the DLQ). The user logs in on ``/console/login``; the
  concurrency chart's points and legend, and the catalogue's table, bars and DLQ reasons, must show
  the API's numbers, which must equal the truth computed here from the events produced. Session
  statistics must say "not available" gracefully while the sessions stage is absent.
* ``test_funnel_paths_and_sessions_against_the_contract``: the console's pages served next to an
  in-test fake of the analytics API (``/api/v1/funnel``, ``/api/v1/paths``,
  ``/api/v1/sessions/stats``) that answers exactly the contract of the h-analytics and h-sessions
  briefs and records the queries: the funnel's bars, the Sankey's links and nodes and the sessions
  table must carry the fake's numbers, and the form must send the query the user built.

The browser's console must hold no error (but the 401 of a deliberately wrong token). Each view's
time from navigation to its data on screen is printed (not asserted); screenshots are kept under
the pytest base temp directory (``console-artifacts/``).
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from selenium import webdriver
from selenium.webdriver.common.by import By

from connectors.kafka_admin import KafkaAdmin
from connectors.producer import EventProducer
from streams.console import CONTENT_TYPES, SECURITY_HEADERS, asset, page
from tests.integration.browser_support import LoopThread, chromium, serve, wait_until
from tests.support import TEST_API_TOKEN, WorkerProcess
from tests.support import wait_until as wait_for

pytestmark = pytest.mark.integration
PLATFORMS = ("android", "ios", "web")
WINDOWS = 4
WINDOW_MS = 10_000
PIPELINE_WAIT_S = 150.0


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    with chromium(tmp_path / "chromium-profile", window_size="1280,1000") as driver:
        yield driver


@pytest.fixture
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.getbasetemp() / "console-artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def severe(driver: webdriver.Chrome) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def rendered(driver: webdriver.Chrome, view: str) -> None:
    wait_until(
        driver, lambda: driver.find_element(By.TAG_NAME, "body").get_attribute("data-rendered") == view, view
    )


def print_timings(driver: webdriver.Chrome, label: str) -> None:
    renders = driver.execute_script("return window.highwayConsole.renders")
    for render in renders:
        print(
            f"console {label}: {render['view']} data on screen {render['since_view_ms']} ms after the view "
            f"opened, {render['since_navigation_ms']} ms after navigation"
        )


def data_values(driver: webdriver.Chrome, selector: str, *attributes: str) -> list[tuple[Any, ...]]:
    return [
        tuple(element.get_attribute(name) for name in attributes)
        for element in driver.find_elements(By.CSS_SELECTOR, selector)
    ]


# --- the real worker ------------------------------------------------------------------------------
def known_traffic(lane: str, base_ms: int) -> tuple[list[dict[str, Any]], dict[tuple[int, str], int]]:
    """Events of WINDOWS windows: in window w, platform i has (w + 1) * (i + 1) distinct users, each
    sending a page_view, every second one a team_create too. Returns the events and the truth."""
    events, truth = [], {}
    for w in range(WINDOWS):
        start = base_ms + w * WINDOW_MS
        for i, platform in enumerate(PLATFORMS):
            users = (w + 1) * (i + 1)
            truth[(start, platform)] = users
            for n in range(users):
                user = f"u{w}-{platform}-{n}"
                names = ["page_view", "team_create"] if n % 2 == 0 else ["page_view"]
                for offset, name in enumerate(names):
                    ts = start + 1000 + n * 10 + offset
                    events.append(
                        {
                            "event_name": name,
                            "event_id": str(uuid.uuid4()),
                            "user_id": user,
                            "session_id": f"s-{user}",
                            "lane": lane,
                            "platform": platform,
                            "app_version": "1.0",
                            "device_id": f"d-{user}",
                            "client_ts": ts,
                            "server_ts": ts,
                            "properties": {"n": n},
                        }
                    )
    return events, truth


def api(worker: WorkerProcess, path: str, **params: str) -> Any:
    response = httpx.get(f"{worker.base_url}{path}", params=params, headers=worker.auth_headers, timeout=30)
    response.raise_for_status()
    return response.json()


def test_console_on_a_real_worker(browser: webdriver.Chrome, make_settings: Any, artifacts: Path) -> None:
    settings = make_settings(
        api_token=TEST_API_TOKEN,
        realtime_window_s=WINDOW_MS // 1000,
        realtime_sliding_window_s=60,
        # A new type's first events wait for its topic (the router's new-type gate) while later
        # events of known types pass: the lateness must cover that wait, or they are counted late.
        realtime_allowed_lateness_s=30,
        realtime_idle_timeout_s=2,
        lake_flush_age_s=2,
    )
    lane = settings.lanes[0]
    now = int(time.time() * 1000)
    base = now - now % WINDOW_MS - (WINDOWS + 1) * WINDOW_MS
    events, truth = known_traffic(lane, base)
    per_type = Counter(event["event_name"] for event in events)
    broken = [
        json.dumps({"event_name": "purchase", "event_id": str(uuid.uuid4()), "server_ts": now})
        for _ in range(3)
    ]

    with WorkerProcess(settings) as worker:
        worker.wait_healthy()
        # Without the token the data calls are refused; the pages themselves are code, not data.
        for path in ("/api/v1/catalog", "/api/v1/concurrency", "/api/v1/console"):
            assert httpx.get(f"{worker.base_url}{path}", timeout=10).status_code == 401, path
        assert httpx.get(f"{worker.base_url}/console", timeout=10).status_code == 200

        topic = settings.all_events_topic(lane)
        KafkaAdmin(settings).ensure_topics([topic])
        producer = EventProducer(settings)
        producer.produce_events(topic, events)
        for value in broken:
            producer.produce_raw(topic, value.encode(), b"no-user")
        for _ in range(2):
            producer.produce_raw(topic, b"this is not json", b"no-user")
        producer.flush()

        def concurrency() -> dict[str, Any] | None:
            answer = api(
                worker, "/api/v1/concurrency", lane=lane, window="10s", by="platform", **{"from": str(base)}
            )
            done = {(r["window_start"], r["platform"]): r["value"] for r in answer["rows"] if r["complete"]}
            return answer if all(key in done for key in truth) else None

        answer = wait_for(concurrency, PIPELINE_WAIT_S, 0.5, "every window closed")
        shown = {(r["window_start"], r["platform"]): r["value"] for r in answer["rows"] if r["complete"]}
        assert {key: shown[key] for key in truth} == truth

        last: list[dict[str, Any]] = []

        took: list[float] = []

        def catalog() -> dict[str, Any] | None:
            started = time.perf_counter()
            found = api(worker, "/api/v1/catalog", lane=lane)
            took.append(time.perf_counter() - started)
            last[:] = [found]
            types = {t["event_name"]: t for t in found["types"]}
            ready = (
                all(
                    (types.get(name) or {}).get("lake") and types[name]["lake"]["rows"] == n
                    for name, n in per_type.items()
                )
                and all(types[name]["events_in_history"] == n for name, n in per_type.items())
                and (types.get("purchase") or {}).get("dlq", {}).get("count") == len(broken)
                and found["unnamed_dlq"]["count"] == 2
            )
            return found if ready else None

        try:
            found = wait_for(
                catalog, PIPELINE_WAIT_S, 1.0, "the catalogue shows the lake rows, rates and DLQ"
            )
        except AssertionError:
            print("last catalogue:", json.dumps(last, indent=1))
            raise
        # Answers are cached for 10 s: the slowest call is one that read the sources.
        print(f"catalogue API: slowest of {len(took)} calls {max(took) * 1000:.0f} ms (sources read)")
        assert found["errors"] == {}
        types = {t["event_name"]: t for t in found["types"]}
        assert [r["reason"] for r in types["purchase"]["dlq"]["reasons"]] == ["missing_field"]
        assert [r["reason"] for r in found["unnamed_dlq"]["reasons"]] == ["malformed_json"]
        assert {"platform", "user_id", "p_n"} <= {c["name"] for c in types["page_view"]["columns"]}

        # Log in: the page goes to the login form (no token in this tab yet); a wrong token is refused.
        browser.get(f"{worker.base_url}/console#concurrency?window=10s&by=platform&span=900")
        wait_until(browser, lambda: "/console/login" in browser.current_url, "sent to the login page")
        browser.find_element(By.ID, "token").send_keys("not-the-token-at-all")
        browser.find_element(By.ID, "submit").click()
        wait_until(
            browser, lambda: "not accepted" in browser.find_element(By.ID, "login-error").text, "refused"
        )
        refused = severe(browser)
        assert refused, "the refused login left no trace"
        assert all("401" in message for message in refused), refused
        browser.find_element(By.ID, "token").clear()
        browser.find_element(By.ID, "token").send_keys(TEST_API_TOKEN)
        browser.find_element(By.ID, "submit").click()
        wait_until(
            browser,
            lambda: browser.current_url.endswith("/console#concurrency?window=10s&by=platform&span=900"),
            "back",
        )
        rendered(browser, "concurrency")

        # (1) the chart's points are the API's complete windows, per platform.
        answer = api(
            worker, "/api/v1/concurrency", lane=lane, window="10s", by="platform", **{"from": str(base)}
        )
        points = {
            (int(x or 0), str(series)): int(value or 0)
            for series, x, value, complete in data_values(
                browser, "circle.point", "data-series", "data-x", "data-value", "data-complete"
            )
            if complete == "true"
        }
        assert {key: points[key] for key in truth} == truth
        legend = dict(data_values(browser, "text.legend", "data-series", "data-value"))
        newest: dict[str, tuple[int, str]] = {}
        for series, x, value in data_values(browser, "circle.point", "data-series", "data-x", "data-value"):
            newest[series] = max(newest.get(series, (0, "")), (int(x), value))
        assert legend == {series: value for series, (_, value) in newest.items()}
        assert set(legend) == set(PLATFORMS)
        browser.save_screenshot(str(artifacts / "concurrency.png"))

        # (2) the catalogue: the table and bars carry the API's numbers; a row opens its DLQ reasons.
        browser.find_element(By.CSS_SELECTOR, 'nav a[data-view="catalog"]').click()
        rendered(browser, "catalog")
        found = api(worker, "/api/v1/catalog", lane=lane)
        rows = {
            row.get_attribute("data-type"): [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            for row in browser.find_elements(By.CSS_SELECTOR, "#catalog-table tbody tr")
        }
        assert set(rows) == {t["event_name"] for t in found["types"]}
        for entry in found["types"]:
            cells = rows[entry["event_name"]]
            assert cells[2] == f"{entry['events_in_history']:,}"
            assert cells[5] == ("—" if not entry["lake"] else f"{entry['lake']['rows']:,}")
            assert cells[8] == str(entry["dlq"]["count"])
        assert rows["page_view"][2] == f"{per_type['page_view']:,}"
        bars = {
            label: int(value or 0)
            for label, value in data_values(browser, "rect.bar", "data-label", "data-value")
        }
        assert bars == dict(per_type)
        browser.find_element(By.CSS_SELECTOR, '#catalog-table tr[data-type="purchase"]').click()
        reasons = data_values(browser, "#catalog-detail h4.dlq-reason", "data-reason", "data-count")
        assert reasons == [("missing_field", "3")]
        samples = [pre.text for pre in browser.find_elements(By.CSS_SELECTOR, "#catalog-detail pre")]
        assert samples
        assert all('"purchase"' in sample for sample in samples)
        browser.find_element(By.CSS_SELECTOR, '#catalog-table tr[data-type="page_view"]').click()
        columns = [
            cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#catalog-detail td:first-child")
        ]
        assert {"platform", "user_id", "p_n"} <= set(columns)
        browser.save_screenshot(str(artifacts / "catalog.png"))

        # (5) without the sessions stage the page says so instead of failing.
        browser.find_element(By.CSS_SELECTOR, 'nav a[data-view="sessions"]').click()
        wait_until(browser, lambda: browser.find_elements(By.ID, "unavailable"), "sessions: not available")
        assert "not available" in browser.find_element(By.ID, "unavailable").text
        print_timings(browser, "real worker")
        errors = severe(browser)
    assert errors == [], errors


# --- the analytics contract, faked ----------------------------------------------------------------
def funnel_steps(names: list[str], users: list[int], medians: list[float | None]) -> list[dict[str, Any]]:
    """Steps as h-analytics' ``core/analytics/funnel.py`` shapes them."""
    return [
        {
            "name": name,
            "users": n,
            "conversion_from_previous": n / users[k - 1] if k else 1.0,
            "conversion_from_first": n / users[0],
            "median_seconds_to_convert": median,
        }
        for k, (name, n, median) in enumerate(zip(names, users, medians, strict=True))
    ]


STEPS = ["lobby_view", "team_create", "contest_join"]
FUNNEL: dict[str, Any] = {
    "lane": "web",
    "steps": funnel_steps(STEPS, [1000, 420, 105], [None, 95.5, 240.0]),
    "groups": {
        "android": funnel_steps(STEPS, [600, 300, 80], [None, 80.0, 200.0]),
        "ios": funnel_steps(STEPS, [400, 120, 25], [None, 120.0, 300.0]),
    },
}
PATHS: dict[str, Any] = {
    "lane": "web",
    "event": "lobby_view",
    "direction": "after",
    "users": 100,
    "paths": [
        {"steps": ["team_create", "contest_join"], "users": 50},
        {"steps": ["team_create", "lobby_view"], "users": 30},
        {"steps": ["wallet_open"], "users": 20},
    ],
    "sankey": {
        "nodes": [
            {"name": "lobby_view", "event": "lobby_view", "step": 0},
            {"name": "+1 team_create", "event": "team_create", "step": 1},
            {"name": "+2 contest_join", "event": "contest_join", "step": 2},
            {"name": "+2 lobby_view", "event": "lobby_view", "step": 2},
            {"name": "+1 wallet_open", "event": "wallet_open", "step": 1},
        ],
        "links": [
            {"source": 0, "target": 1, "value": 80},
            {"source": 1, "target": 2, "value": 50},
            {"source": 1, "target": 3, "value": 30},
            {"source": 0, "target": 4, "value": 20},
        ],
    },
}


def session_summary(
    sessions: int, median: float, p90: float, mean: float, events_median: float
) -> dict[str, Any]:
    """As h-sessions' ``core/sessions/stats.py`` shapes one summary."""
    return {
        "sessions": sessions,
        "duration_s": {"median": median, "p90": p90},
        "events_per_session": {"mean": mean, "median": events_median},
    }


SESSIONS: dict[str, Any] = {
    "lane": "web",
    "from": None,
    "to": None,
    **session_summary(1234, 312.5, 1800.0, 7.25, 6.0),
    "by_platform": {
        "android": session_summary(800, 300.0, 1700.0, 7.5, 6.0),
        "ios": session_summary(434, 330.0, 1900.0, 6.79, 5.0),
    },
}


class FakeAnalytics:
    """The console's pages (the package's own bytes) beside the analytics API's contract."""

    def __init__(self) -> None:
        self.queries: dict[str, list[dict[str, str]]] = defaultdict(list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/console", self.page("index.html"))
        app.router.add_get("/console/login", self.page("login.html"))
        app.router.add_get("/console/static/{name}", self.static)
        app.router.add_get("/api/v1/console", self.meta)
        for path, answer in (
            ("/api/v1/funnel", FUNNEL),
            ("/api/v1/paths", PATHS),
            ("/api/v1/sessions/stats", SESSIONS),
        ):
            app.router.add_get(path, self.answer(path, answer))
        return app

    def page(self, name: str) -> Any:
        async def serve_page(request: web.Request) -> web.Response:
            headers = {**SECURITY_HEADERS, "Content-Type": CONTENT_TYPES[".html"]}
            return web.Response(body=page(name, token_required=False), headers=headers)

        return serve_page

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = asset(name)
        if body is None:
            raise web.HTTPNotFound()
        headers = {**SECURITY_HEADERS, "Content-Type": CONTENT_TYPES[name[name.rfind(".") :]]}
        return web.Response(body=body, headers=headers)

    async def meta(self, request: web.Request) -> web.Response:
        features = {"concurrency": False, "catalog": False, "funnel": True, "paths": True, "sessions": True}
        return web.json_response(
            {
                "lanes": ["web"],
                "dimensions": ["platform", "app_version", "event_name"],
                "windows": ["1m", "5m"],
                "lake_format": "iceberg",
                "token_required": False,
                "features": features,
            }
        )

    def answer(self, path: str, body: dict[str, Any]) -> Any:
        async def respond(request: web.Request) -> web.Response:
            self.queries[path].append(dict(request.query))
            return web.json_response(body)

        return respond


@pytest.fixture
def fake_analytics() -> Iterator[tuple[FakeAnalytics, str]]:
    loop = LoopThread()
    fake = FakeAnalytics()
    runner, url = loop.run(serve(fake.app()))
    try:
        yield fake, url
    finally:
        loop.run(runner.cleanup())
        loop.stop()


def test_funnel_paths_and_sessions_against_the_contract(
    browser: webdriver.Chrome, fake_analytics: tuple[FakeAnalytics, str], artifacts: Path
) -> None:
    fake, url = fake_analytics
    # (3) a linked funnel runs at once; its bars are the users per step.
    browser.get(
        f"{url}/console#funnel?steps=lobby_view,team_create,contest_join&within=30m&by=platform&order=strict"
    )
    rendered(browser, "funnel")
    assert fake.queries["/api/v1/funnel"] == [
        {
            "lane": "web",
            "steps": "lobby_view,team_create,contest_join",
            "within": "30m",
            "order": "strict",
            "by": "platform",
        }
    ]
    bars = data_values(browser, "rect.bar", "data-label", "data-value")
    assert bars == [(s["name"], str(s["users"])) for s in FUNNEL["steps"]]
    heights = [float(h or 0) for _, h in data_values(browser, "rect.bar", "data-label", "height")]
    assert heights[1] / heights[0] == pytest.approx(0.42, abs=0.001)
    captions = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "#funnel-chart text.caption")]
    assert captions == ["42.0% of previous", "25.0% of previous"]
    groups = [
        [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        for row in browser.find_elements(By.CSS_SELECTOR, "#funnel-groups tbody tr")
    ]
    assert groups == [["android", "600", "300", "80"], ["ios", "400", "120", "25"]]
    browser.save_screenshot(str(artifacts / "funnel.png"))

    # The builder: the user's own steps and options go into the next query.
    steps = browser.find_element(By.ID, "steps")
    steps.clear()
    steps.send_keys("lobby_view, contest_join")
    browser.find_element(By.CSS_SELECTOR, '#order option[value="relaxed"]').click()
    browser.find_element(By.CSS_SELECTOR, '#funnel-by option[value=""]').click()
    browser.find_element(By.ID, "run-funnel").click()
    wait_until(browser, lambda: len(fake.queries["/api/v1/funnel"]) == 2, "the built funnel was asked for")
    assert fake.queries["/api/v1/funnel"][1] == {
        "lane": "web",
        "steps": "lobby_view,contest_join",
        "within": "30m",
        "order": "relaxed",
    }
    rendered(browser, "funnel")

    # (4) the Sankey: one band per link with its users, nodes sized by their flow.
    browser.get(f"{url}/console#paths?event=lobby_view&direction=after&depth=3&top=10")
    rendered(browser, "paths")
    assert fake.queries["/api/v1/paths"] == [
        {"lane": "web", "event": "lobby_view", "direction": "after", "depth": "3", "top": "10"}
    ]
    names = [node["name"] for node in PATHS["sankey"]["nodes"]]
    links = sorted(data_values(browser, "path.link", "data-source", "data-target", "data-value"))
    assert links == sorted(
        (names[link["source"]], names[link["target"]], str(link["value"]))
        for link in PATHS["sankey"]["links"]
    )
    nodes = dict(data_values(browser, "rect.node", "data-name", "data-value"))
    assert nodes == {
        "lobby_view": "100",
        "+1 team_create": "80",
        "+1 wallet_open": "20",
        "+2 contest_join": "50",
        "+2 lobby_view": "30",
    }
    widths = {
        (s, t): float(w or 0)
        for s, t, w in data_values(browser, "path.link", "data-source", "data-target", "stroke-width")
    }
    assert widths[("lobby_view", "+1 team_create")] / widths[
        ("lobby_view", "+1 wallet_open")
    ] == pytest.approx(4.0)
    path_rows = [
        [c.text for c in r.find_elements(By.TAG_NAME, "td")]
        for r in browser.find_elements(By.CSS_SELECTOR, "#paths-table tbody tr")
    ]
    assert path_rows == [[" → ".join(["lobby_view", *p["steps"]]), str(p["users"])] for p in PATHS["paths"]]
    browser.save_screenshot(str(artifacts / "paths.png"))

    # (5) session statistics: sessions per platform as bars, the summaries as a table.
    browser.get(f"{url}/console#sessions")
    rendered(browser, "sessions")
    assert fake.queries["/api/v1/sessions/stats"] == [{"lane": "web"}]
    assert data_values(browser, "#sessions-chart rect.bar", "data-label", "data-value") == [
        ("android", "800"),
        ("ios", "434"),
    ]
    summary = [
        [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        for row in browser.find_elements(By.CSS_SELECTOR, "#sessions-summary tbody tr")
    ]
    assert summary == [
        ["all platforms", "1,234", "5.2 min", "30.0 min", "7.25", "6"],
        ["android", "800", "5.0 min", "28.3 min", "7.5", "6"],
        ["ios", "434", "5.5 min", "31.7 min", "6.79", "5"],
    ]
    browser.save_screenshot(str(artifacts / "sessions.png"))
    print_timings(browser, "analytics contract")
    errors = severe(browser)
    assert errors == [], errors
