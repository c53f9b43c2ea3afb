"""The Parquet encoding of lake files: unique ids without a dictionary, offsets and times as deltas,
every other column dictionary-encoded, and the values read back unchanged."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import orjson
import pyarrow.parquet as pq

from core.lake.encode import DELTA_COLUMNS, PLAIN_COLUMNS, build_table, parquet_bytes
from core.lake.records import LakeRow, decode
from core.lake.schema import TableSchema
from tests.support import contest_join

TS = int(datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp() * 1000)


def _rows(count: int) -> list[LakeRow]:
    rows = []
    for offset in range(count):
        event = contest_join(offset, TS + offset * 250)
        rows.append(decode(offset % 2, 10_000 + offset, TS, orjson.dumps(event)))
    rows.append(decode(0, 20_000, TS, b"not json"))  # a _raw row among them
    return rows


def test_ids_are_plain_offsets_and_times_are_deltas_and_the_rest_dictionaries() -> None:
    rows = _rows(5_000)
    schema = TableSchema()
    schema.observe(r.properties for r in rows)
    table = build_table(rows, schema)
    data = parquet_bytes(table)
    metadata = pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0)
    encodings = {
        metadata.column(i).path_in_schema: set(metadata.column(i).encodings)
        for i in range(metadata.num_columns)
    }
    for name in PLAIN_COLUMNS:
        assert "PLAIN" in encodings[name]
        assert not encodings[name] & {"PLAIN_DICTIONARY", "RLE_DICTIONARY"}
    for name in DELTA_COLUMNS:
        assert "DELTA_BINARY_PACKED" in encodings[name]
    for name in ("user_id", "event_name", "p_amount", "p_sport"):
        assert "RLE_DICTIONARY" in encodings[name]
    assert pq.read_table(io.BytesIO(data)).equals(table)


def test_deltas_make_offsets_and_server_times_nearly_free() -> None:
    rows = _rows(20_000)
    schema = TableSchema()
    schema.observe(r.properties for r in rows)
    metadata = pq.ParquetFile(io.BytesIO(parquet_bytes(build_table(rows, schema)))).metadata.row_group(0)
    sizes = {
        metadata.column(i).path_in_schema: metadata.column(i).total_compressed_size
        for i in range(metadata.num_columns)
    }
    # 8-byte values; as dictionary indexes they would take about 2 bytes a row.
    assert sizes["_kafka_offset"] < 0.2 * len(rows)
    assert sizes["server_ts"] < 0.2 * len(rows)
