"""The ``collector`` role: HTTP ingestion of web, mobile and server events into ``<lane>.events.all``.

Served on the worker's faust web server (same host and port as ``/health`` and ``/metrics``):
``POST /v1/events`` and its ``OPTIONS`` preflight (:mod:`streams.collector_http`), and the
browser snippet at ``GET /v1/highway.js``. One idempotent
producer per process (:mod:`connectors.collector_delivery`) writes every request's events.

Stopping (SIGTERM): the service stops accepting (new requests get 503 and retry elsewhere), waits for
the requests being answered — each awaits its own acknowledgements — then flushes the producer. An
event that got a 200 was acknowledged by Kafka before the answer was written, so nothing a client
was told is stored can be lost by the stop, nor by a kill -9.
"""

from __future__ import annotations

import asyncio
import logging

import faust
import mode
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry

from connectors.collector_delivery import DeliveryEdge
from connectors.collector_js import SNIPPET_CONTENT_TYPE, snippet_bytes
from connectors.kafka_admin import KafkaAdmin
from core.errors import TransientError
from core.settings import Settings
from streams.collector_http import Collector, CollectorMetrics
from streams.health import health_board

log = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 30.0
TOPIC_RETRY_S = 5.0


class CollectorService(mode.Service):
    """Owns the producer's lifetime: topics and poll thread at start, drain and flush at stop."""

    def __init__(self, settings: Settings, collector: Collector, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.settings = settings
        self.collector = collector
        self.topics_missing: str | None = None

    @property
    def shortlabel(self) -> str:
        return "collector"

    async def on_start(self) -> None:
        self.collector.edge.start()
        self.add_future(self._ensure_topics())

    async def _ensure_topics(self) -> None:
        # Brokers normally refuse to auto-create topics; a broker away at start delays, never stops us.
        topics = [self.settings.all_events_topic(lane) for lane in self.settings.lanes]
        while not self.should_stop:
            try:
                await asyncio.to_thread(KafkaAdmin(self.settings).ensure_topics, topics)
                self.topics_missing = None
                return
            except TransientError as exc:
                self.topics_missing = f"lane topics not ensured yet: {exc}"
                log.warning("collector: %s; retrying in %.0fs", exc, TOPIC_RETRY_S)
                await self.sleep(TOPIC_RETRY_S)

    async def on_stop(self) -> None:
        collector = self.collector
        collector.accepting = False
        deadline = asyncio.get_running_loop().time() + DRAIN_TIMEOUT_S
        while collector.active and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        if collector.active:
            log.error("collector stopping with %d request(s) still unanswered", collector.active)
        left = await asyncio.to_thread(collector.edge.close, DRAIN_TIMEOUT_S)
        log.info("collector drained (%d event(s) left unacknowledged)", left)

    def health(self) -> tuple[str, str | None]:
        if not self.collector.accepting:
            return "degraded", "collector stopping: new requests get 503"
        if not self.settings.collector_api_keys:
            return "degraded", "collector_api_keys is empty: every request is refused (401)"
        reason = self.topics_missing or self.collector.edge.degraded()
        return ("degraded", reason) if reason else ("ok", None)


def register(app: faust.App, settings: Settings, registry: CollectorRegistry) -> None:
    """The collector's routes and its service (a direct dependency: it starts with the web server)."""
    if not settings.collector_api_keys:
        log.warning("collector: collector_api_keys is empty, every request will be refused (401)")
    edge = DeliveryEdge(settings, settings.collector_max_in_flight)
    collector = Collector(settings, edge, CollectorMetrics(registry, edge))
    service = CollectorService(settings, collector, beacon=app.beacon)

    class EventsView(View):
        async def post(self, request: Request) -> Response:
            return await collector.post(self, request)

        async def options(self, request: Request) -> Response:
            return collector.preflight(self, request)

    class SnippetView(View):
        """The browser snippet (docs/collector-clients.md), from the collector's own origin."""

        async def get(self, request: Request) -> Response:
            headers = {"Content-Type": SNIPPET_CONTENT_TYPE, "Cache-Control": "public, max-age=300"}
            return self.bytes(snippet_bytes(), headers=headers)

    app.page("/v1/events")(EventsView)
    app.page("/v1/highway.js")(SnippetView)
    health_board(app).add("collector", service.health)
    app.add_dependency(service)
