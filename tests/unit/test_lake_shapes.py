"""Real-world event shapes in the lake, without storage: types that change, colliding names, caps,
records that cannot be decoded or encoded, Avro-wire input and what buffering really holds."""

from __future__ import annotations

import io
import re
import tracemalloc
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END

from connectors.glue import glue_table_name
from connectors.lake_fs import LakeStore
from connectors.wire import codec_for
from core.envelope import STRING_FIELDS
from core.errors import SchemaError, TransientError
from core.lake.commit import LakeCommitter
from core.lake.encode import arrow_schema, build_table, parquet_bytes
from core.lake.flush import PartitionBuffer
from core.lake.layout import table_name
from core.lake.records import LakeRow, RawRecord, decode, decode_record, decode_records
from core.lake.schema import DOUBLE, INT, STRING, ShapeLimits, TableSchema, schema_from_avro
from core.routing.naming import topic_name_for
from core.settings import Settings
from tests.unit.test_envelope import good_event
from tests.unit.test_lake_handler import CONSUMER, assign, feed, handler_for
from tests.unit.test_lake_protocol import World

TS = 1_790_000_000_000


def event(offset: int, props: dict[str, Any], **envelope: Any) -> bytes:
    return orjson.dumps({"event_id": f"e{offset}", "server_ts": TS, "properties": props, **envelope})


def flush(schema: TableSchema, first: int, props: list[dict[str, Any]]) -> pa.Table:
    """One flush of a partition: observe, build, write, read the Parquet file back."""
    rows = [decode(0, first + i, TS, event(first + i, p)) for i, p in enumerate(props)]
    schema.observe(row.properties for row in rows)
    return pq.read_table(io.BytesIO(parquet_bytes(build_table(rows, schema))))


def test_a_type_change_never_leaves_a_file_whose_column_type_contradicts_the_table() -> None:
    schema = TableSchema()
    files = [
        flush(schema, 0, [{"amount": 1}, {"amount": 2}]),
        flush(schema, 2, [{"amount": 2.5}]),
        flush(schema, 3, [{"amount": "free"}, {"amount": 3}, {"amount": True}, {"amount": 2**60}]),
    ]
    table_types = {field.name: field.type for field in arrow_schema(schema)}
    for file in files:
        for field in file.schema:
            assert field.type == table_types[field.name], field.name
    assert schema.columns == {
        "p_amount": INT,
        "p_amount__double": DOUBLE,
        "p_amount__string": STRING,
        "p_amount__bool": "bool",
    }
    rows = [row for file in files for row in file.to_pylist()]
    assert [row["p_amount"] for row in rows] == [1, 2, None, None, 3, None, 2**60]
    # (a file has the columns of its time)
    assert [row.get("p_amount__double") for row in rows] == [None, None, 2.5, None, None, None, None]
    assert [row.get("p_amount__string") for row in rows] == [None, None, None, "free", None, None, None]
    assert [row.get("p_amount__bool") for row in rows] == [None] * 5 + [True, None]


def test_ints_are_cast_into_a_double_column_only_when_exact() -> None:
    schema = TableSchema()
    file = flush(schema, 0, [{"price": 9.5}, {"price": 10}, {"price": 2**53 + 1}])
    assert file.column("p_price").to_pylist() == [9.5, 10.0, None]
    assert file.column("p_price__int64").to_pylist() == [None, None, 2**53 + 1]
    assert file.schema.field("p_price").type == pa.float64()
    # Beyond int64 (possible from a decoder that is not orjson): the decimal text, in a string column.
    huge = LakeRow(0, 9, TS, b"", {"properties": {"price": 2**70, "n": 2**70}})
    schema.observe([huge.properties])
    table = build_table([huge], schema)
    assert table.column("p_price__string").to_pylist() == [str(2**70)]
    assert table.column("p_n").to_pylist() == [str(2**70)]


def test_a_string_column_takes_every_value_as_text_and_nested_values_as_json() -> None:
    schema = TableSchema()
    file = flush(schema, 0, [{"code": "A7"}, {"code": 7}, {"code": {"a": [1, 2.5]}}, {"code": False}])
    assert list(schema.columns) == ["p_code"]
    assert file.column("p_code").to_pylist() == ["A7", "7", '{"a":[1,2.5]}', "false"]


def test_property_to_column_names_are_injective_case_insensitively_and_stable() -> None:
    names = ["a.b", "a_b", "a b", "A_B", "a_b__double"]
    schema = TableSchema()
    schema.observe([dict.fromkeys(names, 1), {"a_b": 1.5}])
    columns = {name: schema.properties[name][INT] for name in names}
    assert columns["a.b"] == "p_a_b"  # the first one keeps the readable name
    assert len({column.lower() for column in schema.columns}) == len(schema.columns) == 6
    sibling = schema.properties["a_b"][DOUBLE]
    assert sibling not in columns.values()
    # Stable: recorded in _schema.json, the same names whatever order the data comes in later.
    again = TableSchema.from_bytes(schema.to_bytes("t"))
    again.observe([dict.fromkeys(reversed(names), 2), {"a_b": 0.5}])
    assert again.columns == schema.columns
    assert again.properties == schema.properties
    file = flush(again, 0, [{"a.b": 1, "a_b": 2, "a b": 3, "A_B": 4}])
    assert [file.column(columns[name]).to_pylist() for name in names[:4]] == [[1], [2], [3], [4]]


def test_a_table_written_before_names_were_recorded_keeps_its_columns() -> None:
    legacy = orjson.dumps({"columns": {"p_amount": "double", "p_a_b": "string"}, "changes": []})
    schema = TableSchema.from_bytes(legacy)
    file = flush(schema, 0, [{"amount": 3, "a.b": 1, "a_b": 2}])
    assert file.column("p_amount").to_pylist() == [3.0]
    assert file.schema.field("p_amount").type == pa.float64()
    assert schema.properties["a.b"] == {STRING: "p_a_b"}  # the legacy column, adopted once
    assert schema.properties["a_b"][INT].startswith("p_a_b__")


def test_a_stored_schema_wins_over_an_override_declared_later() -> None:
    stored = TableSchema()
    stored.observe([{"amount": 5}])
    override = schema_from_avro(
        {"fields": [{"name": "amount", "type": "double"}, {"name": "x", "type": "string"}]}
    )
    assert stored.merge(override)
    assert stored.columns == {"p_amount": INT, "p_x": STRING}


def test_caps_keep_the_excess_in_extra_and_a_90k_key_event_adds_at_most_the_cap() -> None:
    big = {f"k{i}": i for i in range(90_000)}
    schema = TableSchema(limits=ShapeLimits(max_properties=200, max_columns=1000))
    small = [decode(0, i, TS, event(i, {"k5": 5, "late": "x"})) for i in range(1, 2_001)]
    tracemalloc.start()
    try:
        rows = [decode(0, 0, TS, event(0, big)), *small]
        schema.observe(row.properties for row in rows)
        table = build_table(rows, schema)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(schema.columns) == 201  # the first 200 keys of the big event, and "late"
    first, second = table.slice(0, 2).to_pylist()
    extra = orjson.loads(first["_extra"])
    assert len(extra) == 90_000 - 200
    assert {**{k: first[f"p_{k}"] for k in list(big)[:200]}, **extra} == big  # nothing lost
    assert (second["p_k5"], second["p_late"], second["_extra"]) == (5, "x", None)
    # A column per key would need 90 000 columns x 2 001 rows of slots (~1.4 GB) for this batch.
    assert peak < 200 * 1024 * 1024, peak


def test_the_column_cap_sends_new_properties_to_extra() -> None:
    schema = TableSchema(limits=ShapeLimits(max_properties=200, max_columns=2))
    file = flush(schema, 0, [{"a": 1, "b": 2}, {"a": "x", "c": 3, "b": 4}])
    assert list(schema.columns) == ["p_a", "p_b"]
    assert file.column("p_b").to_pylist() == [2, 4]
    assert file.column("_extra").to_pylist() == [None, '{"a":"x","c":3}']


def test_an_undecodable_record_is_kept_raw_with_its_error_and_a_transient_one_raises() -> None:
    def refuse(raw: bytes) -> dict[str, Any]:
        raise SchemaError("malformed_avro", None, "not a Confluent Avro frame")

    rows = decode_records([RawRecord(0, 0, TS, b"\x00\x01\xff"), RawRecord(0, 1, TS, b"[1]")], refuse)
    table = build_table(rows, TableSchema())
    assert table.column("_raw").to_pylist() == ["base64:AAH/", "[1]"]
    assert (
        table.column("_error").to_pylist() == ["SchemaError: malformed_avro: not a Confluent Avro frame"] * 2
    )
    assert (
        decode(0, 2, TS, b"[1]").error
        == "SchemaError: not_an_object: the event is a JSON array, not an object"
    )

    def away(raw: bytes) -> dict[str, Any]:
        raise TransientError("registry away")

    with pytest.raises(TransientError):
        decode_record(RawRecord(0, 3, TS, b"{}"), away)


def test_a_record_that_cannot_be_encoded_goes_to_raw_and_its_batch_is_written() -> None:
    rows = [decode(0, 0, TS, event(0, {"n": 1})), decode(0, 1, TS, event(1, {"n": 2}, server_ts=1e30))]
    schema = TableSchema()
    schema.observe(row.properties for row in rows)
    quarantined: list[tuple[int, str]] = []
    table = pq.read_table(
        io.BytesIO(parquet_bytes(build_table(rows, schema, lambda r, e: quarantined.append((r.offset, e)))))
    )
    good, bad = table.to_pylist()
    assert (good["p_n"], good["event_id"], good["_error"]) == (1, "e0", None)
    assert (bad["_kafka_offset"], bad["p_n"], bad["event_id"]) == (1, None, None)
    assert orjson.loads(bad["_raw"])["server_ts"] == 1e30
    assert bad["_error"].startswith("not encodable: server_ts: ")
    assert [offset for offset, _ in quarantined] == [1]


def test_avro_wire_records_are_decoded_by_the_codec_the_edge_passes_in() -> None:
    settings = Settings(
        lake_uri="file:///nonexistent/lake",
        lanes=["l"],
        kafka_schema_registry_url=f"mock://lake-{uuid.uuid4().hex[:8]}",
        kafka_wire_format="avro",
    )
    codec = codec_for(settings)
    ids = [str(uuid.uuid4()) for _ in range(3)]
    source = [{**good_event(), "event_id": ids[i], "properties": {"amount": i, "ok": True}} for i in range(3)]
    raws = [codec.encode(item) for item in source]
    assert all(raw[0] == 0 for raw in raws)
    world = World()
    with ThreadPoolExecutor(4) as pool:
        commit = LakeCommitter(settings, world, None, pool, decode_event=codec_for(settings).decode)
        commit.recover([("l.event.a", 0)])
        buffer = PartitionBuffer("l.event.a", 0)
        for offset, raw in enumerate(raws):
            buffer.add(RawRecord(0, offset, TS, raw), now=0.0)
        commit.flush([buffer], world)
    [data] = [data for key, data in world.objects.items() if key.endswith(".parquet")]
    table = pq.read_table(io.BytesIO(data))
    for name in (*STRING_FIELDS, "server_ts", "client_ts", "p_amount", "p_ok"):
        column = table.column(name).to_pylist()
        assert None not in column, name
    assert table.column("event_id").to_pylist() == ids
    assert table.column("_raw").to_pylist() == [None] * 3


def test_buffered_bytes_count_what_the_buffer_really_holds() -> None:
    values = [event(i, {"amount": i, "note": "x" * (i % 50)}) for i in range(20_000)]
    buffer = PartitionBuffer("t", 0)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for offset, value in enumerate(values):
            # Fresh objects, as each Kafka message gives: the bytes and both large ints.
            buffer.add(RawRecord(0, offset + 2**40, TS + offset, bytes(bytearray(value))), now=0.0)
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    held = after - before
    assert 0.85 * held <= buffer.size_bytes <= 1.15 * held, (buffer.size_bytes, held)


def test_table_names_come_only_from_the_router_grammar() -> None:
    template = "{lane}.event.{name}"
    assert table_name("default.event.add-cash", template, "default") == "add-cash"
    assert table_name("default.event.add_cash", template, "default") == "add_cash"
    mapped = topic_name_for("Add.Cash")
    assert table_name(f"default.event.{mapped}", template, "default") == mapped
    for rogue in ("..", ".", "a.b", "A", "a--b", "-a", "a/b"):
        assert table_name(f"default.event.{rogue}", template, "default") is None, rogue


def test_a_file_lake_refuses_keys_that_leave_the_lake(tmp_path: Path) -> None:
    store = LakeStore(Settings(lake_uri=f"file://{tmp_path}/lake", lanes=["l"]))
    store.put("l/t/_schema.json", b"{}")
    assert store.list_keys("l/") == ["l/t/_schema.json"]
    for key in ("l/../x", "l/./x", "../x", "/etc/x", "l//x", "l\\..\\x"):
        with pytest.raises(ValueError, match="segment"):
            store.put(key, b"x")
        with pytest.raises(ValueError, match="segment"):
            store.get(key)
    assert not (tmp_path / "x").exists()


def test_glue_table_names_are_injective() -> None:
    pairs = [
        ("default", "add_cash"),
        ("default", "add-cash"),
        ("default_add", "cash"),
        ("default", "add__cash"),
        ("default", "_add_cash"),
        ("de-fault", "add_cash"),
        ("de_fault", "add_cash"),
        ("default", topic_name_for("Add.Cash")),
        ("default", topic_name_for("add cash")),
    ]
    names = [glue_table_name(lane, table) for lane, table in pairs]
    assert len(set(names)) == len(pairs), names
    assert names[0] == "default_add_cash"  # plain names stay readable
    assert all(re.fullmatch(r"[a-z0-9_]{1,255}", name) for name in names)


def test_a_topic_outside_the_router_grammar_is_ignored_never_written() -> None:
    world = World()
    with ThreadPoolExecutor(2) as pool:
        handler, _ = handler_for(world, pool)
        good, rogue = assign(handler, ("l.event.a", 0), ("l.event...", 0))
        assert (good.offset, rogue.offset) == (OFFSET_BEGINNING, OFFSET_END)
        feed(handler, ("l.event...", 0), range(3))
        feed(handler, ("l.event.a", 0), range(3))
        handler.stopping(CONSUMER)
    assert list(handler.committer.manifests) == [("l.event.a", 0)]
    assert all(key.startswith(("l/a/", "l/_manifests/l.event.a/")) for key in world.objects)
    assert handler.stats.rows == 3


def test_two_writers_of_one_table_agree_on_each_new_columns_type() -> None:
    """Worker B loaded the table's schema before worker A created a column; when B is about to
    create the same property's column with another type, it reads the stored schema again and
    puts its values in a sibling instead of a file that contradicts A's."""
    world = World()
    settings = Settings(lake_uri="file:///nonexistent/lake", lanes=["l"])

    def buffer(partition: int, props: dict[str, Any]) -> PartitionBuffer:
        filled = PartitionBuffer("l.event.a", partition)
        filled.add(RawRecord(partition, 0, TS, event(partition, props)), now=0.0)
        return filled

    with ThreadPoolExecutor(2) as pool:
        writer_a, writer_b = (
            LakeCommitter(settings, world, None, pool),
            LakeCommitter(settings, world, None, pool),
        )
        writer_a.recover([("l.event.a", 0)])
        writer_b.recover([("l.event.a", 1)])
        writer_a.flush([buffer(0, {"seen": 1})], world)
        writer_b.flush([buffer(1, {"seen": 1})], world)  # B has loaded the schema now
        writer_a.flush([_at(buffer(0, {"x": 7}), 1)], world)
        writer_b.flush([_at(buffer(1, {"x": 7.5}), 1)], world)
        writer_a.flush([_at(buffer(0, {"y": "a"}), 2)], world)  # A re-reads too: B's sibling stays
    stored = TableSchema.from_bytes(world.objects["l/a/_schema.json"])
    assert stored.columns == {"p_seen": INT, "p_x": INT, "p_x__double": DOUBLE, "p_y": STRING}
    for key, data in world.objects.items():
        if key.endswith(".parquet"):
            for field in pq.read_schema(pa.BufferReader(data)):
                if field.name in stored.columns:
                    assert field.type == arrow_schema(stored).field(field.name).type, (key, field.name)


def _at(buffer: PartitionBuffer, offset: int) -> PartitionBuffer:
    [record] = buffer.take()
    buffer.add(record._replace(offset=offset), now=0.0)
    return buffer
