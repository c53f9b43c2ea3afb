"""The Faust app: one per worker process, with the agents of the roles it runs.

Roles are agent families — ``router``, ``lake``, ``realtime`` — each registered by its own module.
Every worker in one consumer group must run the same set of roles: the group id names them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import faust
from faust.web import Request, Response, View

from connectors.kafka_config import faust_broker_url, faust_credentials
from highway.errors import ConfigError
from highway.settings import Settings

ROLES = ("router", "lake", "realtime")
Registrar = Callable[[faust.App, Settings], None]


def _registrars() -> dict[str, Registrar]:
    # Imported here so that a worker pays only for the roles it runs.
    from streams import lake, realtime, routing

    return {"router": routing.register, "lake": lake.register, "realtime": realtime.register}


def group_id(settings: Settings, roles: Sequence[str]) -> str:
    if set(roles) == set(ROLES):
        return settings.app_id
    return f"{settings.app_id}-{'-'.join(sorted(roles))}"


def create_app(settings: Settings, roles: Sequence[str] = ROLES) -> faust.App:
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise ValueError(f"unknown role(s) {unknown}; choose from {list(ROLES)}")
    datadir = settings.state_dir / "faust"
    try:
        datadir.mkdir(parents=True, exist_ok=True)  # faust's table manager fails late without it
    except OSError as exc:
        raise ConfigError(f"state_dir {settings.state_dir} cannot be created: {exc}") from exc
    app = faust.App(
        group_id(settings, roles),
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
    )

    @app.page("/health")
    async def health(web: View, request: Request) -> Response:
        return web.json({"status": "ok", "roles": list(roles)})

    registrars = _registrars()
    for role in roles:
        registrars[role](app, settings)
    return app
