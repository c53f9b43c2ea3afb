"""DuckDB over the lake, for both formats: one view per table of a lane, within a deadline.

Each table of the lane (``<lane>/<table>/dt=…/hour=…/*.parquet``) is a view named after the table
(quote names with dots or dashes: ``SELECT count(*) FROM "team_create"``), with the Hive columns
``dt`` and ``hour``. A ``file://`` lake is read by DuckDB directly (``union_by_name`` so evolved
schemas line up). An ``s3://`` lake is read by DuckDB's httpfs extension when it can be loaded; on a
machine that cannot download extensions, through pyarrow datasets registered in DuckDB, read with
each table's current schema (same result, same SQL). An Iceberg lake (``lake_format = "iceberg"``)
registers each table's current snapshot, scanned into Arrow.

Every call gives up after ``lake_query_timeout_s`` with :class:`QueryTimeout`, a message naming the
lake and the last error — an unreachable S3 endpoint must not make a caller hang — and at once on a
permanent error (no bucket, access denied). Used by ``highway query`` and by the analytics queries
(``connectors.analytics_lake``), from the CLI and the worker's HTTP API.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import duckdb

from connectors.iceberg_lake import IcebergLake
from connectors.lake_fs import LakeStore
from core.errors import HighwayError
from core.lake.pruning import partition_filter
from core.settings import Settings

T = TypeVar("T")
_left_running: list[threading.Thread] = []


class QueryTimeout(HighwayError):
    """The lake did not answer within the query deadline."""


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
    iceberg_scan: Mapping[str, Any] | None = None,
) -> tuple[duckdb.DuckDBPyConnection, list[str]]:
    """A DuckDB connection with one view per lake table of ``lane``; also the table names.

    With ``mentioned_in`` (the SQL), only tables whose name occurs in it are set up: a lane can
    hold hundreds of tables and each costs a listing. ``iceberg_scan`` (``selected_fields``,
    ``row_filter``) replaces the scan derived from the SQL for Iceberg tables.
    """
    lane = lane or settings.lanes[0]
    store = store or LakeStore(settings)
    if settings.lake_format == "iceberg":
        return iceberg_connection(settings, lane, mentioned_in, store, iceberg_scan)
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
    settings: Settings,
    lane: str,
    mentioned_in: str | None,
    store: LakeStore,
    iceberg_scan: Mapping[str, Any] | None = None,
) -> tuple[duckdb.DuckDBPyConnection, list[str]]:
    """Each Iceberg table of the lane scanned (its current snapshot) into Arrow, registered in
    DuckDB; ``dt``/``hour`` equalities of the SQL prune the scan (``core.lake.pruning``). The
    catalog and the table's files are read with the store's retries, which stop at the deadline."""
    lake = IcebergLake(settings, {})
    tables = _mentioned(store.retrying(f"list {lane}/", lambda: lake.tables.names(lane)), mentioned_in)
    row_filter = partition_filter(mentioned_in, len(tables)) if mentioned_in else None
    scan: dict[str, Any] = {"row_filter": row_filter} if row_filter else {}
    if iceberg_scan is not None:
        scan = dict(iceberg_scan)
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
