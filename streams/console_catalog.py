"""``GET /api/v1/catalog?lane=``: the event-type catalogue (shaped by :mod:`core.console.catalog`).

Its three sources are read side by side, each with its own deadline, and a source that cannot be
read is reported in ``errors`` with its part of the answer null — the catalogue never waits on a
broker or bucket that is away, and a worker without the realtime role still lists the lake's
tables and the dead letters:

* rates: the realtime stage's published event counts (only on a worker with the ``realtime``
  role, which hands them over through :func:`catalog_sources`);
* the lake's tables (:mod:`connectors.lake_inventory`, metadata only);
* the DLQ's newest records (:mod:`connectors.dlq_tail`, a short-lived consumer, no group).

Answers are cached per lane (:class:`CatalogReader`): a console tab polling it costs one read of
each source per ``FRESH_S``, and after the first read a page never waits for the sources.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

import faust
from faust.web import Request, Response, View

from connectors.dlq_tail import dlq_tail
from connectors.lake_fs import LakeStore
from connectors.lake_inventory import lake_tables
from core.console.catalog import LakeTable, Rates, catalog, iso, rates
from core.realtime.params import BadParameter, lane_param
from core.realtime.partials import merge
from core.settings import Settings

log = logging.getLogger(__name__)
FRESH_S = 10.0
STALE_S = 300.0
SOURCE_DEADLINE_S = 8.0
T = TypeVar("T")
Records = Callable[[str], list[dict[str, Any]]]


@dataclass
class CatalogSources:
    """What other stages of this worker offer the catalogue (the realtime stage: its partials)."""

    records: Records | None = None


_sources: WeakKeyDictionary[object, CatalogSources] = WeakKeyDictionary()


def catalog_sources(app: object) -> CatalogSources:
    found = _sources.get(app)
    if found is None:
        found = _sources[app] = CatalogSources()
    return found


class CatalogReader:
    """Answers from a per-lane cache: fresh for ``FRESH_S``; then, up to ``STALE_S``, the cached answer
    at once while a new read runs in the background (a console page never waits for the sources but
    the first time); older, a new read first. ``read_at`` says when the answer was read."""

    def __init__(self, settings: Settings, sources: CatalogSources) -> None:
        self.settings = settings
        self.sources = sources
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._refreshing: dict[str, asyncio.Task[dict[str, Any]]] = {}

    async def answer(self, lane: str) -> dict[str, Any]:
        cached = self._cache.get(lane)
        age = time.monotonic() - cached[0] if cached is not None else None
        if cached is None or age is None or age >= STALE_S:
            return await self._read(lane)
        if age >= FRESH_S:
            running = self._refreshing.get(lane)
            if running is None or running.done():
                self._refreshing[lane] = asyncio.create_task(self._read(lane))
        return cached[1]

    async def _read(self, lane: str) -> dict[str, Any]:
        lock = self._locks.setdefault(lane, asyncio.Lock())
        async with lock:  # one read of the sources at a time per lane; the others get its answer
            cached = self._cache.get(lane)
            if cached is not None and time.monotonic() - cached[0] < FRESH_S:
                return cached[1]
            errors: dict[str, str] = {}
            found_rates = self.rates(lane, errors)
            tables, letters = await asyncio.gather(
                _within("lake", errors, lambda: self.tables(lane)),
                _within("dlq", errors, lambda: dlq_tail(self.settings, lane)),
            )
            answer = {
                **catalog(lane, found_rates, tables, letters),
                "lake_format": self.settings.lake_format,
                "read_at": iso(int(time.time() * 1000)),
                "errors": errors,
            }
            self._cache[lane] = (time.monotonic(), answer)
            return answer

    def rates(self, lane: str, errors: dict[str, str]) -> Rates | None:
        settings = self.settings
        if self.sources.records is None:
            errors["realtime"] = "this worker does not run the realtime role: no rates"
            return None
        if "event_name" not in settings.realtime_dimensions:
            errors["realtime"] = "event_name is not in HIGHWAY_REALTIME_DIMENSIONS: no rates per type"
            return None
        now_ms = int(time.time() * 1000)
        history_ms = settings.realtime_history_hours * 3_600_000
        windows = merge(self.sources.records(lane), "events", now_ms - history_ms, now_ms + 3_600_000)
        return rates(windows, settings.realtime_window_s)

    def tables(self, lane: str) -> dict[str, LakeTable]:
        deadline = time.monotonic() + SOURCE_DEADLINE_S
        store = LakeStore(self.settings, should_stop=lambda: time.monotonic() > deadline, max_backoff_s=1.0)
        return lake_tables(self.settings, store, lane)


async def _within(source: str, errors: dict[str, str], read: Callable[[], T]) -> T | None:
    """``read()`` on a thread; None (and why, in ``errors``) when it failed or took too long."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(read), SOURCE_DEADLINE_S + 2)
    except TimeoutError:
        errors[source] = f"no answer within {SOURCE_DEADLINE_S + 2:.0f}s"
    except Exception as exc:  # of any kind (a catalog's SQL error too): the other sources still answer
        errors[source] = f"{type(exc).__name__}: {exc}"
    log.warning("catalog: %s not read: %s", source, errors[source])
    return None


def register(app: faust.App, settings: Settings) -> None:
    reader = CatalogReader(settings, catalog_sources(app))

    @app.page("/api/v1/catalog")
    async def catalog_page(web: View, request: Request) -> Response:
        try:
            lane = lane_param(request.query, settings.lanes, settings.lanes[0])
        except BadParameter as exc:
            return web.json({"error": str(exc)}, status=400)
        return web.json(await reader.answer(lane))
