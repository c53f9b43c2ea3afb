"""The collector's HTTP handling: ``POST /v1/events`` and its CORS preflight.

Every refusal happens before anything is produced — draining (503), origin (403), key (401), type or
encoding (415), size (413), unreadable body or no acceptable event (400), too much in flight (429) —
so a refused request leaves nothing half-written. An accepted request is answered 200 only once
Kafka acknowledged every accepted event (202 at hand-over in async mode); a failed or timed-out
delivery is a 503 and the client sends the request again (its event ids make the copies detectable).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, cast

import orjson
from aiohttp import web as aiohttp_web
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from connectors.collector_delivery import DELIVERY_TIMEOUT_MS, DeliveryEdge, Outcome, Saturated
from connectors.wire import codec_for
from core.collect import body as bodies
from core.collect.cors import origin_allowed, preflight_headers, response_headers
from core.collect.events import Batch, reject_reason, screen
from core.collect.keys import KeyRing, presented_key
from core.settings import Settings

log = logging.getLogger(__name__)

_WAIT_S = DELIVERY_TIMEOUT_MS / 1000 + 5  # librdkafka answers every message before this
_CHUNK = 64 * 1024


class CollectorMetrics:
    def __init__(self, registry: CollectorRegistry, edge: DeliveryEdge) -> None:
        self.requests = Counter(
            "highway_collector_requests", "Collector requests by HTTP status", ["code"], registry=registry
        )
        self.events = Counter(
            "highway_collector_events",
            "Events acknowledged by Kafka (or handed over, async)",
            registry=registry,
        )
        self.rejected = Counter(
            "highway_collector_rejected",
            "Events rejected by the collector's checks",
            ["reason"],
            registry=registry,
        )
        self.seconds = Histogram(
            "highway_collector_request_seconds",
            "Time from request to answer",
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 20),
            registry=registry,
        )
        in_flight = Gauge(
            "highway_collector_in_flight", "Events handed to Kafka, not yet acknowledged", registry=registry
        )
        in_flight.set_function(lambda: edge.in_flight)


class Refused(Exception):
    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


class Collector:
    """Answers the collector's routes; ``accepting`` goes False when the worker stops."""

    def __init__(self, settings: Settings, edge: DeliveryEdge, metrics: CollectorMetrics) -> None:
        self.settings = settings
        self.edge = edge
        self.metrics = metrics
        self.keys = KeyRing(settings.collector_api_keys)
        self.encode = codec_for(settings).encode
        self.accepting = True
        self.active = 0  # requests being answered (the drain waits for them)

    def preflight(self, web: View, request: Request) -> Response:
        origin = request.headers.get("Origin")
        if origin is None or not origin_allowed(origin, self.settings.collector_cors_origins):
            return self._count(web.json({"error": f"origin {origin!r} is not allowed"}, status=403))
        return self._count(web.bytes(b"", status=204, headers=preflight_headers(origin)))

    async def post(self, web: View, request: Request) -> Response:
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        origin = request.headers.get("Origin")
        headers = {"X-Request-Id": request_id}
        self.active += 1
        try:
            if origin_allowed(origin, self.settings.collector_cors_origins):
                headers.update(response_headers(origin))
            status, answer = await self._post(request, request_id, origin)
        except Refused as refused:
            status, answer = refused.status, {**refused.body, "request_id": request_id}
            headers.update(refused.headers)
        finally:
            self.active -= 1
        response = web.bytes(
            orjson.dumps(answer), content_type="application/json", status=status, headers=headers
        )
        self.metrics.seconds.observe(time.perf_counter() - started)
        return self._count(response)

    def _count(self, response: Response) -> Response:
        self.metrics.requests.labels(str(response.status)).inc()
        return response

    async def _post(
        self, request: Request, request_id: str, origin: str | None
    ) -> tuple[int, dict[str, Any]]:
        if not self.accepting:
            raise Refused(503, {"error": "the collector is stopping"}, {"Retry-After": "1"})
        if not origin_allowed(origin, self.settings.collector_cors_origins):
            raise Refused(403, {"error": f"origin {origin!r} is not allowed"})
        auth = self.keys.authorize(presented_key(request.headers, request.query), request.query.get("lane"))
        if auth.lane is None:
            raise Refused(401, {"error": auth.error})
        batch = await self._batch(request, request_id, auth.lane)
        for rejection in batch.rejected:
            self.metrics.rejected.labels(reject_reason(rejection)).inc()
        if not batch.accepted:
            raise Refused(400, {**batch.answer(), "error": "no acceptable event in the request"})
        wait = not (self.settings.collector_async or request.query.get("async") in ("1", "true"))
        outcome = await self._deliver(self.settings.all_events_topic(auth.lane), batch, wait)
        if outcome is None:
            self.metrics.events.inc(len(batch.accepted))
            return 202, batch.answer()
        if outcome.failed:
            raise Refused(
                503,
                {"error": f"Kafka did not acknowledge {outcome.failed} event(s): {outcome.error}"},
                {"Retry-After": "1"},
            )
        self.metrics.events.inc(outcome.delivered)
        return 200, batch.answer()

    async def _batch(self, request: Request, request_id: str, lane: str) -> Batch:
        limit = self.settings.collector_max_body_bytes
        content_type = request.headers.get("Content-Type")
        encoding = request.headers.get("Content-Encoding")
        try:
            bodies.check_headers(content_type, encoding, _raw(request).content_length, limit)
            raw = await _read_capped(_raw(request), limit)
            items = bodies.parse(bodies.decode(raw, encoding, limit), content_type)
        except bodies.BodyError as exc:
            raise Refused(exc.status, {"error": exc.message}) from exc
        return screen(items, request_id, int(time.time() * 1000), self.encode, lane)

    async def _deliver(self, topic: str, batch: Batch, wait: bool) -> Outcome | None:
        try:
            future = await self.edge.send(topic, batch.accepted, wait)
        except Saturated as exc:
            raise Refused(429, {"error": str(exc)}, {"Retry-After": "1"}) from exc
        if future is None:
            return None
        try:
            return await asyncio.wait_for(asyncio.shield(future), _WAIT_S)
        except TimeoutError as exc:
            raise Refused(503, {"error": "Kafka did not answer in time"}, {"Retry-After": "1"}) from exc


def _raw(request: Request) -> aiohttp_web.Request:
    """faust's web driver hands views aiohttp's request itself."""
    return cast(aiohttp_web.Request, request)


async def _read_capped(request: aiohttp_web.Request, limit: int) -> bytes:
    """The raw body, refused (413) as soon as it passes ``limit`` even without a Content-Length."""
    content = request.content
    if request.content_length is not None:
        return bytes(await content.read())
    chunks: list[bytes] = []
    size = 0
    async for chunk in content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise bodies.BodyError(413, f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
