"""The ``highway bench lake`` report: one column per event-type count, and what bounds each figure;
then what the output is worth at a realistic size (``--worth-events``), each figure next to its goal."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table


def _spread(value: dict[str, float] | None, spec: str = ",.0f", suffix: str = "") -> str:
    if not value:
        return "—"
    median = f"{value['median']:{spec}}{suffix}"
    if value["n"] == 1:
        return median
    return f"{median} ({value['min']:{spec}}-{value['max']:{spec}}{suffix}, n={value['n']})"


def _backlog(run: dict[str, Any], rate: str) -> str:
    backlog = run.get("backlog")
    if not backlog:
        return "— (--backlog-events 0)"
    return f"{_spread(backlog['rates'].get(rate))} ({backlog['events']:,} events)"


def _files(figures: dict[str, Any] | None) -> str:
    if not figures:
        return "no compaction in this build/format"
    per = figures["per_table_hour"] or {"median": 0, "max": 0}
    return (
        f"median {per['median']:g}, max {per['max']:g}, mean {figures['mean']} "
        f"({figures['files']} files / {figures['table_hours']} table-hours)"
    )


def _bytes(run: dict[str, Any]) -> str:
    parquet = (run["after_compaction"] or run["files"])["bytes"]
    return f"{parquet / 1e6:.2f} MB vs {run['gzip_json_bytes'] / 1e6:.2f} MB = {run['parquet_vs_gzip_json']}x"


def query_cell(query: dict[str, Any]) -> str:
    seconds = query["seconds"]
    cell = (
        f"{_spread(seconds['parquet'], '.3f', ' s')} vs {_spread(seconds['gzip JSON'], '.3f', ' s')}"
        f" = {_spread(query.get('speedup'), '.1f', 'x')} faster (per repetition)"
    )
    if query.get("ceiling"):
        # Older JSON results have no in-memory run.
        cell += (
            f"; ceiling {_spread(query['ceiling'], '.1f', 'x')}: the same rows already in DuckDB's memory "
            f"take {_spread(seconds['in memory'], '.3f', ' s')}, so no file format can beat gzip JSON by more"
        )
    return cell


def _query(run: dict[str, Any]) -> str:
    return query_cell(run["query"])


def render(result: dict[str, Any]) -> Group:
    runs = result["types"]
    flush = result["flush"]
    title = (
        f"highway bench lake — {result['events']:,} events per type count, "
        f"{result['partitions']} partitions/topic, {result['repeat']} interleaved repetitions "
        f"(median (min-max)); lake_format={result['lake_format']}, "
        f"flush: {flush['lake_flush_rows']:,} rows / {flush['lake_flush_bytes'] // 2**20} MiB / "
        f"{flush['lake_flush_age_s']:g} s"
    )
    table = Table(title=title, show_lines=True)
    table.add_column("measure")
    for run in runs:
        table.add_column(f"{run['event_types']} types ({run['tables']} tables)", justify="right")
    table.add_column("what bounds it")
    for name, cell, bound in _rows(result):
        table.add_row(name, *(cell(run) for run in runs), bound)
    worth = [render_worth(result["worth"])] if result.get("worth") else []
    latency = [_latency(result["latency"])] if result.get("latency") else []
    return Group(table, *latency, *worth)


def _rows(result: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """(measure, cell of one type-count run, what bounds it)."""
    return _cold_rows(result) + _backlog_rows() + _file_rows(result)


def _cold_rows(result: dict[str, Any]) -> list[tuple[str, Any, str]]:
    return [
        ("passthrough events/s", lambda r: _spread(r["rates"]["passthrough"]), "1 thread: consume → produce"),
        (
            "lake events/s (assignment → durable)",
            lambda r: _spread(r["rates"]["lake"]),
            "consuming + one flush of every buffer (below); no age wait (final flush on SIGTERM)",
        ),
        (
            "  consuming only (decode + buffer)",
            lambda r: _spread(r["rates"]["lake_consume"]),
            "events/s until every event was buffered (no flush yet)",
        ),
        (
            "  one flush of every buffer (s)",
            lambda r: _spread(r["rates"]["flush_seconds"], ".2f", " s"),
            "Parquet encoding, (types x partitions) x 2 PUTs (file + manifest); this S3 API takes "
            f"{result['s3_puts_per_s']:,.0f} PUTs/s of 16 KiB",
        ),
        (
            "lake / passthrough",
            lambda r: _spread(r["lake_vs_passthrough"], ".3f", "x"),
            "a fresh lane: every table created in this one flush",
        ),
    ]


def _backlog_rows() -> list[tuple[str, Any, str]]:
    return [
        (
            "running lake, backlog: passthrough events/s",
            lambda r: _backlog(r, "passthrough"),
            "the same raw consume → produce over a source of the backlog's events",
        ),
        (
            "running lake, backlog: lake events/s",
            lambda r: _backlog(r, "lake"),
            "each cold run's lake restarted on a backlog produced after it (its tables exist): "
            "assignment → durable, memory-cap flushes (biggest buffers first) and the final flush",
        ),
        (
            "  consuming only",
            lambda r: _backlog(r, "lake_consume"),
            "events/s until every backlog event was consumed (flushes at the memory cap included)",
        ),
        (
            "running lake / passthrough",
            lambda r: _spread((r.get("backlog") or {}).get("lake_vs_passthrough"), ".3f", "x"),
            "goal ≥ 0.5x at 250 types",
        ),
    ]


def _file_rows(result: dict[str, Any]) -> list[tuple[str, Any, str]]:
    flush = result["flush"]
    steady = 3600 / flush["lake_flush_age_s"] * result["partitions"]
    return [
        (
            "files per table-hour (this run)",
            lambda r: _files(r["files"]),
            "a pre-loaded backlog flushed once: ≈ partitions per table-hour; in steady state each "
            f"partition flushes every {flush['lake_flush_age_s']:g} s: up to {steady:,.0f} per table-hour",
        ),
        (
            "files per table-hour after compaction",
            lambda r: _files(r["after_compaction"]),
            "compaction's target size",
        ),
        (
            "Parquet vs gzip JSON bytes",
            _bytes,
            "rows per file (small files compress poorly; random event_id UUIDs dominate both); goal ≤ 0.3x "
            "after compaction",
        ),
        (
            "DuckDB aggregation: Parquet vs gzip JSON",
            _query,
            "local disk, same DuckDB query (per type and hour: events, distinct users): Parquet reads 3 "
            "columns but opens every file; JSON decompresses and parses everything; goal ≥ 10x",
        ),
    ]


def _latency(latency: dict[str, Any]) -> Table:
    age = latency["flush_age_s"]
    table = Table(title=f"produce → queryable (lake_flush_age_s = {age:g} s for this worker)")
    table.add_column("produced to")
    table.add_column("p50 / max", justify="right")
    table.add_column("over the flush age", justify="right")
    table.add_column("what bounds it")
    bounds = {
        "bench_probe_direct": ("the per-event topic", "the flush age (a lone event waits), then a flush"),
        "bench_probe_routed": ("the all-events topic", "router commit interval + the flush age + a flush"),
    }
    for key, (label, bound) in bounds.items():
        value = latency[key]
        measured = f"{value['p50']:.2f} s / {value['max']:.2f} s (n={value['n']})"
        table.add_row(label, measured, f"+{value['p50'] - age:.2f} s", bound)
    return table


def _worth_files(figures: dict[str, Any] | None) -> str:
    if not figures:
        return "— (this format has no compaction)"
    per = figures["per_table_hour"] or {"median": 0, "max": 0}
    mean_mb = figures["bytes"] / figures["files"] / 1e6 if figures["files"] else 0.0
    return (
        f"{figures['files']} files / {figures['table_hours']} table-hours (median {per['median']:g}, "
        f"max {per['max']:g}); mean file {mean_mb:.2f} MB"
    )


def _columns(worth: dict[str, Any], top: int = 6) -> str:
    gz = worth["gzip_json_bytes"]
    return ", ".join(f"{name} {size / gz:.3f}x" for name, size in list(worth["columns"].items())[:top])


def render_worth(worth: dict[str, Any]) -> Table:
    goals = worth["goals"]
    rows = worth["rows_per_table"]
    table = Table(
        title=(
            f"what the output is worth — {worth['events']:,} events, {worth['tables']} tables "
            f"({rows['min']:,}-{rows['max']:,} rows each), lake_format={worth['lake_format']}, flushed every "
            f"{worth['flush_rows']:,} rows per partition"
        ),
        show_lines=True,
    )
    for column in ("measure", "measured", "goal", "what bounds it"):
        table.add_column(column)
    parquet = (worth["after_compaction"] or worth["files"])["bytes"]
    when = "after compaction" if worth["after_compaction"] else "no compaction (parquet format)"
    table.add_row("files as flushed", _worth_files(worth["files"]), "", "one file per flush per table-hour")
    table.add_row(
        "files after compaction",
        _worth_files(worth["after_compaction"]),
        "one per table-hour",
        "lake_compact_target_bytes, counted in Arrow bytes by pyiceberg (files on disk are smaller)",
    )
    table.add_row(
        f"Parquet / gzip JSON bytes ({when})",
        f"{parquet / 1e6:.2f} MB / {worth['gzip_json_bytes'] / 1e6:.2f} MB = "
        f"{worth['parquet_vs_gzip_json']}x "
        f"(raw JSON {worth['json_bytes'] / 1e6:.1f} MB: {worth['parquet_vs_json']}x)",
        f"≤ {goals['parquet_vs_gzip_json']}x",
        "the columns, as a share of the gzip JSON: " + _columns(worth),
    )
    table.add_row(
        "DuckDB aggregation: Parquet vs gzip JSON",
        query_cell(worth["query"]),
        f"≥ {goals['query_speedup']:g}x",
        "local disk; events and distinct users per type and hour: the grouped distinct count and the "
        "time-zone-aware hour truncation are CPU every format pays alike, so the ceiling bounds it",
    )
    if worth.get("scan_query"):
        table.add_row(
            "  the same groups, events only (reading)",
            query_cell(worth["scan_query"]),
            f"≥ {goals['query_speedup']:g}x",
            "Parquet reads 3 columns of every file; JSON decompresses and parses every byte",
        )
    return table
