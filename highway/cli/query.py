"""`highway query "SQL"`: DuckDB over the lake — one view per event table, Hive partitioning on.

Each table of the lane (``<lane>/<table>/dt=…/hour=…/*.parquet``) is a view named after the table
(quote names with dots or dashes: ``SELECT count(*) FROM "team_create"``), with the Hive columns
``dt`` and ``hour``. A ``file://`` lake is read by DuckDB directly (``union_by_name`` so evolved
schemas line up). An ``s3://`` lake is read by DuckDB's httpfs extension when it can be loaded; on a
machine that cannot download extensions, through pyarrow datasets registered in DuckDB, read with
each table's current schema (same result, same SQL).

Every call gives up after ``lake_query_timeout_s`` (``--timeout``) with a message naming the lake and
the last error — an unreachable S3 endpoint must not make the command hang — and at once on a
permanent error (no bucket, access denied). ``--tables`` lists the lane's tables, ``--describe T``
shows one (``highway.cli.query_tables``); CSV output goes through the ``csv`` module.
"""

from __future__ import annotations

import csv
import enum
import sys
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import duckdb
import orjson
import typer
from rich.markup import escape
from rich.table import Table

from connectors.iceberg_lake import IcebergLake
from connectors.lake_fs import LakeStore
from core.errors import HighwayError
from core.lake.pruning import partition_filter
from core.settings import Settings
from highway.cli.common import console, print_error, state

T = TypeVar("T")
TIMEOUT_EXIT_CODE = 124  # as timeout(1)
_left_running: list[threading.Thread] = []


class QueryTimeout(HighwayError):
    """The lake did not answer within the query deadline."""


class Output(enum.StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def lake_tables(store: LakeStore, lane: str) -> list[str]:
    """Tables of a lane: directories holding at least one Parquet file."""
    tables = set()
    for key in store.list_keys(f"{lane}/"):
        parts = key.split("/")
        if len(parts) > 2 and key.endswith(".parquet") and not parts[1].startswith("_"):
            tables.add(parts[1])
    return sorted(tables)


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _try_httpfs(connection: duckdb.DuckDBPyConnection, settings: Settings) -> bool:
    # LOAD only: INSTALL would try a download, which hangs on machines without internet access.
    # Where it is reachable, `duckdb -c "INSTALL httpfs"` once makes the native path available.
    try:
        connection.execute("LOAD httpfs")
    except duckdb.Error:
        return False
    options: dict[str, str] = {"TYPE": "s3", "REGION": settings.aws_region}
    if settings.aws_access_key_id and settings.aws_secret_access_key:
        options["KEY_ID"] = settings.aws_access_key_id.get_secret_value()
        options["SECRET"] = settings.aws_secret_access_key.get_secret_value()
    if settings.aws_s3_endpoint_url:
        scheme, _, host = settings.aws_s3_endpoint_url.partition("://")
        options.update({"ENDPOINT": host.rstrip("/"), "URL_STYLE": "path", "USE_SSL": str(scheme == "https")})
    rendered = ", ".join(f"{key} '{value}'" for key, value in options.items())
    connection.execute(f"CREATE OR REPLACE SECRET highway_lake ({rendered})")
    return True


def lake_connection(
    settings: Settings,
    lane: str | None = None,
    prefer_httpfs: bool = True,
    mentioned_in: str | None = None,
    store: LakeStore | None = None,
) -> tuple[duckdb.DuckDBPyConnection, list[str]]:
    """A DuckDB connection with one view per lake table of ``lane``; also the table names.

    With ``mentioned_in`` (the SQL), only tables whose name occurs in it are set up: a lane can
    hold hundreds of tables and each costs a listing.
    """
    lane = lane or settings.lanes[0]
    store = store or LakeStore(settings)
    if settings.lake_format == "iceberg":
        return iceberg_connection(settings, lane, mentioned_in, store)
    tables = _mentioned(lake_tables(store, lane), mentioned_in)
    connection = duckdb.connect()
    local = settings.lake_uri.startswith("file://")
    native = local or (prefer_httpfs and _try_httpfs(connection, settings))
    for table in tables:
        if native:
            glob = (store.path if local else store.url)(f"{lane}/{table}/**/*.parquet").replace("'", "''")
            connection.execute(
                f"CREATE VIEW {quote(table)} AS SELECT * FROM read_parquet('{glob}', "
                "hive_partitioning = true, union_by_name = true, hive_types_autocast = false)"
            )
        else:
            connection.register(table, store.table_dataset(lane, table))
    return connection, tables


Work = Callable[[LakeStore, Callable[[duckdb.DuckDBPyConnection], None]], T]


def within_deadline(settings: Settings, work: Work[T], timeout_s: float | None = None) -> T:
    """``work(store, track)`` on a thread, given up after the deadline with :class:`QueryTimeout`.

    The store stops retrying at the deadline and raises at once on a permanent error; ``track``
    registers a DuckDB connection so that a query still running at the deadline is interrupted.
    """
    timeout = settings.lake_query_timeout_s if timeout_s is None else timeout_s
    deadline = time.monotonic() + timeout
    store = LakeStore(settings, should_stop=lambda: time.monotonic() >= deadline, fail_on_permanent=True)
    connections: list[duckdb.DuckDBPyConnection] = []
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = work(store, connections.append)
        except BaseException as exc:
            outcome["error"] = exc

    # A daemon thread: one stuck in a socket must not keep the process alive after we give up.
    thread = threading.Thread(target=run, name="highway-query", daemon=True)
    thread.start()
    thread.join(timeout)
    error = outcome.get("error")
    # Past the deadline any error is the deadline's doing (the store gave up, a read was cut).
    if thread.is_alive() or (error is not None and time.monotonic() >= deadline):
        for connection in connections:
            connection.interrupt()
        if thread.is_alive():
            _left_running.append(thread)
        raise QueryTimeout(_timeout_message(settings, timeout, store))
    if error is not None:
        raise error
    result: T = outcome["result"]
    return result


def work_left_running() -> bool:
    """Whether a query given up at its deadline is still stuck in a read (see ``highway.cli.main``)."""
    return any(thread.is_alive() for thread in _left_running)


def _timeout_message(settings: Settings, timeout: float, store: LakeStore) -> str:
    fault = store.faults.latest()
    last = f" (last error: {fault.code} at {fault.where}: {fault.detail})" if fault else ""
    endpoint = settings.aws_s3_endpoint_url or "AWS"
    return (
        f"gave up after {timeout:g}s: the lake at {settings.lake_uri} did not answer in time{last}. "
        f"Check that the S3 endpoint ({endpoint}) is reachable, or allow longer with --timeout "
        "(HIGHWAY_LAKE_QUERY_TIMEOUT_S)."
    )


def _mentioned(tables: list[str], sql: str | None) -> list[str]:
    if sql is None:
        return tables
    text = sql.lower()
    return [table for table in tables if table.lower() in text]


def iceberg_connection(
    settings: Settings, lane: str, mentioned_in: str | None, store: LakeStore
) -> tuple[duckdb.DuckDBPyConnection, list[str]]:
    """Each Iceberg table of the lane scanned (its current snapshot) into Arrow, registered in
    DuckDB; ``dt``/``hour`` equalities of the SQL prune the scan (``core.lake.pruning``). The
    catalog and the table's files are read with the store's retries, which stop at the deadline."""
    lake = IcebergLake(settings, {})
    tables = _mentioned(store.retrying(f"list {lane}/", lambda: lake.tables.names(lane)), mentioned_in)
    row_filter = partition_filter(mentioned_in, len(tables)) if mentioned_in else None
    scan: dict[str, Any] = {"row_filter": row_filter} if row_filter else {}
    connection = duckdb.connect()
    for table in tables:
        connection.register(table, store.retrying(f"read {lane}/{table}", _reader(lake, lane, table, scan)))
    return connection, tables


def _reader(lake: IcebergLake, lane: str, table: str, scan: dict[str, Any]) -> Callable[[], Any]:
    return lambda: lake.read(lane, table, **scan)


def run_query(
    settings: Settings, sql: str, lane: str | None = None, timeout_s: float | None = None
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Columns and rows of ``sql`` over the lane's tables, within the query deadline."""

    def work(
        store: LakeStore, track: Callable[[duckdb.DuckDBPyConnection], None]
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        connection, _ = lake_connection(settings, lane, mentioned_in=sql, store=store)
        track(connection)
        try:
            result = connection.execute(sql)
            return [column[0] for column in result.description or []], result.fetchall()
        finally:
            connection.close()

    return within_deadline(settings, work, timeout_s)


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
