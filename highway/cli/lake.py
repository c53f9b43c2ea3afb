"""`highway lake compact|maintain`: small files and old snapshots of the Iceberg lake.

``compact`` rewrites each closed table-hour with several files into target-size files (one snapshot
per hour, safe against the worker appending at the same time); ``maintain`` also expires old
snapshots and removes files no snapshot references once they are older than the safety window
(``connectors.iceberg_maintenance``). Both need ``lake_format = "iceberg"``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from connectors.iceberg_maintenance import MaintenanceReport, maintain_lane
from highway.cli.common import console, state

Lane = Annotated[str | None, typer.Option(help="lane (default: every configured lane)")]
Grace = Annotated[float, typer.Option(help="an hour counts as closed this many seconds after it ended")]


def _run(ctx: typer.Context, lane: str | None, compact: bool, clean: bool, grace_s: float) -> None:
    settings = state(ctx).settings()
    if settings.lake_format != "iceberg":
        console.print(
            "[red]lake maintenance is for lake_format=iceberg[/red] (the parquet lake has no snapshots)"
        )
        raise typer.Exit(2)
    total = MaintenanceReport()
    for name in [lane] if lane else settings.lanes:
        report = maintain_lane(settings, name, compact=compact, clean=clean, grace_s=grace_s)
        for key, value in asdict(report).items():
            setattr(total, key, getattr(total, key) + value)
    typer.echo(" ".join(f"{key}={value}" for key, value in asdict(total).items()))


def compact(ctx: typer.Context, lane: Lane = None, grace_s: Grace = 600.0) -> None:
    """Rewrite the small files of closed hours into target-size files."""
    _run(ctx, lane, compact=True, clean=False, grace_s=grace_s)


def maintain(ctx: typer.Context, lane: Lane = None, grace_s: Grace = 600.0) -> None:
    """Compact, expire old snapshots, and remove unreferenced files past the safety window."""
    _run(ctx, lane, compact=True, clean=True, grace_s=grace_s)


def register(app: typer.Typer) -> None:
    lake = typer.Typer(
        help="the Iceberg lake: compaction, snapshot expiry, orphan files", no_args_is_help=True
    )
    lake.command("compact")(compact)
    lake.command("maintain")(maintain)
    app.add_typer(lake, name="lake")
