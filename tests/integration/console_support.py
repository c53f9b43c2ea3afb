"""Shared by the console's browser tests: reading the console's state and its charts' numbers,
and a fake of the analytics API answering exactly the contract of h-analytics and h-sessions."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from aiohttp import web
from selenium import webdriver
from selenium.webdriver.common.by import By

from streams.console import CONTENT_TYPES, SECURITY_HEADERS, asset, page
from tests.integration.browser_support import wait_until


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
        self.features = {
            "concurrency": False,
            "catalog": False,
            "funnel": True,
            "paths": True,
            "sessions": True,
        }

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
        return web.json_response(
            {
                "lanes": ["web"],
                "dimensions": ["platform", "app_version", "event_name"],
                "windows": ["1m", "5m"],
                "lake_format": "iceberg",
                "token_required": False,
                "features": self.features,
            }
        )

    def answer(self, path: str, body: dict[str, Any]) -> Any:
        async def respond(request: web.Request) -> web.Response:
            self.queries[path].append(dict(request.query))
            return web.json_response(body)

        return respond
