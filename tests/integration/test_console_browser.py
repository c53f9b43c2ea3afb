"""The web console in a real headless browser (Debian's chromium through Selenium) on a real worker.

A worker with the default roles (router, lake, realtime, sessions) and an API token; known events go
through the real pipeline (``<lane>.events.all`` → router → per-event and common topics, the lake,
the realtime windows, the sessions table, the DLQ). The user logs in on ``/console/login`` (a wrong
token is refused); each page must show the API's numbers, which must equal the truth computed here
from the events produced: the concurrency chart's points and legend, the catalogue's table, bars and
DLQ reasons, the funnel's bars and groups, the paths' Sankey links, the sessions per platform. The
pages against the analytics contract and without the analytics routes:
``test_console_contract_browser.py``.

The browser's console must hold no error but the 401 of the wrong token. Each view's time from
navigation to its data on screen is printed (not asserted); screenshots are kept under the pytest
base temp directory (``console-artifacts/``).
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from connectors.kafka_admin import KafkaAdmin
from connectors.producer import EventProducer
from tests.integration.browser_support import chromium, wait_until
from tests.integration.console_support import data_values, print_timings, rendered, severe
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
        # The events are 20-50 s old when produced: a lateness beyond that keeps every one on time
        # whatever the order the partitions are read in; the windows close on the wall clock anyway.
        realtime_allowed_lateness_s=60,
        realtime_idle_timeout_s=2,
        lake_flush_age_s=2,
        sessions_gap_s=5,
        sessions_allowed_lateness_s=60,
        sessions_idle_timeout_s=2,
        sessions_flush_age_s=2,
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

    with WorkerProcess(settings, roles="router,lake,realtime,sessions") as worker:
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

        # (3) the funnel over the lake's common table: page_view → team_create (every second user).
        users = {p: sum((w + 1) * (i + 1) for w in range(WINDOWS)) for i, p in enumerate(PLATFORMS)}
        converted = {
            p: sum(((w + 1) * (i + 1) + 1) // 2 for w in range(WINDOWS)) for i, p in enumerate(PLATFORMS)
        }
        query = {"steps": "page_view,team_create", "within": "30m", "by": "platform", "order": "strict"}

        def funnel() -> dict[str, Any] | None:
            answer = api(worker, "/api/v1/funnel", lane=lane, **query)
            return answer if [s["users"] for s in answer["steps"]] == [60, 32] else None

        found = wait_for(funnel, PIPELINE_WAIT_S, 1.0, "the funnel over the common table")
        assert {p: [s["users"] for s in steps] for p, steps in found["groups"].items()} == {
            p: [users[p], converted[p]] for p in PLATFORMS
        }
        browser.execute_script("location.hash = arguments[0]", "funnel?" + urlencode(query))
        rendered(browser, "funnel")
        funnel_bars = data_values(browser, "#funnel-chart rect.bar", "data-label", "data-value")
        assert funnel_bars == [(s["name"], str(s["users"])) for s in found["steps"]]
        groups = [
            [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            for row in browser.find_elements(By.CSS_SELECTOR, "#funnel-groups tbody tr")
        ]
        assert groups == [[p, str(users[p]), str(converted[p])] for p in PLATFORMS]

        # The builder offers the catalogue's event types as steps.
        def offered() -> list[str]:
            options = browser.find_elements(By.CSS_SELECTOR, "#add-step option")
            return [str(option.get_attribute("value")) for option in options]

        wait_until(browser, lambda: len(offered()) > 1, "the catalogue's types offered as steps")
        assert offered() == ["", "page_view", "purchase", "team_create"]
        browser.save_screenshot(str(artifacts / "real-funnel.png"))

        # (4) the paths after page_view: team_create for every second user, nothing for the others.
        paths = api(
            worker, "/api/v1/paths", lane=lane, event="page_view", direction="after", depth="3", top="10"
        )
        assert {"steps": ["team_create"], "users": 32} in paths["paths"]
        assert sum(p["users"] for p in paths["paths"]) == paths["users"] == 60
        browser.execute_script(
            "location.hash = arguments[0]", "paths?event=page_view&direction=after&depth=3&top=10"
        )
        rendered(browser, "paths")
        names = [node["name"] for node in paths["sankey"]["nodes"]]
        links = data_values(browser, "path.link", "data-source", "data-target", "data-value")
        assert sorted(links) == sorted(
            (names[link["source"]], names[link["target"]], str(link["value"]))
            for link in paths["sankey"]["links"]
        )
        assert ("page_view", "+1 team_create", "32") in links
        browser.save_screenshot(str(artifacts / "real-paths.png"))

        # (5) session statistics: one session per user (each sent its own session_id).
        def sessions() -> dict[str, Any] | None:
            answer = api(worker, "/api/v1/sessions/stats", lane=lane)
            return answer if answer["sessions"] == 60 else None

        stats = wait_for(sessions, PIPELINE_WAIT_S, 1.0, "every session in the sessions table")
        assert {p: stats["by_platform"][p]["sessions"] for p in PLATFORMS} == users
        browser.find_element(By.CSS_SELECTOR, 'nav a[data-view="sessions"]').click()
        rendered(browser, "sessions")
        session_bars = data_values(browser, "#sessions-chart rect.bar", "data-label", "data-value")
        assert session_bars == [(p, str(users[p])) for p in PLATFORMS]
        first_row = browser.find_element(By.CSS_SELECTOR, "#sessions-summary tbody tr td:nth-child(2)")
        assert first_row.text == "60"
        browser.save_screenshot(str(artifacts / "real-sessions.png"))
        print_timings(browser, "real worker")
        errors = severe(browser)
    assert errors == [], errors
