"""`highway dev up|down|status|jars`: a real local Kafka broker and S3 API for development.

``eval "$(highway dev up)"`` starts both (or reuses running ones), waits until they answer and
exports the settings that reach them; only the ``export`` lines go to stdout, progress goes to
stderr. Services are detached and keep running until ``highway dev down``. State (pids, ports, logs,
broker data) lives in ``<state_dir>/dev``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from connectors.local.kafka_jars import default_cache_root, resolve_jars
from connectors.local.stack import render_exports, stack_status, start_stack, stop_stack
from core.errors import HighwayError
from core.settings import Settings
from highway.cli.common import console, fail, state


def dev_state_dir(settings: Settings) -> Path:
    return settings.state_dir / "dev"


def up(ctx: typer.Context) -> None:
    """Start (or reuse) the local broker and S3 API; print `export` lines for eval."""
    settings = state(ctx).settings()
    started = time.monotonic()
    try:
        console.print("Starting (or reusing) the local Kafka broker and S3 API…")
        stack = start_stack(settings, dev_state_dir(settings), console, allow_docker=False)
    except HighwayError as exc:
        raise fail(exc) from exc
    console.print(
        f"[green]ready[/green] in {time.monotonic() - started:.1f}s: Kafka {stack.bootstrap}, "
        f"S3 {stack.s3_endpoint}, lake {stack.lake_uri}  (stop with `highway dev down`)"
    )
    typer.echo(render_exports(stack.env()), nl=False)


def down(ctx: typer.Context) -> None:
    """Stop the local broker and S3 API (harmless when they are not running)."""
    settings = state(ctx).settings()
    try:
        stopped = stop_stack(dev_state_dir(settings))
    except (HighwayError, RuntimeError) as exc:
        raise fail(HighwayError(str(exc))) from exc
    console.print(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")


def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Report whether the local services run, with ports, pids and log paths (exit 3 if not)."""
    settings = state(ctx).settings()
    services = stack_status(dev_state_dir(settings))
    all_running = all(service["running"] for service in services)
    if as_json:
        typer.echo(json.dumps(services, indent=2))
        raise typer.Exit(0 if all_running else 3)
    table = Table("service", "state", "address", "pid")
    table.add_column("log", overflow="fold")
    for service in services:
        address = service.get("bootstrap") or service.get("endpoint") or "-"
        running = "[green]running[/green]" if service["running"] else "[red]stopped[/red]"
        if service["service"] == "s3" and service["running"] and not service.get("serving"):
            running = "[yellow]outage (port closed)[/yellow]"
        table.add_row(
            service["service"], running, str(address), str(service.get("pid") or "-"), service["log"]
        )
    Console().print(table)
    if not all_running:
        raise typer.Exit(3)


def jars(ctx: typer.Context) -> None:
    """Resolve the Kafka broker's jars from Maven Central into the cache (used by `make setup`)."""
    settings = state(ctx).settings()
    try:
        path = resolve_jars(
            settings.dev_cache_dir or default_cache_root(), settings.dev_kafka_version, console
        )
    except HighwayError as exc:
        raise fail(exc) from exc
    console.print(f"Kafka {settings.dev_kafka_version} classpath: {path}")


def register(app: typer.Typer) -> None:
    dev_app = typer.Typer(
        help="Local Kafka broker and S3 API for development and tests.", no_args_is_help=True
    )
    dev_app.command("up")(up)
    dev_app.command("down")(down)
    dev_app.command("status")(status)
    dev_app.command("jars")(jars)
    app.add_typer(dev_app, name="dev")
