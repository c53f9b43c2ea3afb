"""The console's funnel builder, user-path Sankey and session statistics in a real headless browser,
against an in-test fake that answers exactly the analytics API's contract (``/api/v1/funnel``,
``/api/v1/paths`` of h-analytics, ``/api/v1/sessions/stats`` of h-sessions; shapes copied from their
``core/analytics`` and ``core/sessions/stats.py``) and records the queries: the funnel's bars and
group table, the Sankey's links and nodes and the sessions table must carry the fake's numbers, and
the form must send the query the user built. The console's pages are the package's own bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.integration.browser_support import LoopThread, chromium, serve, wait_until
from tests.integration.console_support import (
    FUNNEL,
    PATHS,
    FakeAnalytics,
    data_values,
    print_timings,
    rendered,
    severe,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    with chromium(tmp_path / "chromium-profile", window_size="1280,1000") as driver:
        yield driver


@pytest.fixture
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.getbasetemp() / "console-artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


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

    # A worker without the analytics routes: each page says so and asks nothing.
    fake.features.update(funnel=False, paths=False, sessions=False)
    asked = sum(len(queries) for queries in fake.queries.values())
    for name in ("sessions", "funnel", "paths"):
        browser.get(f"{url}/console#{name}")
        browser.refresh()
        wait_until(browser, lambda: browser.find_elements(By.ID, "unavailable"), f"{name}: not available")
        assert "not available" in browser.find_element(By.ID, "unavailable").text
    assert sum(len(queries) for queries in fake.queries.values()) == asked
    print_timings(browser, "analytics contract")
    errors = severe(browser)
    assert errors == [], errors
