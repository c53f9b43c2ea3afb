"""``GET /api/v1/sessions/stats?lane=&from=&to=``: session statistics from the lake's sessions table.

``from``/``to`` (epoch milliseconds or ISO-8601, UTC) bound ``session_start`` (``[from, to)``;
default: everything). The answer: ``sessions``, ``duration_s`` (median, p90), ``events_per_session``
(mean, median), the same ``by_platform``. Behind the API token like every route but the probes
(``streams.app``). The table is read on a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import pyarrow as pa
from faust.web import Request, Response, View

from connectors.sessions_lake import IcebergSessionTables
from core.realtime.params import BadParameter, lane_param, time_ms
from core.sessions.stats import in_range, session_stats
from core.settings import Settings

COLUMNS = ("session_start", "duration_s", "event_count", "platform")


def register_stats(app: faust.App, settings: Settings) -> None:
    tables: list[IcebergSessionTables] = []  # opened on first use: a worker may never be asked

    def read(lane: str) -> pa.Table:
        if not tables:
            tables.append(IcebergSessionTables(settings))
        return tables[0].read(lane, COLUMNS)

    @app.page("/api/v1/sessions/stats")
    async def stats(web: View, request: Request) -> Response:
        try:
            lane = lane_param(request.query, settings.lanes, settings.lanes[0])
            start = _bound(request.query.get("from"), "from")
            end = _bound(request.query.get("to"), "to")
        except BadParameter as exc:
            return web.json({"error": str(exc)}, status=400)
        if settings.lake_format != "iceberg":
            return web.json({"error": "the sessions table needs lake_format 'iceberg'"}, status=404)
        table = await asyncio.to_thread(read, lane)
        answer: dict[str, Any] = {"lane": lane, "from": start, "to": end}
        answer.update(session_stats(in_range(table, start, end)))
        return web.json(answer)


def _bound(value: str | None, name: str) -> int | None:
    return None if value in (None, "") else time_ms(name, value, 0)
