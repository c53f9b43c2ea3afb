"""`highway bench lake`'s figures on a small ``file://`` lake: files per table-hour from what the
tables hold, the same DuckDB answer over Parquet and gzip JSON, and a report naming every bound."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from bench.lake_figures import (
    SCAN,
    compaction,
    download,
    files_per_table_hour,
    lake_files,
    query_comparison,
    write_json_gzip,
)
from bench.lake_report import render
from bench.lake_worth import GOAL_BYTES, GOAL_QUERY, column_bytes
from connectors.lake_fs import LakeStore
from core.lake.encode import build_table, parquet_bytes
from core.lake.flush import plan_files
from core.lake.records import decode
from core.lake.schema import TableSchema
from core.settings import Settings

HOUR_MS = 3_600_000
TS = 1_790_000_000_000 - 1_790_000_000_000 % HOUR_MS


def events(name: str, count: int, start_ms: int) -> list[dict[str, Any]]:
    return [
        {
            "event_name": name,
            "event_id": f"{name}-{start_ms}-{i}",
            "user_id": f"u{i % 7}",
            "server_ts": start_ms + i * 60_000,
            "properties": {"amount": i},
        }
        for i in range(count)
    ]


def write_lake(settings: Settings, batches: list[list[dict[str, Any]]]) -> dict[str, list[bytes]]:
    """Each batch becomes one flush (one file per table-hour); returns the events by table as JSON."""
    store = LakeStore(settings)
    by_table: dict[str, list[bytes]] = {}
    for first, batch in enumerate(batches):
        encoded = [orjson.dumps(event) for event in batch]
        rows = [decode(0, first * 1000 + i, TS, value) for i, value in enumerate(encoded)]
        name = batch[0]["event_name"]
        by_table.setdefault(name, []).extend(encoded)
        schema = TableSchema()
        schema.observe(row.properties for row in rows)
        for plan in plan_files("lane1", name, rows, "server"):
            store.put(plan.key, parquet_bytes(build_table([rows[i] for i in plan.positions], schema)))
    return by_table


def test_files_per_table_hour_and_the_same_answer_over_parquet_and_json(tmp_path: Path) -> None:
    settings = Settings(lake_uri=f"file://{tmp_path}/lake", lanes=["lane1"], lake_format="parquet")
    by_table = write_lake(
        settings,
        [events("join", 90, TS), events("join", 30, TS + 10), events("pay", 10, TS + HOUR_MS)],
    )
    files = lake_files(settings, "lane1")
    figures = files_per_table_hour(files)
    # join: 90 events a minute apart span two hours (2 files), the second flush adds one in the
    # first hour; pay: one file.
    assert figures["files"] == 4
    assert figures["table_hours"] == 3
    assert figures["per_table_hour"]["max"] == 2
    assert figures["bytes"] == sum(f.size for f in files) > 0
    assert compaction(settings, "lane1") is None  # the parquet format has none
    json_bytes = write_json_gzip(by_table, tmp_path / "json")
    assert json_bytes > 0
    parquet = download(settings, files, tmp_path / "parquet")
    scan = query_comparison(parquet, tmp_path / "json", repeat=1, query=SCAN)
    assert scan["groups"] == 3
    result = query_comparison(parquet, tmp_path / "json", repeat=2)
    assert result["groups"] == 3  # (join, hour 1), (join, hour 2), (pay, hour 2)
    assert result["seconds"]["parquet"]["n"] == 2
    assert result["speedup"]["n"] == 2
    assert result["seconds"]["in memory"]["n"] == 2
    assert result["ceiling"]["n"] == 2
    columns = column_bytes(parquet)
    assert sum(columns.values()) == sum(path.stat().st_size for path in parquet.rglob("*.parquet"))
    assert min(columns["p_*"], columns["event_id"], columns["(footer and headers)"]) > 0


def test_the_report_names_what_bounds_each_figure() -> None:
    spread = {"median": 10.0, "min": 9.0, "max": 11.0, "n": 3}
    files = {"files": 4, "table_hours": 2, "bytes": 100, "per_table_hour": spread, "mean": 2.0}
    run = {
        "event_types": 20,
        "tables": 20,
        "rates": {
            "passthrough": spread,
            "lake": spread,
            "lake_consume": spread,
            "flush_seconds": spread,
        },
        "backlog": {
            "events": 1_000_000,
            "tables": 20,
            "rates": {"passthrough": spread, "lake": spread, "lake_consume": spread},
            "lake_vs_passthrough": {"median": 0.6, "min": 0.5, "max": 0.7, "n": 3},
        },
        "lake_vs_passthrough": {"median": 1.0, "min": 0.9, "max": 1.1, "n": 3},
        "files": files,
        "after_compaction": None,
        "gzip_json_bytes": 200,
        "parquet_vs_gzip_json": 0.5,
        "query": {"seconds": {"parquet": spread, "gzip JSON": spread}, "speedup": spread},
    }
    worth = {
        "events": 600_000,
        "event_types": 20,
        "tables": 20,
        "rows_per_table": {"min": 900, "max": 180_000},
        "flush_rows": 5_000,
        "lake_format": "iceberg",
        "files": files,
        "after_compaction": {**files, "files": 2, "bytes": 3_000_000},
        "gzip_json_bytes": 200,
        "json_bytes": 1_000,
        "parquet_vs_gzip_json": 0.5,
        "parquet_vs_json": 0.1,
        "columns": {"event_id": 70, "p_*": 20, "(footer and headers)": 10},
        "query": {
            "seconds": {"parquet": spread, "gzip JSON": spread, "in memory": spread},
            "speedup": spread,
            "ceiling": spread,
        },
        "scan_query": {"seconds": {"parquet": spread, "gzip JSON": spread}, "speedup": spread},
        "goals": {"parquet_vs_gzip_json": GOAL_BYTES, "query_speedup": GOAL_QUERY},
    }
    latency = {"median": 1.0, "p50": 11.0, "max": 12.0, "n": 3}
    result = {
        "events": 1000,
        "partitions": 2,
        "repeat": 3,
        "lake_format": "parquet",
        "flush": {"lake_flush_rows": 100_000, "lake_flush_bytes": 64 << 20, "lake_flush_age_s": 60.0},
        "s3_puts_per_s": 150.0,
        "types": [run],
        "latency": {"flush_age_s": 10.0, "bench_probe_direct": latency, "bench_probe_routed": latency},
        "worth": worth,
    }
    out = io.StringIO()
    Console(file=out, width=1000).print(render(result))
    text = out.getvalue()
    assert "what bounds it" in text
    assert "up to 120 per table-hour" in text
    assert "running lake / passthrough" in text
    assert "0.600x (0.500-0.700x, n=3)" in text
    assert "no compaction" in text
    assert "+1.00 s" in text
    assert "= 0.5x" in text
    assert "= 10.0x (9.0-11.0x, n=3) faster" in text
    assert "≤ 0.3x" in text  # the goals next to the figures
    assert "≥ 10x" in text
    assert "event_id 0.350x" in text  # each column's share of the gzip JSON
    assert "events only (reading)" in text
    assert "ceiling 10.0x (9.0-11.0x, n=3): the same rows already in DuckDB's memory" in text
    assert "mean file 1.50 MB" in text  # 3 MB over the 2 compacted files
    # --probes 0 and --worth-events 0 skip their sections; the rest still renders
    out = io.StringIO()
    Console(file=out, width=1000).print(render({**result, "latency": None, "worth": None}))
    assert "running lake / passthrough" in out.getvalue()
    assert "produce → queryable" not in out.getvalue()
