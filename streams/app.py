"""The Faust app: one per worker process, with the stages (roles) it runs and the user's plugins.

Roles are stages — ``router``, ``lake``, ``realtime``, ``sessions`` — each registered by its own module on the
shared consumer service (``streams.consumer``), and the HTTP front door ``collector``
(``streams.collector``), which runs only where asked for. Plugins are ordinary Faust agents in the
user's own modules (``settings.plugins``, see ``streams.plugins``). Every worker serves ``/health`` and
``/metrics`` (one :class:`~prometheus_client.CollectorRegistry` per app, passed to every stage and
plugin — no process-global registry), whatever its roles.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Sequence

import faust
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from connectors.kafka_config import faust_broker_url, faust_credentials
from core.errors import ConfigError
from core.http_access import AccessPolicy, token_problem
from core.settings import Settings
from streams import console, console_catalog
from streams.health import StageStates, health_board
from streams.http_auth import access_middleware, tls_context
from streams.plugins import load_plugins

ROLES = ("router", "lake", "realtime", "sessions", "collector")
DEFAULT_ROLES = ("router", "lake", "realtime", "sessions")

PUBLIC_PATHS = ("/health", "/ready", "/v1/events", "/v1/highway.js", *console.PUBLIC_CONSOLE_PATHS)
"""Routes answered without the API token: the probes, the collector's routes (they check their
own per-lane keys) and the console's pages (code, no data: its data calls need the token).
``/metrics`` joins them unless ``metrics_require_token``."""
Registrar = Callable[[faust.App, Settings, CollectorRegistry], None]


def _registrars() -> dict[str, Registrar]:
    # Imported here so that a worker pays only for the roles it runs.
    from streams import collector, lake, realtime, routing, sessions

    return {
        "router": routing.register,
        "lake": lake.register,
        "realtime": realtime.register,
        "sessions": sessions.register,
        "collector": collector.register,
    }


def create_app(
    settings: Settings, roles: Sequence[str] = DEFAULT_ROLES, registry: CollectorRegistry | None = None
) -> faust.App:
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise ValueError(f"unknown role(s) {unknown}; choose from {list(ROLES)}")
    problem = token_problem(settings.http_host, settings.api_token is not None)
    if problem:
        raise ConfigError(problem)
    token = settings.api_token.get_secret_value() if settings.api_token is not None else None
    policy = AccessPolicy(token, PUBLIC_PATHS, settings.metrics_require_token)
    try:
        web_tls = tls_context(settings)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"http_tls_cert_file/http_tls_key_file cannot be loaded: {exc}") from exc
    datadir = settings.state_dir / "faust"
    try:
        datadir.mkdir(parents=True, exist_ok=True)  # faust's table manager fails late without it
    except OSError as exc:
        raise ConfigError(f"state_dir {settings.state_dir} cannot be created: {exc}") from exc
    app = faust.App(
        settings.app_group_id(roles, DEFAULT_ROLES),
        broker=faust_broker_url(settings),
        broker_credentials=faust_credentials(settings),
        env_prefix="HIGHWAY_FAUST_",
        autodiscover=False,
        store="memory://",
        datadir=str(datadir),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=True,
        web_bind=settings.http_host,
        web_host=settings.http_host,
        web_port=settings.http_port,
        web_transport="tcp://",
        web_ssl_context=web_tls,
        web_application_options={
            "middlewares": [access_middleware(policy)],
            # The collector inflates gzip bodies itself, stopping at its size limit (zip bombs).
            **({"handler_args": {"auto_decompress": False}} if "collector" in roles else {}),
        },
    )
    if registry is None:
        registry = CollectorRegistry()
        ProcessCollector(registry=registry)
    _serve_health_and_metrics(app, roles, registry)
    console.register(app, settings)
    console_catalog.register(app, settings)
    registrars = _registrars()
    for role in roles:
        registrars[role](app, settings, registry)
    if "lake" in roles:
        from streams import analytics_api

        analytics_api.register(app, settings)
    load_plugins(app, settings, registry)
    return app


def _serve_health_and_metrics(app: faust.App, roles: Sequence[str], registry: CollectorRegistry) -> None:
    board = health_board(app)
    registry.register(StageStates(board))

    @app.page("/health")
    async def health(web: View, request: Request) -> Response:
        status, body = board.report()
        return web.json({**body, "roles": list(roles)}, status=status)

    @app.page("/ready")
    async def ready(web: View, request: Request) -> Response:
        status, body = board.readiness()
        return web.json(body, status=status)

    @app.page("/metrics")
    async def metrics(web: View, request: Request) -> Response:
        body = await asyncio.to_thread(generate_latest, registry)
        return web.bytes(body, headers={"Content-Type": CONTENT_TYPE_LATEST})
