"""What the router emits for real-world events is read by the lake and realtime without a loss.

Numeric user ids arrive downstream as strings; nested properties land in the lake as the JSON text
of the value, in a string column; restamped events carry the router's clock.
"""

from __future__ import annotations

import io

import orjson
import pyarrow.parquet as pq

from core.lake.encode import build_table, parquet_bytes
from core.lake.layout import partition_for_ms
from core.lake.records import decode, partition_value
from core.lake.schema import DOUBLE, INT, STRING, TableSchema
from core.realtime.events import parse
from core.realtime.ids import user_key
from tests.unit.test_routing_classify import NOW_MS, classifier, event, records

LINEUP = [{"player_id": f"p{i}", "captain": i == 0, "points": [1, 2.5]} for i in range(11)]


def routed_batch() -> list[bytes]:
    values = [
        event(user_id=123456789, properties={"lineup": LINEUP, "fee": 49}),
        event(properties={"meta": {"source": {"app": "x"}}, "fee": 10.5}),
        {k: v for k, v in event(user_id=7).items() if k != "server_ts"},
        event(server_ts=NOW_MS + 24 * 3600_000, properties={"fee": "free"}),
    ]
    out = classifier(router_timestamp_policy="restamp").classify(
        records([orjson.dumps(v) for v in values]), NOW_MS
    )
    assert out.dead == []
    assert [r.key for r in out.routed] == [b"123456789", b"u42", b"7", b"u42"]
    return [r.value for r in out.routed] + [p.value for p in out.projections]


def test_lake_stores_nested_values_as_json_text_and_ids_as_strings() -> None:
    values = routed_batch()[:4]
    rows = [decode(0, offset, NOW_MS, value) for offset, value in enumerate(values)]
    schema = TableSchema()
    schema.observe(row.properties for row in rows)
    assert schema.columns == {
        "p_lineup": STRING,
        "p_fee": INT,
        "p_fee__double": DOUBLE,
        "p_fee__string": STRING,
        "p_meta": STRING,
        "p_contest_id": INT,
    }
    table = pq.read_table(io.BytesIO(parquet_bytes(build_table(rows, schema))))
    assert table.column("user_id").to_pylist() == ["123456789", "u42", "7", "u42"]
    lineup = table.column("p_lineup").to_pylist()[0]
    assert orjson.loads(lineup) == LINEUP
    assert table.column("p_meta").to_pylist()[1] == '{"source":{"app":"x"}}'
    assert table.column("_raw").to_pylist() == [None] * 4
    assert [partition_value(row, "server") for row in rows] == [partition_for_ms(NOW_MS - 100)] * 2 + [
        partition_for_ms(NOW_MS)
    ] * 2


def test_realtime_reads_the_projections_of_normalised_events() -> None:
    projections = routed_batch()[4:]
    parsed, bad = parse(enumerate(projections), ["platform", "event_name"])
    assert bad == 0
    assert [p.user for p in parsed] == [
        user_key("123456789"),
        user_key("u42"),
        user_key("7"),
        user_key("u42"),
    ]
    assert parsed[0].user == 123456789  # the same user as the string id "123456789"
    assert [p.ts_ms for p in parsed] == [NOW_MS - 100, NOW_MS - 100, NOW_MS, NOW_MS]
