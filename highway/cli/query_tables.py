"""``highway query --tables`` and ``--describe TABLE``: what the lake holds, without writing SQL.

Iceberg (``lake_format = "iceberg"``): the catalog's tables of the lane, each with its current
snapshot's rows, data files, bytes and partitions; a description adds the snapshot, the offset map
and the Iceberg schema's columns with the property each holds (``connectors.iceberg_inspect``). The
reads go through the query's store, so an unreachable endpoint is retried until the deadline.

Parquet: the list comes from one listing of the lane (files, bytes, ``dt``/``hour`` partitions per
table); a description adds the columns and types as a query sees them (DuckDB's ``DESCRIBE`` of the
table's view) and the row count from the Parquet footers (no data is read).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import duckdb
import orjson
import pyarrow.dataset as ds
import typer
from rich.console import Console
from rich.table import Table

from connectors.iceberg_catalog import LakeTables
from connectors.iceberg_inspect import TABLE_COLUMNS as ICEBERG_TABLE_COLUMNS
from connectors.iceberg_inspect import describe, table_stats
from connectors.lake_fs import LakeStore
from connectors.lake_inventory import table_files
from core.errors import TerminalError
from core.settings import Settings

TABLE_COLUMNS = ["table", "files", "bytes", "partitions", "first_partition", "last_partition"]


def list_tables(settings: Settings, store: LakeStore, lane: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    if settings.lake_format == "iceberg":
        return ICEBERG_TABLE_COLUMNS, iceberg_rows(settings, store, lane)
    return TABLE_COLUMNS, [files.row() for _, files in sorted(table_files(store, lane).items())]


def iceberg_rows(settings: Settings, store: LakeStore, lane: str) -> list[tuple[Any, ...]]:
    tables = LakeTables(settings)
    rows = []
    for name in store.retrying(f"list {lane}/", lambda: tables.names(lane)):
        found = store.retrying(f"read {lane}/{name}", _stats_of(tables, lane, name))
        if found is not None:  # dropped since the listing
            rows.append(found)
    return rows


def _stats_of(tables: LakeTables, lane: str, name: str) -> Callable[[], tuple[Any, ...] | None]:
    def stats() -> tuple[Any, ...] | None:
        table = tables.load(lane, name)
        return None if table is None else table_stats(name, table).row()

    return stats


def _absent(settings: Settings, lane: str, table: str) -> TerminalError:
    return TerminalError(f"no table {table!r} in lane {lane!r} of {settings.lake_uri} (see --tables)")


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
    if settings.lake_format == "iceberg":
        return describe_iceberg_table(settings, store, lane, table)
    files = table_files(store, lane).get(table)
    if files is None:
        raise _absent(settings, lane, table)
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


def describe_iceberg_table(settings: Settings, store: LakeStore, lane: str, table: str) -> dict[str, Any]:
    tables = LakeTables(settings)

    def read() -> dict[str, Any] | None:
        found = tables.load(lane, table)
        return None if found is None else describe(lane, table, found)

    description = store.retrying(f"read {lane}/{table}", read)
    if description is None:
        raise _absent(settings, lane, table)
    return description


def print_description(description: dict[str, Any], output: Any) -> None:
    """JSON: one object. CSV: the columns (name,type). Table: the summary, then the columns."""
    from highway.cli.query import Output, print_rows

    # Iceberg's columns also say which event property a property column holds.
    headers = ["name", "type", "property"] if description.get("format") == "iceberg" else ["name", "type"]
    columns = [tuple(column.get(header) for header in headers) for column in description["columns"]]
    if output is Output.json:
        typer.echo(orjson.dumps(description).decode())
        return
    if output is Output.csv:
        print_rows(headers, columns, output, len(columns))
        return
    summary = Table("property", "value", title=f"{description['lane']}.{description['table']}")
    for key, value in description.items():
        if key == "columns":
            continue
        if isinstance(value, int) and not key.endswith("_id"):
            summary.add_row(key, f"{value:,}")
        elif isinstance(value, dict):
            summary.add_row(key, orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode())
        else:
            summary.add_row(key, "" if value is None else str(value))
    out = Console(file=sys.stdout)
    out.print(summary)
    columns_table = Table(*("column" if header == "name" else header for header in headers))
    for row in columns:
        columns_table.add_row(*("" if value is None else str(value) for value in row))
    out.print(columns_table)
