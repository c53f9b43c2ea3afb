"""`highway bench route|lake|realtime`: throughput and latency next to a same-run baseline."""

from __future__ import annotations

import typer

from bench import lake, realtime, route


def register(app: typer.Typer) -> None:
    bench_app = typer.Typer(
        help="Measure a stage next to the raw confluent-kafka baseline.", no_args_is_help=True
    )
    for stage in (route, lake, realtime):
        stage.register(bench_app)
    app.add_typer(bench_app, name="bench")
