"""The analytics HTTP API on the worker: funnels, user paths and a user's lake history.

``GET /api/v1/funnel``, ``/api/v1/paths`` and ``/api/v1/users/{id}/history`` (docs/analytics.md)
answer from the lane's common table in the lake (``connectors.analytics_lake``), on a thread (DuckDB
and S3 reads block) and within ``lake_query_timeout_s``. They sit behind the API token like every
route that is not public. A bad parameter answers 400 naming it; a lake that does not answer in
time 504; a lake error 502. Registered on workers that run the lake role (they have its
configuration); such a worker's ``/api/v1/users/{id}`` also carries the history
(:func:`history_lookup`).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import duckdb
import faust
from faust.web import Request, Response, View

from connectors.analytics_lake import run_funnel, run_paths, user_history
from connectors.lake_query import QueryTimeout
from core.analytics.params import BadParameter, FunnelSpec, PathSpec, check_name, positive_int
from core.errors import HighwayError
from core.realtime.params import lane_param
from core.settings import Settings

log = logging.getLogger(__name__)
MAX_LAST_EVENTS = 1000
HistoryLookup = Callable[[str, str, int], Awaitable[dict[str, Any]]]
_history: weakref.WeakKeyDictionary[faust.App, HistoryLookup] = weakref.WeakKeyDictionary()


def history_lookup(app: faust.App) -> HistoryLookup | None:
    """``(lane, user_id, last) → history`` when this worker serves the analytics API, else None."""
    return _history.get(app)


def last_param(params: Mapping[str, str]) -> int:
    return positive_int("last", params.get("last"), 20, MAX_LAST_EVENTS)


async def answer(web: View, compute: Callable[[], dict[str, Any]]) -> Response:
    """``compute()`` on a thread: 200 with its answer, 400/502/504 with ``{"error": …}``."""
    try:
        return web.json(await asyncio.to_thread(compute))
    except BadParameter as exc:
        return web.json({"error": str(exc)}, status=400)
    except QueryTimeout as exc:
        return web.json({"error": str(exc)}, status=504)
    except (HighwayError, duckdb.Error, OSError) as exc:
        log.warning("analytics query failed: %s", exc)
        return web.json({"error": f"the lake query failed: {exc}"}, status=502)


def register(app: faust.App, settings: Settings) -> None:
    def lane_of(params: Mapping[str, str]) -> str:
        return lane_param(params, settings.lanes, settings.lanes[0])

    def funnel_answer(params: Mapping[str, str]) -> dict[str, Any]:
        lane, spec = lane_of(params), FunnelSpec.parse(params)
        return {"lane": lane, **run_funnel(settings, lane, spec)}

    def paths_answer(params: Mapping[str, str]) -> dict[str, Any]:
        lane, spec = lane_of(params), PathSpec.parse(params)
        return {"lane": lane, **run_paths(settings, lane, spec)}

    def history_answer(params: Mapping[str, str], user_id: str) -> dict[str, Any]:
        lane, last = lane_of(params), last_param(params)
        check_name("user_id", user_id)
        return {"lane": lane, "user_id": user_id, **user_history(settings, lane, user_id, last)}

    async def history_for(lane: str, user_id: str, last: int) -> dict[str, Any]:
        return await asyncio.to_thread(user_history, settings, lane, user_id, last)

    _history[app] = history_for

    @app.page("/api/v1/funnel")
    async def funnel(web: View, request: Request) -> Response:
        params = dict(request.query)
        return await answer(web, lambda: funnel_answer(params))

    @app.page("/api/v1/paths")
    async def paths(web: View, request: Request) -> Response:
        params = dict(request.query)
        return await answer(web, lambda: paths_answer(params))

    @app.page("/api/v1/users/{user_id}/history")
    async def history(web: View, request: Request, user_id: str) -> Response:
        params = dict(request.query)
        return await answer(web, lambda: history_answer(params, user_id))
