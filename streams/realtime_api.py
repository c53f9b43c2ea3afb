"""The realtime HTTP API: ``/api/v1/concurrency``, ``/api/v1/counts``, ``/api/v1/users/{id}``.

Concurrency and counts are sums of the published partials of every partition (any worker answers
for the whole cluster); a user lookup answers from the windows this worker owns, and on a worker
that also serves the analytics API (``streams.analytics_api``) adds the user's lake ``history``
(``last`` events, default 20) — or ``history: {"error": …}`` when the lake does not answer, so the
realtime view never waits on or fails with the lake. Bad parameters give 400 with a message naming
the parameter (:mod:`core.realtime.params`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import faust
from faust.web import Request, Response, View

from core.realtime.params import BadParameter, lane_param, window_query
from core.realtime.partials import Measure, flatten, merge, window_label
from streams.analytics_api import HistoryLookup, history_lookup, last_param
from streams.realtime_state import RealtimeState


def query(
    state: RealtimeState, params: Mapping[str, str], measure_for: Mapping[str, Measure]
) -> dict[str, Any]:
    """Answer ``/api/v1/concurrency`` and ``/api/v1/counts`` from the published partials."""
    settings = state.settings
    q = window_query(
        params,
        lanes=settings.lanes,
        windows=measure_for,
        dimensions=settings.realtime_dimensions,
        now_ms=int(time.time() * 1000),
        history_ms=settings.realtime_history_hours * 3600 * 1000,
    )
    rows = merge(state.records(q.lane), measure_for[q.window], q.from_ms, q.to_ms)
    return {"lane": q.lane, "window": q.window, "by": q.by, "windows": rows, "rows": flatten(rows, q.by)}


def register_pages(app: faust.App, state: RealtimeState) -> None:
    settings = state.settings
    users_measures: dict[str, Measure] = {
        window_label(settings.realtime_window_s): "users",
        window_label(settings.realtime_sliding_window_s): "users_sliding",
    }
    count_measures: dict[str, Measure] = {window_label(settings.realtime_window_s): "events"}

    def answer(web: View, request: Request, measures: dict[str, Measure]) -> Response:
        try:
            return web.json(query(state, request.query, measures))
        except BadParameter as exc:
            return web.json({"error": str(exc)}, status=400)

    @app.page("/api/v1/concurrency")
    async def concurrency(web: View, request: Request) -> Response:
        return answer(web, request, users_measures)

    @app.page("/api/v1/counts")
    async def counts(web: View, request: Request) -> Response:
        return answer(web, request, count_measures)

    @app.page("/api/v1/users/{user_id}")
    async def user(web: View, request: Request, user_id: str) -> Response:
        try:
            lane = lane_param(request.query, settings.lanes, settings.lanes[0])
            last = last_param(request.query)
        except BadParameter as exc:
            return web.json({"error": str(exc)}, status=400)
        body = state.lookup(lane, user_id)
        lookup = history_lookup(app)
        if lookup is not None:
            body = {**body, "history": await _history(lookup, lane, user_id, last)}
        return web.json(body)


async def _history(lookup: HistoryLookup, lane: str, user_id: str, last: int) -> dict[str, Any]:
    try:
        return await lookup(lane, user_id, last)
    except Exception as exc:  # the realtime answer stands whatever the lake does
        return {"error": f"lake history unavailable: {exc}"}
