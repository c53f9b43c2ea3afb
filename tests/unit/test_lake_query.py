"""`highway query` and the lake store on a ``file://`` lake (no broker, no S3 server needed), and its
deadline against S3 endpoints that refuse connections or never answer."""

from __future__ import annotations

import csv
import io
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from connectors.iceberg_catalog import open_catalog
from connectors.lake_fs import LakeStore
from core.errors import TerminalError
from core.lake.encode import build_table, parquet_bytes
from core.lake.flush import plan_files
from core.lake.layout import schema_key
from core.lake.records import decode
from core.lake.schema import TableSchema
from core.settings import Settings
from highway.cli.query import TIMEOUT_EXIT_CODE, QueryTimeout, lake_connection, run_query, within_deadline

TS = 1_790_000_000_000


def write_flush(store: LakeStore, schema: TableSchema, first: int, props: list[dict[str, object]]) -> None:
    rows = [
        decode(
            0, first + i, TS, orjson.dumps({"event_id": f"e{first + i}", "server_ts": TS, "properties": p})
        )
        for i, p in enumerate(props)
    ]
    schema.observe(row.properties for row in rows)
    for plan in plan_files("lane1", "wallet_topup", rows, "server"):
        store.put(plan.key, parquet_bytes(build_table([rows[i] for i in plan.positions], schema)))
    store.put(schema_key("lane1", "wallet_topup"), schema.to_bytes("wallet_topup"))


@pytest.fixture
def lake(tmp_path: Path) -> Settings:
    settings = Settings(lake_uri=f"file://{tmp_path}/lake", lanes=["lane1"], lake_format="parquet")
    store = LakeStore(settings)
    schema = TableSchema()
    write_flush(store, schema, 0, [{"amount": 1}, {"amount": 2}])
    write_flush(store, schema, 2, [{"amount": 2.5, "note": "hi"}])  # a double sibling + new column
    return settings


def test_store_round_trip_and_listing(lake: Settings) -> None:
    store = LakeStore(lake)
    keys = store.list_keys("lane1/")
    assert sum(key.endswith(".parquet") for key in keys) == 2
    assert store.get("lane1/missing.json") is None
    store.delete("lane1/missing.json")  # deleting what is not there is fine
    table = store.table_dataset("lane1", "wallet_topup").to_table()
    assert table.column("p_amount").to_pylist() == [1, 2, None]
    assert table.column("p_amount__double").to_pylist() == [None, None, 2.5]


def test_query_sees_one_view_per_table_with_hive_columns(lake: Settings) -> None:
    columns, rows = run_query(
        lake,
        "SELECT count(*), sum(coalesce(p_amount__double, p_amount)), min(dt), min(hour), count(p_note)"
        " FROM wallet_topup",
    )
    assert len(columns) == 5
    assert rows == [(3, 5.5, "2026-09-21", "14", 1)]


def test_views_over_the_pyarrow_path_match_the_native_path(lake: Settings) -> None:
    connection, tables = lake_connection(lake)
    assert tables == ["wallet_topup"]
    native = connection.execute("SELECT sum(p_amount) FROM wallet_topup").fetchall()
    store = LakeStore(lake)
    connection.register("via_arrow", store.table_dataset("lane1", "wallet_topup"))
    assert connection.execute("SELECT sum(p_amount) FROM via_arrow").fetchall() == native


def cli(settings: Settings, *args: str) -> Any:
    from typer.testing import CliRunner

    from highway.cli import app

    env = {
        "HIGHWAY_LAKE_URI": settings.lake_uri,
        "HIGHWAY_LANES": ",".join(settings.lanes),
        "HIGHWAY_LAKE_FORMAT": settings.lake_format,
    }
    return CliRunner().invoke(app, ["query", *args], env=env)


def test_csv_output_is_real_csv(lake: Settings) -> None:
    store = LakeStore(lake)
    write_flush(store, TableSchema(), 10, [{"note": 'a, "quoted"\nline', "amount": 1}])
    sql = "SELECT event_id, p_note, p_amount FROM wallet_topup ORDER BY event_id"
    result = cli(lake, "-o", "csv", sql)
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["event_id", "p_note", "p_amount"]
    assert ["e10", 'a, "quoted"\nline', "1"] in rows
    assert ["e0", "", "1"] in rows  # NULL is an empty cell
    assert ["e2", "hi", ""] in rows  # its 2.5 is in the p_amount__double sibling
    assert len(rows) == 5


def test_tables_are_listed_and_described(lake: Settings) -> None:
    result = cli(lake, "--tables", "-o", "json")
    assert result.exit_code == 0, result.output
    listed = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [t["table"] for t in listed] == ["wallet_topup"]
    assert listed[0]["files"] == 2
    assert listed[0]["partitions"] == 1
    assert listed[0]["first_partition"] == "dt=2026-09-21/hour=14"
    result = cli(lake, "--describe", "wallet_topup", "-o", "json")
    assert result.exit_code == 0, result.output
    described = orjson.loads(result.stdout)
    assert described["rows"] == 3
    assert described["files"] == 2
    assert described["bytes"] > 0
    columns = {c["name"]: c["type"] for c in described["columns"]}
    assert (columns["p_amount"], columns["p_amount__double"]) == ("BIGINT", "DOUBLE")
    assert columns["server_ts"].startswith("TIMESTAMP")
    assert {"dt", "hour", "event_id", "p_note"} <= set(columns)
    result = cli(lake, "--describe", "wallet_topup")  # the human rendering
    assert result.exit_code == 0, result.output
    assert "p_amount" in result.stdout
    missing = cli(lake, "--describe", "nope")
    assert missing.exit_code == 1
    assert "no table 'nope'" in missing.output


@pytest.fixture(params=["refused", "silent"])
def unreachable(request: pytest.FixtureRequest) -> Iterator[str]:
    """An S3 endpoint that refuses connections, or one that accepts them and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    if request.param == "refused":
        server.close()
    else:
        server.listen(64)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


def catalog_on_unreachable_s3(tmp_path: Path, endpoint: str) -> Path:
    """A SQLite catalog holding a table whose metadata lives on the S3 endpoint — as when the
    endpoint went away after the table was written (the catalog itself answers)."""
    path = tmp_path / "catalog.db"
    settings = Settings(
        lake_uri="s3://bucket/lake",
        lanes=["lane1"],
        aws_s3_endpoint_url=endpoint,
        lake_iceberg_catalog_path=path,
    )
    open_catalog(settings).create_namespace("lane1")
    with sqlite3.connect(path) as catalog:
        catalog.execute(
            "INSERT INTO iceberg_tables (catalog_name, table_namespace, table_name, metadata_location) "
            "VALUES ('highway', 'lane1', 'wallet_topup', "
            "'s3://bucket/lake/lane1/wallet_topup/metadata/00001-0b7e.metadata.json')"
        )
    return path


@pytest.mark.parametrize("lake_format", ["parquet", "iceberg"])
def test_an_unreachable_lake_gives_up_at_the_deadline_with_a_message(
    unreachable: str, lake_format: str, tmp_path: Path
) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HIGHWAY_")}
    env.update(
        HIGHWAY_LAKE_URI="s3://bucket/lake",
        HIGHWAY_LANES="lane1",
        HIGHWAY_LAKE_FORMAT=lake_format,
        HIGHWAY_AWS_S3_ENDPOINT_URL=unreachable,
        HIGHWAY_AWS_ACCESS_KEY_ID="key",
        HIGHWAY_AWS_SECRET_ACCESS_KEY="secret",
        HIGHWAY_LAKE_QUERY_TIMEOUT_S="2",
    )
    if lake_format == "iceberg":  # parquet's tables are listed from S3, Iceberg's from the catalog
        env["HIGHWAY_LAKE_ICEBERG_CATALOG_PATH"] = str(catalog_on_unreachable_s3(tmp_path, unreachable))
    # The subprocess timeout only catches a hang (the bug); the deadline itself is 2 s.
    done = subprocess.run(
        [sys.executable, "-m", "highway.cli", "query", "SELECT count(*) FROM wallet_topup"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == TIMEOUT_EXIT_CODE, done.stderr
    assert "gave up after 2s: the lake at s3://bucket/lake did not answer" in done.stderr
    assert unreachable in done.stderr


def test_iceberg_reads_are_retried_until_the_deadline(tmp_path: Path) -> None:
    """A refused connection fails a pyiceberg read at once; the query keeps trying (the endpoint may
    come back) and gives up at the deadline naming the last error, not with that first error."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()
    settings = Settings(
        lake_uri="s3://bucket/lake",
        lanes=["lane1"],
        lake_format="iceberg",
        aws_s3_endpoint_url=endpoint,
        aws_access_key_id="key",
        aws_secret_access_key="secret",
        lake_iceberg_catalog_path=catalog_on_unreachable_s3(tmp_path, endpoint),
    )
    with pytest.raises(QueryTimeout, match=r"last error: OSError at s3://bucket/lake/lane1/wallet_topup"):
        run_query(settings, "SELECT count(*) FROM wallet_topup", timeout_s=10)


def test_a_permanent_error_fails_the_query_at_once(tmp_path: Path) -> None:
    settings = Settings(lake_uri=f"file://{tmp_path}/lake", lanes=["lane1"])

    def denied(store: LakeStore, track: Any) -> None:
        raise TerminalError("lake put: AccessDenied at s3://b/k: access denied")

    with pytest.raises(TerminalError, match="AccessDenied"):
        within_deadline(settings, denied, timeout_s=60)
