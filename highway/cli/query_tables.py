"""``highway query --tables`` and ``--describe TABLE``: what the lake holds, without writing SQL.

The list comes from one listing of the lane (files, bytes, ``dt``/``hour`` partitions per table);
a description adds the columns and types as a query sees them (DuckDB's ``DESCRIBE`` of the table's
view) and the row count from the Parquet footers (no data is read).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb
import orjson
import pyarrow.dataset as ds
import typer
from rich.console import Console
from rich.table import Table

from connectors.lake_fs import LakeStore
from core.errors import TerminalError
from core.settings import Settings

TABLE_COLUMNS = ["table", "files", "bytes", "partitions", "first_partition", "last_partition"]


@dataclass
class TableFiles:
    """The Parquet files of one table: key → size, and their ``dt=…/hour=…`` partitions."""

    name: str
    sizes: dict[str, int] = field(default_factory=dict)
    partitions: dict[str, int] = field(default_factory=dict)  # "dt=…/hour=…" → files

    def add(self, key: str, size: int) -> None:
        self.sizes[key] = size
        partition = "/".join(part for part in key.split("/")[2:-1] if part.startswith(("dt=", "hour=")))
        self.partitions[partition] = self.partitions.get(partition, 0) + 1

    def row(self) -> tuple[Any, ...]:
        ordered = sorted(self.partitions)
        return (self.name, len(self.sizes), sum(self.sizes.values()), len(ordered), ordered[0], ordered[-1])


def table_files(store: LakeStore, lane: str) -> dict[str, TableFiles]:
    """Every table of the lane with its Parquet files (one listing of the lane)."""
    tables: dict[str, TableFiles] = {}
    for key, size in store.sizes(f"{lane}/").items():
        parts = key.split("/")
        if len(parts) > 2 and key.endswith(".parquet") and not parts[1].startswith("_"):
            tables.setdefault(parts[1], TableFiles(parts[1])).add(key, size)
    return tables


def list_tables(store: LakeStore, lane: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    return TABLE_COLUMNS, [files.row() for _, files in sorted(table_files(store, lane).items())]


def describe_table(
    settings: Settings,
    store: LakeStore,
    track: Callable[[duckdb.DuckDBPyConnection], None],
    lane: str | None,
    table: str,
) -> dict[str, Any]:
    """Columns and types, row count and files of ``table`` (a :class:`TerminalError` if absent)."""
    from highway.cli.query import lake_connection, quote

    lane = lane or settings.lanes[0]
    files = table_files(store, lane).get(table)
    if files is None:
        raise TerminalError(f"no table {table!r} in lane {lane!r} of {settings.lake_uri} (see --tables)")
    connection, _ = lake_connection(settings, lane, mentioned_in=quote(table), store=store)
    track(connection)
    try:
        described = connection.execute(f"DESCRIBE SELECT * FROM {quote(table)}").fetchall()
    finally:
        connection.close()
    paths = [store.path(key) for key in sorted(files.sizes)]
    rows = ds.dataset(paths, filesystem=store.fs, format="parquet").count_rows()
    name, count, size, partitions, first, last = files.row()
    return {
        "table": name,
        "lane": lane,
        "location": store.url(f"{lane}/{table}/"),
        "rows": rows,
        "files": count,
        "bytes": size,
        "partitions": partitions,
        "first_partition": first,
        "last_partition": last,
        "max_files_per_partition": max(files.partitions.values()),
        "columns": [{"name": column[0], "type": column[1]} for column in described],
    }


def print_description(description: dict[str, Any], output: Any) -> None:
    """JSON: one object. CSV: the columns (name,type). Table: the summary, then the columns."""
    from highway.cli.query import Output, print_rows

    columns = [(column["name"], column["type"]) for column in description["columns"]]
    if output is Output.json:
        typer.echo(orjson.dumps(description).decode())
        return
    if output is Output.csv:
        print_rows(["name", "type"], columns, output, len(columns))
        return
    summary = Table("property", "value", title=f"{description['lane']}.{description['table']}")
    for key, value in description.items():
        if key != "columns":
            summary.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    out = Console(file=sys.stdout)
    out.print(summary)
    columns_table = Table("column", "type")
    for name, kind in columns:
        columns_table.add_row(name, kind)
    out.print(columns_table)
