"""The lake inventory of a Parquet lake (connectors.lake_inventory), as the console's catalogue and
``highway query --describe`` see it: columns are the stored schema's plus ``dt``/``hour``."""

from __future__ import annotations

from pathlib import Path

import orjson

from connectors.lake_fs import LakeStore
from connectors.lake_inventory import lake_tables
from core.lake.encode import build_table, parquet_bytes
from core.lake.flush import plan_files
from core.lake.layout import schema_key
from core.lake.records import decode
from core.lake.schema import TableSchema
from core.settings import Settings
from highway.cli.query_tables import describe_table

TS = 1_790_000_000_000  # 2026-09-21T14:13:20Z


def test_parquet_tables_list_files_partitions_and_the_columns_a_query_sees(tmp_path: Path) -> None:
    settings = Settings(lake_uri=f"file://{tmp_path}/lake", lanes=["lane1"], lake_format="parquet")
    store = LakeStore(settings)
    schema = TableSchema()
    for first, props in ((0, [{"amount": 1}]), (1, [{"amount": 2.5, "note": "hi"}])):
        rows = [
            decode(0, first + i, TS, orjson.dumps({"event_id": f"e{i}", "server_ts": TS, "properties": p}))
            for i, p in enumerate(props)
        ]
        schema.observe(row.properties for row in rows)
        for plan in plan_files("lane1", "wallet_topup", rows, "server"):
            store.put(plan.key, parquet_bytes(build_table([rows[i] for i in plan.positions], schema)))
        store.put(schema_key("lane1", "wallet_topup"), schema.to_bytes("wallet_topup"))

    (table,) = lake_tables(settings, store, "lane1").values()
    assert (table.name, table.files, table.rows) == ("wallet_topup", 2, None)
    assert table.first_partition == table.last_partition == "dt=2026-09-21/hour=14"
    owners = {column["name"]: column.get("property") for column in table.columns}
    assert owners["p_amount"] == "amount"
    assert owners["p_amount__double"] == "amount"
    assert owners["p_note"] == "note"
    assert owners["user_id"] is None
    described = describe_table(settings, store, lambda _: None, "lane1", "wallet_topup")
    assert [c["name"] for c in table.columns] == [c["name"] for c in described["columns"]]
