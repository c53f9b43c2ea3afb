"""``highway bench lake --worth-events N``: what the lake's output is worth at a realistic size per table.

The speed runs of ``bench lake`` hold 60 000 events over 250 or 20 types (240 to 3 000 rows per table),
where Parquet footers and per-file overhead dominate. This run puts ``N`` simulator events of
``--worth-types`` types through a real lake worker that flushes every ``--worth-flush-rows`` rows
per partition — many small files per table-hour, as a steady flush age writes them — then runs
the lake's compaction when the format has one (Iceberg), and measures what the tables hold then:

* files per table-hour before and after compaction, and the mean file size;
* Parquet bytes against gzip JSON (level 6) and raw JSON of the same events, with the bytes of each
  column (from the Parquet footers) — ``event_id``, a random UUID, bounds what any encoding reaches;
* one DuckDB aggregation over the Parquet files against the same over the gzip JSON, ``repeat``
  interleaved times, the same answer checked (:func:`bench.lake_figures.query_comparison`), next to
  the same query over the rows already in DuckDB's memory — the ceiling no file format can pass; and the
  same groups without the distinct count (:data:`bench.lake_figures.SCAN`), which isolates what
  reading the rows costs from the aggregation's own CPU.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from rich.console import Console

from bench.baseline import bench_settings
from bench.lake_figures import (
    SCAN,
    compaction,
    download,
    files_per_table_hour,
    lake_files,
    query_comparison,
    write_json_gzip,
)
from bench.lake_run import run_lake_worker
from connectors.kafka_admin import KafkaAdmin
from core.settings import Settings

console = Console()
Produce = Callable[[Settings, str, int, int], tuple[str, dict[str, list[bytes]]]]
GOAL_BYTES = 0.3  # Parquet / gzip JSON after compaction (issue 10)
GOAL_QUERY = 10.0  # the aggregation over Parquet this many times faster than over gzip JSON


def column_bytes(root: Path) -> dict[str, int]:
    """Compressed bytes per column over every Parquet file under ``root``; property columns summed as
    ``p_*`` and the footers (everything outside the column chunks) as ``(footer and headers)``."""
    sizes: Counter[str] = Counter()
    for path in sorted(root.rglob("*.parquet")):
        metadata = pq.ParquetFile(path).metadata
        chunks = 0
        for group in range(metadata.num_row_groups):
            row_group = metadata.row_group(group)
            for index in range(row_group.num_columns):
                column = row_group.column(index)
                name = column.path_in_schema
                sizes["p_*" if name.startswith("p_") else name] += column.total_compressed_size
                chunks += column.total_compressed_size
        sizes["(footer and headers)"] += path.stat().st_size - chunks
    return dict(sizes.most_common())


def measure_worth(
    base: Settings,
    n_events: int,
    event_types: int,
    partitions: int,
    flush_rows: int,
    repeat: int,
    work: Path,
    produce: Produce,
) -> dict[str, Any]:
    settings = bench_settings(
        base, f"benchworth{event_types}t", work, topic_partitions=partitions, lake_flush_rows=flush_rows
    )
    lane = settings.lanes[0]
    lane_work = work / lane
    admin = KafkaAdmin(settings)
    try:
        console.print(f"worth: producing {n_events:,} simulator events of {event_types} types …")
        _, by_table = produce(settings, lane, n_events, event_types)
        gz_bytes = write_json_gzip(by_table, lane_work / "json")
        json_bytes = sum(len(line) + 1 for lines in by_table.values() for line in lines)
        console.print(f"worth: lake worker, flushing every {flush_rows:,} rows per partition …")
        run_lake_worker(settings, lane, n_events, lane_work / "lake.log")
    finally:
        admin.delete_topics([t for t in admin.list_topics() if t.startswith(f"{lane}.")])
    before = files_per_table_hour(lake_files(settings, lane))
    after = None
    compact = compaction(settings, lane)
    if compact is not None:
        console.print("worth: compaction …")
        compact()
        after = files_per_table_hour(lake_files(settings, lane))
    files = lake_files(settings, lane)
    local = download(settings, files, lane_work / "parquet")
    console.print(f"worth: DuckDB over {len(files)} Parquet files vs gzip JSON, {repeat} times …")
    query = query_comparison(local, lane_work / "json", repeat)
    scan = query_comparison(local, lane_work / "json", repeat, SCAN)
    parquet = (after or before)["bytes"]
    rows_per_table = sorted(len(lines) for lines in by_table.values())
    return {
        "events": n_events,
        "event_types": event_types,
        "tables": len(by_table),
        "rows_per_table": {"min": rows_per_table[0], "max": rows_per_table[-1]},
        "flush_rows": flush_rows,
        "lake_format": settings.lake_format,
        "files": before,
        "after_compaction": after,
        "gzip_json_bytes": gz_bytes,
        "json_bytes": json_bytes,
        "parquet_vs_gzip_json": round(parquet / gz_bytes, 3),
        "parquet_vs_json": round(parquet / json_bytes, 3),
        "columns": column_bytes(local),
        "query": query,
        "scan_query": scan,
        "goals": {"parquet_vs_gzip_json": GOAL_BYTES, "query_speedup": GOAL_QUERY},
    }
