"""Lake tables without storage: partitioning, schema inference and typed siblings, Avro override,
Arrow/Parquet encoding and the flush policy."""

from __future__ import annotations

import gc
import io
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.lake.encode import TIMESTAMP_TYPE, build_table, parquet_bytes
from core.lake.flush import FlushPolicy, PartitionBuffer, collector_skipping_buffers
from core.lake.layout import (
    PartitionValue,
    data_file_key,
    parse_data_file,
    partition_for_ms,
    table_name,
)
from core.lake.records import LakeRow, RawRecord, decode, partition_value
from core.lake.schema import DOUBLE, INT, STRING, TableSchema, schema_from_avro
from streams.lake_config import load_overrides, topic_regex

TS = int(datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC).timestamp() * 1000)


def row(offset: int, props: dict[str, object], **envelope: object) -> LakeRow:
    event = {"event_name": "contest_join", "event_id": f"id-{offset}", "user_id": "u1", "server_ts": TS}
    event.update(envelope)
    event["properties"] = props
    return decode(0, offset, TS, orjson.dumps(event))


def raw(offset: int, props: dict[str, object]) -> RawRecord:
    return RawRecord(0, offset, TS, row(offset, props).raw)


def test_partition_is_the_utc_hour_of_server_or_client_time() -> None:
    assert partition_for_ms(TS) == PartitionValue("2026-03-01", "23")
    late_client = row(0, {}, client_ts=TS + 1000)
    assert partition_value(late_client, "server") == PartitionValue("2026-03-01", "23")
    assert partition_value(late_client, "client") == PartitionValue("2026-03-02", "00")
    no_times = decode(0, 1, TS + 3_600_000, b'{"event_id": "x"}')
    assert partition_value(no_times, "server") == PartitionValue("2026-03-02", "00")


def test_keys_and_table_names() -> None:
    key = data_file_key("default", "team_create", 3, 42, PartitionValue("2026-03-01", "07"))
    assert key == "default/team_create/dt=2026-03-01/hour=07/part-00003-00000000000000000042.parquet"
    parsed = parse_data_file(key)
    assert parsed is not None
    assert (parsed.partition, parsed.first_offset) == (3, 42)
    assert table_name("default.event.team_create", "{lane}.event.{name}", "default") == "team_create"
    assert table_name("other.event.team_create", "{lane}.event.{name}", "default") is None


def test_column_types_are_fixed_and_other_values_get_typed_siblings_never_fatal() -> None:
    schema = TableSchema()
    assert schema.observe([{"amount": 10, "code": 1}], "batch-1")
    assert schema.columns == {"p_amount": INT, "p_code": INT}
    assert schema.observe([{"amount": 2.5, "code": "A7", "new": True}], "batch-2")
    assert schema.columns == {
        "p_amount": INT,
        "p_code": INT,
        "p_amount__double": DOUBLE,
        "p_code__string": STRING,
        "p_new": "bool",
    }
    assert [(c["column"], c["sibling_of"], c["at"]) for c in schema.changes] == [
        ("p_amount__double", "p_amount", "batch-2"),
        ("p_code__string", "p_code", "batch-2"),
    ]
    assert not schema.observe([{"amount": 3, "code": "B8"}], "batch-3")  # both have a column
    again = TableSchema.from_bytes(schema.to_bytes("t"))
    assert (again.columns, again.properties) == (schema.columns, schema.properties)


def test_every_row_survives_type_conflicts_inside_one_batch() -> None:
    rows = [row(0, {"v": 1}), row(1, {"v": 1.5}), row(2, {"v": "x"}), row(3, {"v": [1, {"a": 2}]})]
    schema = TableSchema()
    schema.observe(r.properties for r in rows)
    table = pq.read_table(io.BytesIO(parquet_bytes(build_table(rows, schema))))
    assert table.num_rows == 4
    assert table.column("p_v").to_pylist() == [1, None, None, None]
    assert table.column("p_v__double").to_pylist() == [None, 1.5, None, None]
    assert table.column("p_v__string").to_pylist() == [None, None, "x", '[1,{"a":2}]']
    assert len(schema.changes) == 2


def test_envelope_is_typed_and_properties_flattened() -> None:
    rows = [row(7, {"amount": 5, "ok": True}, client_ts=TS - 5), decode(0, 8, TS, b"not json")]
    schema = TableSchema()
    schema.observe(r.properties for r in rows)
    table = pq.read_table(io.BytesIO(parquet_bytes(build_table(rows, schema), "snappy")))
    assert table.schema.field("server_ts").type == TIMESTAMP_TYPE
    assert table.schema.field("p_amount").type == pa.int64()
    first, second = table.to_pylist()
    assert first["server_ts"] == datetime.fromtimestamp(TS / 1000, tz=UTC)
    assert (first["event_id"], first["_kafka_offset"], first["p_ok"], first["_raw"]) == (
        "id-7",
        7,
        True,
        None,
    )
    assert second["_raw"] == "not json"
    assert second["event_id"] is None


def test_avro_override_fixes_declared_columns_and_still_infers_the_rest(tmp_path: Path) -> None:
    avsc = {
        "type": "record",
        "name": "contest_join",
        "fields": [
            {"name": "amount", "type": ["null", "double"]},
            {"name": "contest_id", "type": "string"},
        ],
    }
    (tmp_path / "contest_join.avsc").write_text(orjson.dumps(avsc).decode())
    schema = load_overrides(tmp_path)["contest_join"]
    assert schema.columns == {"p_amount": DOUBLE, "p_contest_id": STRING}
    rows = [row(0, {"amount": 3, "contest_id": 99, "extra": 1}), row(1, {"amount": "bad"})]
    schema.observe(r.properties for r in rows)
    assert schema.columns == {
        "p_amount": DOUBLE,
        "p_contest_id": STRING,
        "p_extra": INT,
        "p_amount__string": STRING,
    }
    table = build_table(rows, schema)
    assert table.column("p_amount").to_pylist() == [3.0, None]  # an int in a double column is cast
    assert table.column("p_amount__string").to_pylist() == [None, "bad"]  # kept, not nulled
    assert table.column("p_contest_id").to_pylist() == ["99", None]
    assert (
        schema_from_avro({"fields": [{"name": "properties", "type": avsc}]}).columns
        == schema_from_avro(avsc).columns
    )


def test_shipped_override_schemas_parse() -> None:
    assert load_overrides()  # schemas/events/ ships at least one example


def test_flush_policy_rows_bytes_age_and_cap() -> None:
    policy = FlushPolicy(max_rows=3, max_bytes=10_000, max_age_s=5.0, max_buffered_bytes=2_000)
    small, big = PartitionBuffer("t", 0), PartitionBuffer("t", 1)
    assert policy.reason(small, 0.0) is None
    small.add(raw(0, {}), now=100.0)
    assert policy.reason(small, 101.0) is None
    assert policy.reason(small, 105.0) == "age"
    for offset in range(1, 3):
        small.add(raw(offset, {}), now=101.0)
    assert policy.reason(small, 101.0) == "rows"
    for offset in range(2):
        big.add(raw(offset, {"pad": "x" * 900}), now=0.0)
    assert policy.over_cap([small, big]) == [big]
    with pytest.raises(ValueError, match="offset"):
        big.add(raw(0, {}), now=0.0)
    assert len(big.take()) == 2
    assert big.size_bytes == 0


def test_a_flush_runs_with_the_buffers_out_of_the_collectors_sight_and_returns_them() -> None:
    buffer = PartitionBuffer("t", 0)
    buffer.add(raw(0, {}), now=0.0)
    assert gc.is_tracked(buffer.rows[0])  # a NamedTuple: the collector walks every buffered record
    assert gc.get_freeze_count() == 0
    seen: list[int] = []

    def failed_flush() -> None:
        with collector_skipping_buffers():
            seen.append(gc.get_freeze_count())
            raise RuntimeError("a failed flush")

    with pytest.raises(RuntimeError):
        failed_flush()
    assert seen[0] > 0
    assert gc.get_freeze_count() == 0


def test_topic_regex_matches_each_lane() -> None:
    from core.settings import Settings

    settings = Settings(lanes=["a-b", "c"])
    regex = topic_regex(settings)
    assert regex.startswith("^(")
    assert "a-b" in regex
