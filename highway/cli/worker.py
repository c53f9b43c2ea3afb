"""`highway worker`: run the Faust app (all roles, or a subset) with its /health page.

SIGTERM and SIGINT stop the worker cleanly: faust's Worker stops the agents, commits what it has
acknowledged and leaves the consumer group before the process exits.
"""

from __future__ import annotations

from typing import Annotated

import typer

from highway.cli.common import console, fail, state
from highway.errors import HighwayError


def parse_roles(value: str) -> list[str]:
    """``router,lake`` → ``["router", "lake"]``; order kept, duplicates dropped (pure)."""
    roles: list[str] = []
    for part in value.split(","):
        role = part.strip()
        if role and role not in roles:
            roles.append(role)
    return roles


def worker(
    ctx: typer.Context,
    role: Annotated[
        str, typer.Option("--role", "-r", help="comma-separated subset of router,lake,realtime")
    ] = "router,lake,realtime",
) -> None:
    """Run a Highway worker (Faust) until SIGTERM/SIGINT."""
    from faust.worker import Worker

    from streams.app import ROLES, create_app

    settings = state(ctx).settings()
    roles = parse_roles(role)
    unknown = sorted(set(roles) - set(ROLES))
    if not roles or unknown:
        console.print(
            f"[red]error:[/red] unknown role(s) {unknown or [role]}; choose from {', '.join(ROLES)}"
        )
        raise typer.Exit(2)
    try:
        app = create_app(settings, roles)
    except HighwayError as exc:
        raise fail(exc) from exc
    console.print(
        f"worker {app.conf.id} roles={','.join(roles)} broker={settings.kafka_bootstrap} "
        f"http=http://{settings.http_host}:{settings.http_port}/health"
    )
    Worker(app, loglevel=settings.log_level, quiet=True).execute_from_commandline()


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
