"""`highway bench analytics`: our funnel and path queries over N lake events, next to the same SQL run
by DuckDB directly on the same files.

1. ``--events`` simulator-shaped rows of the common table are written as lake Parquet files
   (``bench.analytics_data``: numpy, no Kafka — the size, not the pipeline, is under test);
2. ``--repeat`` interleaved repetitions (the order rotates) of four measurements: **ours** — the
   funnel (the three most common events, within 30 minutes) and the paths (after the most common
   event, depth 3, top 10) through ``connectors.analytics_lake``, as the CLI and the HTTP API run
   them (listing the lake, opening the views, the query) — and **direct**: the same SQL text by a
   bare DuckDB connection over ``read_parquet`` of the files;
3. each figure is the median with its range, the answers of both must be equal, and the report says
   what bounds the time (``bench.analytics_report``).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import duckdb
import orjson
import typer
from rich.console import Console

from bench.analytics_data import common_rows, write_lake_files
from bench.analytics_report import FUNNEL_GOAL_S, render
from bench.baseline import SettingsFor
from bench.stats import rotated, spread
from connectors.analytics_lake import run_funnel, run_paths
from core.analytics.funnel import funnel_result, funnel_sql
from core.analytics.params import FunnelSpec, PathSpec
from core.analytics.paths import paths_result, paths_sql
from core.analytics.sql import Source
from core.lake.layout import COMMON_TABLE
from core.settings import Settings
from core.sim.names import catalogue

LANE = "bench"
START_MS = 1_780_000_000_000
EVENTS_PER_USER = 50


def _direct(root: Path) -> Source:
    glob = str(root / LANE / COMMON_TABLE / "**" / "*.parquet").replace("'", "''")
    return Source(f"read_parquet('{glob}', hive_partitioning = true, hive_types_autocast = false)")


def _timed(work: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall seconds, CPU seconds of this process (DuckDB's threads included) and the answer."""
    started, cpu = time.perf_counter(), time.process_time()
    answer = work()
    return time.perf_counter() - started, time.process_time() - cpu, answer


def _bare(sql: str) -> Callable[[], list[tuple[Any, ...]]]:
    """``sql`` on a fresh DuckDB connection: the column names, then the rows."""

    def run() -> list[tuple[Any, ...]]:
        with duckdb.connect() as connection:
            result = connection.execute(sql)
            columns = [column[0] for column in result.description or []]
            return [tuple(columns), *result.fetchall()]

    return run


def _interleaved(
    measurements: dict[str, Callable[[], Any]], repeat: int
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, Any]]:
    """Wall and CPU seconds of each measurement per repetition (the order rotates), and each one's
    last answer."""
    seconds: dict[str, list[float]] = {name: [] for name in measurements}
    cpu: dict[str, list[float]] = {name: [] for name in measurements}
    answers: dict[str, Any] = {}
    for repetition in range(repeat):
        for name in rotated(list(measurements), repetition):
            took, used, answers[name] = _timed(measurements[name])
            seconds[name].append(took)
            cpu[name].append(used)
    return seconds, cpu, answers


def _summaries(values: dict[str, list[float]]) -> dict[str, dict[str, float | int]]:
    return {name: summary.as_dict() for name, found in values.items() if (summary := spread(found))}


def _duckdb_threads() -> int:
    with duckdb.connect() as connection:
        row = connection.execute("SELECT current_setting('threads')").fetchone()
    return int(row[0]) if row else 0


def run_analytics_bench(settings: Settings, events: int, repeat: int, root: Path) -> dict[str, Any]:
    started = time.perf_counter()
    rows = common_rows(events, max(1, events // EVENTS_PER_USER), START_MS)
    generated = time.perf_counter() - started
    files, size = write_lake_files(rows, root, LANE)
    written = time.perf_counter() - started - generated
    del rows
    lake = settings.model_copy(
        update={
            "lake_uri": f"file://{root}",
            "lake_format": "parquet",
            "lanes": [LANE],
            "lake_query_timeout_s": 3600.0,
        }
    )
    names = catalogue()
    funnel = FunnelSpec.parse({"steps": ",".join(names[:3]), "within": "30m"})
    path = PathSpec.parse({"event": names[0], "depth": "3", "top": "10"})
    direct = _direct(root)

    measurements: dict[str, Callable[[], Any]] = {
        "funnel ours": lambda: run_funnel(lake, LANE, funnel),
        "funnel direct": _bare(funnel_sql(funnel, direct)),
        "paths ours": lambda: run_paths(lake, LANE, path),
        "paths direct": _bare(paths_sql(path, direct)),
    }
    seconds, cpu, answers = _interleaved(measurements, repeat)
    columns, *funnel_rows = answers["funnel direct"]
    same_funnel = funnel_result(funnel, columns, funnel_rows) == answers["funnel ours"]
    same_paths = paths_result(path, answers["paths direct"][1:]) == answers["paths ours"]
    return {
        "events": events,
        "users": max(1, events // EVENTS_PER_USER),
        "files": files,
        "bytes": size,
        "generate_s": round(generated, 2),
        "write_s": round(written, 2),
        "repeat": repeat,
        "cpus": os.cpu_count(),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "duckdb_threads": _duckdb_threads(),
        "funnel": {"steps": list(funnel.steps), "within": "30m", "answer": answers["funnel ours"]["steps"]},
        "paths": {
            "event": path.event,
            "depth": path.depth,
            "top": path.top,
            "users": answers["paths ours"]["users"],
        },
        "same_answers": same_funnel and same_paths,
        "seconds": _summaries(seconds),
        "cpu_seconds": _summaries(cpu),
        "goal_funnel_s": FUNNEL_GOAL_S,
    }


def register(bench_app: typer.Typer, settings_for: SettingsFor) -> None:
    @bench_app.command("analytics")
    def analytics(
        ctx: typer.Context,
        events: Annotated[
            int, typer.Option("--events", "-n", help="lake events to query", min=1)
        ] = 10_000_000,
        repeat: Annotated[int, typer.Option(help="interleaved repetitions", min=1)] = 3,
        directory: Annotated[
            Path | None,
            typer.Option("--dir", help="write the lake files here (default: a temporary directory)"),
        ] = None,
        json_path: Annotated[Path | None, typer.Option("--json", help="also write the figures here")] = None,
    ) -> None:
        """Funnel and path query time over N lake events, ours vs DuckDB directly on the files."""
        settings = settings_for(ctx)
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            result = run_analytics_bench(settings, events, repeat, directory)
        else:
            with tempfile.TemporaryDirectory(prefix="highway-bench-analytics-") as work:
                result = run_analytics_bench(settings, events, repeat, Path(work))
        Console(width=max(Console().width, 160)).print(render(result))
        if json_path is not None:
            json_path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
