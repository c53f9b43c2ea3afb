"""Rows → one Arrow table → Parquet bytes. Pure: no storage, so it is testable without S3.

Columns: the envelope (strings; ``client_ts``/``server_ts`` as ``timestamp[ms, UTC]``), the Kafka
coordinates ``_kafka_partition``/``_kafka_offset`` (they make duplicates provable), ``_raw`` (the
original bytes of a record that was not a JSON object, else null), then one column per property in
the table schema (``p_<name>``, typed by the schema).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from core.envelope import STRING_FIELDS
from core.lake.records import ENVELOPE_TIMES, LakeRow, epoch_ms
from core.lake.schema import BOOL, DOUBLE, INT, STRING, TableSchema, column_for_property

ARROW_TYPES: dict[str, pa.DataType] = {
    BOOL: pa.bool_(),
    INT: pa.int64(),
    DOUBLE: pa.float64(),
    STRING: pa.string(),
}
TIMESTAMP_TYPE = pa.timestamp("ms", tz="UTC")
ROW_GROUP_ROWS = 128 * 1024


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _to_column(value: Any, kind: str) -> Any:
    """``value`` as the column type; None when it cannot be (only possible for declared columns)."""
    if value is None:
        return None
    if kind == STRING:
        return _text(value)
    if isinstance(value, bool):
        return value if kind == BOOL else None
    if kind == INT:
        if isinstance(value, int):
            return value
        return int(value) if isinstance(value, float) and value.is_integer() else None
    if kind == DOUBLE:
        return float(value) if isinstance(value, int | float) else None
    return None


def envelope_schema() -> list[pa.Field]:
    return [
        *(pa.field(name, pa.string()) for name in STRING_FIELDS),
        *(pa.field(name, TIMESTAMP_TYPE) for name in ENVELOPE_TIMES),
        pa.field("_kafka_partition", pa.int32()),
        pa.field("_kafka_offset", pa.int64()),
        pa.field("_raw", pa.string()),
    ]


def arrow_schema(schema: TableSchema) -> pa.Schema:
    props = [pa.field(column, ARROW_TYPES[kind]) for column, kind in schema.columns.items()]
    return pa.schema([*envelope_schema(), *props])


def build_table(rows: Sequence[LakeRow], schema: TableSchema) -> pa.Table:
    """One Arrow table for ``rows``, with every column of ``schema`` (null where absent)."""
    events = [row.event or {} for row in rows]
    arrays: list[pa.Array] = [
        pa.array([_text(event.get(name)) for event in events], pa.string()) for name in STRING_FIELDS
    ]
    arrays += [
        pa.array([epoch_ms(event.get(name)) for event in events], pa.int64()).cast(TIMESTAMP_TYPE)
        for name in ENVELOPE_TIMES
    ]
    arrays.append(pa.array([row.partition for row in rows], pa.int32()))
    arrays.append(pa.array([row.offset for row in rows], pa.int64()))
    arrays.append(
        pa.array([None if row.event is not None else row.raw.decode(errors="replace") for row in rows])
    )
    by_column: dict[str, list[Any]] = {column: [None] * len(rows) for column in schema.columns}
    for index, row in enumerate(rows):
        for name, value in row.properties.items():
            column = column_for_property(name)
            kind = schema.columns.get(column)
            if kind is not None:
                by_column[column][index] = _to_column(value, kind)
    for column, kind in schema.columns.items():
        arrays.append(pa.array(by_column[column], ARROW_TYPES[kind]))
    return pa.Table.from_arrays(arrays, schema=arrow_schema(schema))


def parquet_bytes(table: pa.Table, compression: str = "zstd") -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        compression=compression,
        row_group_size=ROW_GROUP_ROWS,
        coerce_timestamps="ms",
        allow_truncated_timestamps=True,
    )
    return bytes(sink.getvalue().to_pybytes())
