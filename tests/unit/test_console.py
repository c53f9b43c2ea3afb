"""The console's pages and metadata call on a worker's real web app (no broker: no stage runs).

The pages are public and hold no data; every data call needs the token (docs/security.md). Asset
names are plain file names of the console's package directory, nothing else.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from streams.app import create_app
from streams.console import asset, page
from tests.conftest import isolated_settings

TOKEN = "console-t0ken-long-enough"


@pytest.mark.parametrize("name", ["../console.py", "..%2Fapp.py", ".hidden.js", "console.py", "nope.js", ""])
def test_only_files_of_the_console_are_assets(name: str) -> None:
    assert asset(name) is None


def test_pages_say_whether_the_worker_needs_a_token() -> None:
    assert b'content="token"' in page("index.html", token_required=True)
    assert b'content="open"' in page("login.html", token_required=False)
    assert asset("charts.js") is not None
    assert asset("console.css") is not None


def _get_all(token: str | None, requests: list[tuple[str, dict[str, str]]], tmp_path: Any) -> list[Any]:
    settings = isolated_settings(api_token=token, state_dir=tmp_path, lanes=["web", "app"])
    app = create_app(settings, roles=())

    async def run() -> list[tuple[int, dict[str, str], bytes]]:
        runner = web.AppRunner(app.web.web_app)  # type: ignore[attr-defined]
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        answers = []
        try:
            async with aiohttp.ClientSession() as session:
                for path, headers in requests:
                    url = f"http://127.0.0.1:{port}{path}"
                    async with session.get(url, headers=headers, allow_redirects=False) as response:
                        answers.append((response.status, dict(response.headers), await response.read()))
        finally:
            await runner.cleanup()
        return answers

    return asyncio.run(run())


def test_pages_are_public_and_data_calls_need_the_token(tmp_path: Any) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    answers = _get_all(
        TOKEN,
        [
            ("/console", {}),
            ("/console/login", {}),
            ("/console/static/console.js", {}),
            ("/console/static/..%2Fconsole.py", {}),
            ("/api/v1/console", {}),
            ("/api/v1/console", {"Authorization": "Bearer wrong-token-of-length"}),
            ("/api/v1/console", auth),
            ("/api/v1/catalog", {}),
            ("/api/v1/catalog?lane=nope", auth),
        ],
        tmp_path,
    )
    statuses = [status for status, _, _ in answers]
    assert statuses == [200, 200, 200, 404, 401, 401, 200, 401, 400]
    index_headers = answers[0][1]
    assert index_headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in index_headers["Content-Security-Policy"]
    assert "connect-src 'self'" in index_headers["Content-Security-Policy"]
    assert b'content="token"' in answers[0][2]
    assert answers[2][1]["Content-Type"].startswith("text/javascript")
    meta = json.loads(answers[6][2])
    assert meta["lanes"] == ["web", "app"]
    assert meta["token_required"] is True
    # No stage runs here: only the console's own catalogue is served.
    assert meta["features"] == {
        "concurrency": False,
        "catalog": True,
        "funnel": False,
        "paths": False,
        "sessions": False,
    }
    assert b"unknown lane 'nope'" in answers[8][2]


def test_without_a_token_the_console_is_open_on_loopback(tmp_path: Any) -> None:
    answers = _get_all(None, [("/console", {}), ("/api/v1/console", {})], tmp_path)
    assert [status for status, _, _ in answers] == [200, 200]
    assert b'content="open"' in answers[0][2]


def test_a_source_that_cannot_be_read_is_named_and_the_rest_still_answers(tmp_path: Any) -> None:
    """No broker (the DLQ cannot be read), an empty parquet lake, the realtime partials of one window."""
    from streams.console_catalog import CatalogReader, CatalogSources

    settings = isolated_settings(
        kafka_bootstrap="127.0.0.1:1",
        lake_uri=f"file://{tmp_path}/lake",
        lake_format="parquet",
        lanes=["web"],
        state_dir=tmp_path,
    )
    start = (int(time.time()) // 60 - 2) * 60_000
    partial = {
        "partition": 0,
        "partitions": 1,
        "window_start": start,
        "window_s": 60,
        "events": {"all": 6, "by": {"event_name": {"page_view": 6}}},
        "checkpoint": {"closed_until": start + 60_000},
    }
    reader = CatalogReader(settings, CatalogSources(records=lambda lane: [partial] if lane == "web" else []))
    answer = asyncio.run(reader.answer("web"))
    assert set(answer["errors"]) == {"dlq"}
    assert answer["dlq_read"] is None
    (entry,) = answer["types"]
    assert (entry["event_name"], entry["rate_per_s"], entry["events_in_history"]) == ("page_view", 0.1, 6)
    assert entry["lake"] is None
    assert entry["dlq"] is None

    without_realtime = CatalogReader(settings, CatalogSources())
    assert "realtime" in asyncio.run(without_realtime.answer("web"))["errors"]


def test_a_stale_answer_is_served_at_once_while_a_new_read_runs(tmp_path: Any, monkeypatch: Any) -> None:
    from streams import console_catalog
    from streams.console_catalog import CatalogReader, CatalogSources

    settings = isolated_settings(
        lake_uri=f"file://{tmp_path}/lake", lake_format="parquet", lanes=["web"], state_dir=tmp_path
    )
    monkeypatch.setattr(console_catalog, "dlq_tail", lambda settings, lane: [])
    start = (int(time.time()) // 60 - 2) * 60_000
    counts = {"page_view": 1}

    def records(lane: str) -> list[dict[str, Any]]:
        return [
            {
                "partition": 0,
                "partitions": 1,
                "window_start": start,
                "window_s": 60,
                "events": {"all": sum(counts.values()), "by": {"event_name": dict(counts)}},
                "checkpoint": {"closed_until": start + 60_000},
            }
        ]

    reader = CatalogReader(settings, CatalogSources(records=records))

    async def scenario() -> list[int]:
        seen = []
        first = await reader.answer("web")
        counts["page_view"] = 2
        seen.append(first["types"][0]["events_in_history"])
        seen.append((await reader.answer("web"))["types"][0]["events_in_history"])  # still fresh
        monkeypatch.setattr(console_catalog, "FRESH_S", 0.0)
        seen.append((await reader.answer("web"))["types"][0]["events_in_history"])  # stale, at once
        await reader._refreshing["web"]
        monkeypatch.setattr(console_catalog, "FRESH_S", 60.0)
        seen.append((await reader.answer("web"))["types"][0]["events_in_history"])
        return seen

    assert asyncio.run(scenario()) == [1, 1, 1, 2]
