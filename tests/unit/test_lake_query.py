"""`highway query` and the lake store on a ``file://`` lake (no broker, no S3 server needed)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from connectors.lake_fs import LakeStore
from core.lake.encode import build_table, parquet_bytes
from core.lake.flush import plan_files
from core.lake.layout import schema_key
from core.lake.records import decode
from core.lake.schema import TableSchema
from core.settings import Settings
from highway.cli.query import lake_connection, run_query

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
        store.put(plan.key, parquet_bytes(build_table(plan.rows, schema)))
    store.put(schema_key("lane1", "wallet_topup"), schema.to_bytes("wallet_topup"))


@pytest.fixture
def lake(tmp_path: Path) -> Settings:
    settings = Settings(lake_uri=f"file://{tmp_path}/lake", lanes=["lane1"], lake_format="parquet")
    store = LakeStore(settings)
    schema = TableSchema()
    write_flush(store, schema, 0, [{"amount": 1}, {"amount": 2}])
    write_flush(store, schema, 2, [{"amount": 2.5, "note": "hi"}])  # widened + new column
    return settings


def test_store_round_trip_and_listing(lake: Settings) -> None:
    store = LakeStore(lake)
    keys = store.list_keys("lane1/")
    assert sum(key.endswith(".parquet") for key in keys) == 2
    assert store.get("lane1/missing.json") is None
    store.delete("lane1/missing.json")  # deleting what is not there is fine
    table = store.table_dataset("lane1", "wallet_topup").to_table()
    assert sorted(table.column("p_amount").to_pylist()) == [1.0, 2.0, 2.5]


def test_query_sees_one_view_per_table_with_hive_columns(lake: Settings) -> None:
    columns, rows = run_query(
        lake, "SELECT count(*), sum(p_amount), min(dt), min(hour), count(p_note) FROM wallet_topup"
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
