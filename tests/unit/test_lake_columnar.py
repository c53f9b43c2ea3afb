"""Arrow's JSON reader (``core.lake.columnar``) builds exactly the table the per-record path builds
— same columns in the same order, same values, same partitions — or declines the batch."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors.lake_fs import LakeStore
from core.envelope import parse_json_event
from core.lake.columnar import FlushBatch, build_parsed, observe_parsed, parse_batch, partition_columns
from core.lake.commit import LakeCommitter
from core.lake.encode import build_table
from core.lake.flush import PartitionBuffer
from core.lake.iceberg_commit import IcebergCommitter
from core.lake.records import EventDecoder, RawRecord, partition_value
from core.lake.schema import ShapeLimits, TableSchema
from core.settings import Settings
from streams.lake_iceberg import commit_path_for

NAMES = ["amount", "a.b", "a_b", "A_b", "sport", "team id", "is_new", "x", "y", "z"]
TS = 1_790_000_000_000


def _value(rng: random.Random, kind: str) -> Any:
    return {
        "int": lambda: rng.randint(-1000, 10**6),
        "float": lambda: rng.choice([0.5, -2.25, 1e10, 7.0, 3.125]),
        "bool": lambda: rng.random() < 0.5,
        "str": lambda: rng.choice(["x", "cricket", "ünï", "", "7", "true"]),
        "time": lambda: "2026-01-01 00:00:00",  # Arrow would infer a timestamp
        "null": lambda: None,
        "big": lambda: rng.choice([2**60, -(2**62), 2**53 + 1]),
        "nested": lambda: rng.choice([{"v": 1}, [1, 2], []]),
    }[kind]()


def _event(rng: random.Random, kinds: dict[str, str], row: int, dirt: float) -> dict[str, Any]:
    names = rng.sample(NAMES, rng.randint(0, len(NAMES)))
    props = {name: _value(rng, kinds[name] if rng.random() < 0.9 else "null") for name in names}
    event: dict[str, Any] = {"event_name": "e", "event_id": f"id{row}", "user_id": f"u{row % 7}"}
    if rng.random() < 0.9:
        event["server_ts"] = TS + row * 1_000_000 if rng.random() < 0.95 else -5
    if rng.random() < 0.5:
        event["client_ts"] = TS - 3_600_000 + row
    if rng.random() < dirt:
        event["user_id"] = 42  # not a string: the per-record path's text()
    if rng.random() < dirt:
        event["server_ts"] = 1.5e12  # a float time
    if rng.random() < 0.9:
        event["properties"] = props
    elif rng.random() < 0.5:
        event["properties"] = None
    event["context"] = {"ip": "1.2.3.4"} if rng.random() < 0.5 else {"ip": "5.6.7.8", "n": 1}
    if rng.random() < dirt:
        event["context"] = "a string where other events have an object"
    return dict(rng.sample(list(event.items()), len(event))) if rng.random() < 0.3 else event


def _raw(rng: random.Random, event: dict[str, Any], dirt: float) -> bytes:
    roll = rng.random() / max(dirt, 1e-9) * 0.03
    if roll < 0.01:
        return b"not json"
    if roll < 0.015:
        return b'{"event_name": "e", "x": NaN}'
    if roll < 0.02:
        return b""
    if roll < 0.025:
        return b'{"a": 1}{"b": 2}'
    if roll < 0.03:
        return b'{"a": 1, "a": 2}'
    return orjson.dumps(event)


def _batch(rng: random.Random, offset: int, usual: dict[str, str]) -> list[RawRecord]:
    # Half the batches clean (each property of its usual type, well-formed records: what the Arrow
    # path is for); the others with a little of every mess, and types that change.
    dirt = 0.0 if rng.random() < 0.5 else 0.02
    kinds = {
        name: kind
        if rng.random() >= dirt * 5
        else rng.choice(["big", "nested", "null", "str", "int", "time"])
        for name, kind in usual.items()
    }
    size = rng.randint(1, 40)
    return [
        RawRecord(rng.randint(0, 1), offset + row, TS + row, _raw(rng, _event(rng, kinds, row, dirt), dirt))
        for row in range(size)
    ]


def _limits(rng: random.Random) -> ShapeLimits:
    return rng.choice([ShapeLimits(), ShapeLimits(len(NAMES), 1000), ShapeLimits(200, 6)])


def _compare_paths(seed: int) -> int:
    """One table over successive flushes, each batch through both paths; the batches served."""
    rng = random.Random(seed)
    fast_schema, slow_schema = TableSchema(), TableSchema()
    fast_schema.limits = slow_schema.limits = _limits(rng)
    served = 0
    usual = {name: rng.choice(["int", "float", "bool", "str"]) for name in NAMES}
    for step in range(12):  # one table over successive flushes: columns carried over
        records = _batch(rng, step * 100, usual)
        rows = FlushBatch(records).rows
        slow_changed = slow_schema.observe((row.properties for row in rows), "w")
        slow = build_table(rows, slow_schema)
        parsed = parse_batch(records)
        fast_changed = observe_parsed(parsed, fast_schema, "w") if parsed is not None else None
        if fast_changed is None:
            fast_schema.observe((row.properties for row in rows), "w")  # as the lake falls back
            assert fast_schema.to_bytes("t") == slow_schema.to_bytes("t")
            continue
        served += 1
        assert parsed is not None
        assert fast_changed == slow_changed
        assert fast_schema.to_bytes("t") == slow_schema.to_bytes("t")
        assert list(fast_schema.columns) == list(slow_schema.columns)
        fast = build_parsed(parsed, fast_schema)
        assert fast.schema == slow.schema
        assert fast.equals(slow), (fast.to_pylist()[:3], slow.to_pylist()[:3])
        for source in ("server", "client"):
            dt, hour = partition_columns(parsed, source)
            values = [partition_value(row, source) for row in rows]
            assert dt.to_pylist() == [value.dt for value in values]
            assert hour.to_pylist() == [value.hour for value in values]
    return served


@pytest.mark.parametrize("seed", range(40))
def test_the_arrow_path_builds_what_the_per_record_path_builds_or_declines(seed: int) -> None:
    _compare_paths(seed)


def test_the_comparison_is_not_vacuous() -> None:
    assert sum(_compare_paths(seed) for seed in range(40)) >= 100  # of 480 batches, half of them messy


def test_most_clean_batches_take_the_arrow_path() -> None:
    """Not vacuous: the clean case (the simulator's, a typical producer's) is served."""
    rng = random.Random(7)
    served = sum(
        parse_batch(
            [
                RawRecord(
                    0,
                    row,
                    TS,
                    orjson.dumps(
                        {
                            "event_id": f"e{row}",
                            "server_ts": TS,
                            "properties": {
                                "amount": rng.random(),
                                "n": rng.randint(0, 9),
                                "ok": True,
                                "s": "x",
                            },
                        }
                    ),
                )
                for row in range(50)
            ]
        )
        is not None
        for _ in range(20)
    )
    assert served == 20


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b'{"properties": {"v": {"n": 1}}}', "nested"),
        (b'{"properties": {"v": "2026-01-01 00:00:00"}}', "a timestamp Arrow would infer"),
        (b'{"properties": {"v": 9007199254740993}}', "an int beyond 2**53"),
        (b'{"user_id": 5}', "a number in a string field"),
        (b'{"server_ts": "2026"}', "a string time"),
        (b' {"a": 1}', "not starting with {"),
        (b'{"a": Infinity}', "a literal orjson refuses"),
        (b'{"properties": {"v": Inf}}', "Arrow's short infinity, orjson refuses it too"),
        (b'{"properties": {"v": -Infinity}}', "a negative infinity"),
        (b'{"x": [1.5, NaN]}', "NaN nested in a field the envelope does not keep"),
        (b'{"x": {"y": {"z": -Inf}}}', "an infinity deep in a struct"),
        (b'{"a": 1}\n{"a": 2}', "two lines in one record"),
    ],
)
def test_batches_the_arrow_path_declines(raw: bytes, why: str) -> None:
    assert parse_batch([RawRecord(0, 0, TS, b'{"a": 0}'), RawRecord(0, 1, TS, raw)]) is None, why


@pytest.mark.parametrize(
    "text", ["NaN", "Infinity", "-Inf", "x\ufeffy", "\ufeff"], ids=["nan", "inf", "ninf", "bom", "bom-only"]
)
def test_a_string_holding_a_float_literal_or_a_byte_order_mark_is_served_as_read(text: str) -> None:
    records = [RawRecord(0, i, TS, orjson.dumps({"properties": {"v": text, "n": 1.5}})) for i in range(2)]
    parsed = parse_batch(records)
    assert parsed is not None
    schema = TableSchema()
    assert observe_parsed(parsed, schema) is not None
    assert build_parsed(parsed, schema).column("p_v").to_pylist() == [text, text]


def test_a_mixed_int_and_float_property_needs_a_double_column() -> None:
    records = [RawRecord(0, i, TS, orjson.dumps({"properties": {"v": v}})) for i, v in enumerate([1, 2.5])]
    parsed = parse_batch(records)
    assert parsed is not None
    fresh = TableSchema()
    assert observe_parsed(parsed, fresh) is None  # the first value (an int) would make it int64
    assert fresh.columns == {}
    doubles = TableSchema({"p_v": "double"}, properties={"v": {"double": "p_v"}})
    assert observe_parsed(parsed, doubles) is False
    assert build_parsed(parsed, doubles).column("p_v").to_pylist() == [1.0, 2.5]


def test_columns_are_created_in_the_order_the_per_record_path_meets_their_first_values() -> None:
    """Arrow orders fields by first appearance, nulls included; a column is created by its first
    value, so ``a`` (null in row 0) comes after ``b``, and ``d`` before ``c`` (row 1's key order)."""
    events: list[dict[str, Any]] = [
        {"a": None, "b": 1, "c": None, "d": None},
        {"b": 2, "a": 3, "d": 1, "c": 2},
    ]
    records = [RawRecord(0, i, TS, orjson.dumps({"properties": props})) for i, props in enumerate(events)]
    parsed = parse_batch(records)
    assert parsed is not None
    fast, slow = TableSchema(), TableSchema()
    observe_parsed(parsed, fast)
    slow.observe(events)
    assert list(fast.columns) == list(slow.columns) == ["p_b", "p_a", "p_d", "p_c"]


def test_a_new_property_whose_first_value_is_a_float_gets_a_double_column_for_its_ints_too() -> None:
    events: list[dict[str, Any]] = [{"v": 2.5}, {"v": 1}, {"v": None}]
    records = [RawRecord(0, i, TS, orjson.dumps({"properties": props})) for i, props in enumerate(events)]
    parsed = parse_batch(records)
    assert parsed is not None
    fast, slow = TableSchema(), TableSchema()
    assert observe_parsed(parsed, fast) is True
    slow.observe(events)
    assert fast.columns == slow.columns == {"p_v": "double"}
    assert build_parsed(parsed, fast).column("p_v").to_pylist() == [2.5, 1.0, None]


def test_the_iceberg_lake_on_json_wire_decodes_with_the_json_decoder_arrow_stands_in_for(
    tmp_path: Any,
) -> None:
    """Not the codec's wrapper: ``FlushBatch`` parses with Arrow only for ``parse_json_event`` itself."""
    settings = Settings(lake_uri=f"file://{tmp_path}/lake", lanes=["l"], lake_format="iceberg")
    with ThreadPoolExecutor(1) as pool:
        path = commit_path_for(settings, LakeStore(settings), pool, {})
    assert isinstance(path, IcebergCommitter)
    assert path.decode_event is parse_json_event
    records = [RawRecord(0, 0, 0, orjson.dumps({"event_id": "e", "properties": {"n": 1}}))]
    assert FlushBatch(records, path.decode_event).parsed is not None


def _parquet_lake(tmp_path: Path, seed: int, decoder: EventDecoder) -> tuple[dict[str, pa.Table], int]:
    """A parquet-format lake after 12 flushes of one partition's random batches; its data files
    by key under the lake root, and how many batches Arrow parsed."""
    settings = Settings(lake_uri=f"file://{tmp_path}", lanes=["l"], lake_format="parquet")
    rng = random.Random(seed)
    usual = {name: rng.choice(["int", "float", "bool", "str"]) for name in NAMES}
    store, tp, served = LakeStore(settings), ("l.event.e", 0), 0
    with ThreadPoolExecutor(2) as pool:
        committer = LakeCommitter(settings, store, None, pool, decode_event=decoder)
        committer.recover([tp])
        for step in range(12):
            buffer = PartitionBuffer(*tp)
            for index, record in enumerate(_batch(rng, step * 100, usual)):
                buffer.add(RawRecord(0, step * 100 + index, record.kafka_ts_ms, record.raw), 0.0)
            served += FlushBatch(buffer.rows, decoder).parsed is not None
            committer.flush([buffer], NoOffsets())
    files = {
        str(path.relative_to(tmp_path)): pq.read_table(path) for path in sorted(tmp_path.rglob("*.parquet"))
    }
    return files, served


class NoOffsets:
    def commit(self, offsets: Any) -> None:
        pass


@pytest.mark.parametrize("seed", range(6))
def test_the_parquet_format_writes_the_same_files_by_either_path(tmp_path: Path, seed: int) -> None:
    """The parquet commit path parses with Arrow when it can: same keys, same tables as decoding
    record by record (a decoder other than ``parse_json_event`` itself takes that path)."""
    fast, served = _parquet_lake(tmp_path / "fast", seed, parse_json_event)
    slow, none = _parquet_lake(tmp_path / "slow", seed, lambda raw: parse_json_event(raw))
    assert none == 0
    assert served > 0
    assert list(fast) == list(slow)
    assert len(fast) > 12  # several hours per flush
    for key, table in fast.items():
        assert table.equals(slow[key]), key
