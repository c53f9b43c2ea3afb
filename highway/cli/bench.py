"""`highway bench route|lake|realtime|collect|spark|analytics|soak`: throughput and latency next to a
same-run baseline, the Spark read-back check of the lake, analytics query times, and the soak (RSS and
lag over time)."""

from __future__ import annotations

import typer

from bench import analytics, collect, lake, realtime, route, soak, spark_check
from core.settings import Settings
from highway.cli.common import state


def register(app: typer.Typer) -> None:
    bench_app = typer.Typer(
        help="Measure a stage next to the raw confluent-kafka baseline.", no_args_is_help=True
    )
    for stage in (route, lake, realtime, collect, spark_check, analytics, soak):
        stage.register(bench_app, _settings)
    app.add_typer(bench_app, name="bench")


def _settings(ctx: typer.Context) -> Settings:
    return state(ctx).settings()
