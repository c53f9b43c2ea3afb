"""`highway query "SQL"`: DuckDB over the lake — one view per event table, Hive partitioning on.

Each table of the lane (``<lane>/<table>/dt=…/hour=…/*.parquet``) is a view named after the table
(quote names with dots or dashes: ``SELECT count(*) FROM "team_create"``), with the Hive columns
``dt`` and ``hour``. A ``file://`` lake is read by DuckDB directly (``union_by_name`` so evolved
schemas line up). An ``s3://`` lake is read by DuckDB's httpfs extension when it can be loaded; on a
machine that cannot download extensions, through pyarrow datasets registered in DuckDB, read with
each table's current schema (same result, same SQL).
"""

from __future__ import annotations

import enum
from typing import Annotated, Any

import duckdb
import typer
from rich.table import Table

from connectors.iceberg_lake import IcebergLake
from connectors.lake_fs import LakeStore
from core.lake.pruning import partition_filter
from core.settings import Settings
from highway.cli.common import console, state


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


def _quote(name: str) -> str:
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
    settings: Settings, lane: str | None = None, prefer_httpfs: bool = True, mentioned_in: str | None = None
) -> tuple[duckdb.DuckDBPyConnection, list[str]]:
    """A DuckDB connection with one view per lake table of ``lane``; also the table names.

    With ``mentioned_in`` (the SQL), only tables whose name occurs in it are set up: a lane can
    hold hundreds of tables and each costs a listing.
    """
    lane = lane or settings.lanes[0]
    if settings.lake_format == "iceberg":
        return iceberg_connection(settings, lane, mentioned_in)
    store = LakeStore(settings)
    tables = _mentioned(lake_tables(store, lane), mentioned_in)
    connection = duckdb.connect()
    local = settings.lake_uri.startswith("file://")
    native = local or (prefer_httpfs and _try_httpfs(connection, settings))
    for table in tables:
        if native:
            glob = (store.path if local else store.url)(f"{lane}/{table}/**/*.parquet").replace("'", "''")
            connection.execute(
                f"CREATE VIEW {_quote(table)} AS SELECT * FROM read_parquet('{glob}', "
                "hive_partitioning = true, union_by_name = true, hive_types_autocast = false)"
            )
        else:
            connection.register(table, store.table_dataset(lane, table))
    return connection, tables


def _mentioned(tables: list[str], sql: str | None) -> list[str]:
    if sql is None:
        return tables
    text = sql.lower()
    return [table for table in tables if table.lower() in text]


def iceberg_connection(
    settings: Settings, lane: str, mentioned_in: str | None
) -> tuple[duckdb.DuckDBPyConnection, list[str]]:
    """Each Iceberg table of the lane scanned (its current snapshot) into Arrow, registered in
    DuckDB; ``dt``/``hour`` equalities of the SQL prune the scan (``core.lake.pruning``)."""
    lake = IcebergLake(settings, {})
    tables = _mentioned(lake.tables.names(lane), mentioned_in)
    row_filter = partition_filter(mentioned_in, len(tables)) if mentioned_in else None
    connection = duckdb.connect()
    for table in tables:
        data = lake.read(lane, table, row_filter=row_filter) if row_filter else lake.read(lane, table)
        connection.register(table, data)
    return connection, tables


def run_query(
    settings: Settings, sql: str, lane: str | None = None
) -> tuple[list[str], list[tuple[Any, ...]]]:
    connection, _ = lake_connection(settings, lane, mentioned_in=sql)
    try:
        result = connection.execute(sql)
        columns = [column[0] for column in result.description or []]
        return columns, result.fetchall()
    finally:
        connection.close()


def query(
    ctx: typer.Context,
    sql: Annotated[str, typer.Argument(help="SQL over the lake; each event table is a view")],
    lane: Annotated[str | None, typer.Option(help="lane whose tables to expose (default: the first)")] = None,
    output: Annotated[Output, typer.Option("--output", "-o", help="table, csv or json")] = Output.table,
    limit: Annotated[int, typer.Option(help="rows printed at most (table output)")] = 200,
) -> None:
    """Run SQL with DuckDB over the Parquet lake (local or S3)."""
    import orjson

    settings = state(ctx).settings()
    try:
        columns, rows = run_query(settings, sql, lane)
    except duckdb.Error as exc:
        console.print(f"[red]query failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    if output is Output.json:
        for row in rows:
            typer.echo(orjson.dumps(dict(zip(columns, row, strict=True)), default=str).decode())
    elif output is Output.csv:
        typer.echo(",".join(columns))
        for row in rows:
            typer.echo(",".join("" if value is None else str(value) for value in row))
    else:
        table = Table(*columns)
        for row in rows[:limit]:
            table.add_row(*("" if value is None else str(value) for value in row))
        from rich.console import Console

        Console().print(table)
        if len(rows) > limit:
            console.print(f"({len(rows)} rows, first {limit} shown)")


def register(app: typer.Typer) -> None:
    app.command("query")(query)
