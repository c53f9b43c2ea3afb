"""`highway query "SQL"`: DuckDB over the lake — one view per table, Hive partitioning on.

The views and the deadline are ``connectors.lake_query``'s: each table of the lane is a view named
after the table (quote names with dots or dashes: ``SELECT count(*) FROM "team_create"``), with the
Hive columns ``dt`` and ``hour``; the lane's common table is ``"events--common"``.

Every call gives up after ``lake_query_timeout_s`` (``--timeout``) with a message naming the lake and
the last error — an unreachable S3 endpoint must not make the command hang — and at once on a
permanent error (no bucket, access denied). ``--tables`` lists the lane's tables, ``--describe T``
shows one (``highway.cli.query_tables``); CSV output goes through the ``csv`` module.
"""

from __future__ import annotations

import csv
import enum
import sys
from typing import Annotated, Any

import duckdb
import orjson
import typer
from rich.markup import escape
from rich.table import Table

from connectors.lake_query import (
    QueryTimeout,
    lake_connection,
    lake_tables,
    quote,
    run_query,
    within_deadline,
    work_left_running,
)
from core.errors import HighwayError
from core.settings import Settings
from highway.cli.common import console, print_error, state

TIMEOUT_EXIT_CODE = 124  # as timeout(1)
__all__ = [
    "TIMEOUT_EXIT_CODE",
    "Output",
    "QueryTimeout",
    "lake_connection",
    "lake_tables",
    "print_rows",
    "quote",
    "run_query",
    "within_deadline",
    "work_left_running",
]


class Output(enum.StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def _cell(value: Any) -> Any:
    """A CSV cell: nested values (lists, structs) as JSON, None as empty."""
    if isinstance(value, dict | list):
        return orjson.dumps(value, default=str).decode()
    return value


def print_rows(columns: list[str], rows: list[tuple[Any, ...]], output: Output, limit: int) -> None:
    if output is Output.json:
        for row in rows:
            typer.echo(orjson.dumps(dict(zip(columns, row, strict=True)), default=str).decode())
    elif output is Output.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_cell(value) for value in row] for row in rows)
        sys.stdout.flush()
    else:
        table = Table(*columns)
        for row in rows[:limit]:
            table.add_row(*("" if value is None else str(value) for value in row))
        from rich.console import Console

        Console().print(table)
        if len(rows) > limit:
            console.print(f"({len(rows)} rows, first {limit} shown)")


def query(
    ctx: typer.Context,
    sql: Annotated[str | None, typer.Argument(help="SQL over the lake; each event table is a view")] = None,
    lane: Annotated[str | None, typer.Option(help="lane whose tables to expose (default: the first)")] = None,
    output: Annotated[Output, typer.Option("--output", "-o", help="table, csv or json")] = Output.table,
    limit: Annotated[int, typer.Option(help="rows printed at most (table output)")] = 200,
    timeout: Annotated[
        float | None, typer.Option(help="give up after this many seconds (default lake_query_timeout_s)")
    ] = None,
    tables: Annotated[bool, typer.Option("--tables", help="list the lane's tables")] = False,
    describe: Annotated[
        str | None,
        typer.Option("--describe", metavar="TABLE", help="columns, types, rows and files of a table"),
    ] = None,
) -> None:
    """Run SQL with DuckDB over the Parquet lake (local or S3); or list (--tables) or describe tables.

    Exits 1 when the query fails and 124 when the lake did not answer within the deadline.
    """
    settings = state(ctx).settings()
    if sql is None and not tables and describe is None:
        raise typer.BadParameter("give SQL, --tables or --describe TABLE")
    try:
        _answer(settings, sql, lane, timeout, tables, describe, output, limit)
    except QueryTimeout as exc:
        print_error(exc)
        raise typer.Exit(TIMEOUT_EXIT_CODE) from exc
    except (duckdb.Error, HighwayError, OSError) as exc:
        console.print(f"[red]query failed:[/red] {escape(str(exc))}", soft_wrap=True, highlight=False)
        raise typer.Exit(1) from exc


def _answer(
    settings: Settings,
    sql: str | None,
    lane: str | None,
    timeout: float | None,
    tables: bool,
    describe: str | None,
    output: Output,
    limit: int,
) -> None:
    from highway.cli.query_tables import describe_table, list_tables, print_description

    if describe is not None:
        description = within_deadline(
            settings, lambda store, track: describe_table(settings, store, track, lane, describe), timeout
        )
        print_description(description, output)
        return
    if tables:
        listing = within_deadline(
            settings, lambda store, _: list_tables(settings, store, lane or settings.lanes[0]), timeout
        )
        print_rows(*listing, output, limit)
        return
    assert sql is not None
    print_rows(*run_query(settings, sql, lane, timeout), output, limit)


def register(app: typer.Typer) -> None:
    app.command("query")(query)
