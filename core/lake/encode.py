"""Rows → one Arrow table → Parquet bytes. Pure: no storage, so it is testable without S3.

Columns: the envelope (strings; ``client_ts``/``server_ts`` as ``timestamp[ms, UTC]``), the Kafka
coordinates ``_kafka_partition``/``_kafka_offset`` (they make duplicates provable), ``_raw`` and
``_error`` (the original bytes of a record that could not be decoded or encoded, and why; else
null), ``_extra`` (JSON text of the properties over the caps, else null), then one column per
property column of the table schema, each of its one fixed type (see ``core.lake.schema``).

A record that cannot be encoded (a value Arrow refuses) never fails the flush: its batch is
encoded again with that record reduced to ``_raw`` and the failing column named in ``_error``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from itertools import islice
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from core.envelope import STRING_FIELDS
from core.lake.records import ENVELOPE_TIMES, LakeRow, epoch_ms
from core.lake.schema import BOOL, DOUBLE, INT, STRING, TableSchema, value_class

ARROW_TYPES: dict[str, pa.DataType] = {
    BOOL: pa.bool_(),
    INT: pa.int64(),
    DOUBLE: pa.float64(),
    STRING: pa.string(),
}
TIMESTAMP_TYPE = pa.timestamp("ms", tz="UTC")
ROW_GROUP_ROWS = 128 * 1024
# Unique per row (random UUIDs): a dictionary is built, overflows and is abandoned, costing bytes and time.
PLAIN_COLUMNS = ("event_id",)
# Increasing within a file (Kafka offsets) or nearly so (event times): deltas take a few bits a row
# where a dictionary of distinct values takes 2-3 bytes (measured on the simulator: 0.85x → 0.75x
# of gzip JSON; docs/lake.md "What the bytes are").
DELTA_COLUMNS = ("_kafka_offset", "client_ts", "server_ts")
RAW, ERROR, EXTRA = "_raw", "_error", "_extra"


class ColumnError(ValueError):
    """A value Arrow refused, with the column it was meant for."""

    def __init__(self, column: str, cause: Exception) -> None:
        super().__init__(f"{column}: {type(cause).__name__}: {cause}")


def text(value: Any) -> str | None:
    """A string as it is, anything else as compact JSON (integers of any size included)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson refuses integers beyond 64 bits
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _to_column(value: Any, kind: str) -> Any:
    """``value`` in a column of type ``kind`` that accepts it (``TableSchema.column_for``)."""
    if kind == STRING:
        return text(value)
    if kind == DOUBLE:
        return float(value)
    return value


def envelope_schema() -> list[pa.Field]:
    return [
        *(pa.field(name, pa.string()) for name in STRING_FIELDS),
        *(pa.field(name, TIMESTAMP_TYPE) for name in ENVELOPE_TIMES),
        pa.field("_kafka_partition", pa.int32()),
        pa.field("_kafka_offset", pa.int64()),
        pa.field(RAW, pa.string()),
        pa.field(ERROR, pa.string()),
        pa.field(EXTRA, pa.string()),
    ]


def arrow_schema(schema: TableSchema) -> pa.Schema:
    props = [pa.field(column, ARROW_TYPES[kind]) for column, kind in schema.columns.items()]
    return pa.schema([*envelope_schema(), *props])


def _array(column: str, values: list[Any], kind: pa.DataType) -> pa.Array:
    try:
        return pa.array(values, kind)
    except (pa.ArrowException, ValueError, TypeError, OverflowError) as exc:
        raise ColumnError(column, exc) from exc


def _properties(
    rows: Sequence[LakeRow], schema: TableSchema
) -> tuple[dict[str, list[Any]], list[str | None]]:
    """Each property value in its column; per row, the JSON text of what went to ``_extra``.

    The per-value work is a dict lookup of the cached route; the schema is asked only on a miss."""
    size, limit = len(rows), schema.limits.max_properties
    routes, types, column_for = schema.routes, schema.columns, schema.column_for
    by_column: dict[str, list[Any]] = {}
    extras: list[str | None] = [None] * size
    for index, row in enumerate(rows):
        props = row.properties
        if not props:
            continue
        extra: dict[str, Any] = {}
        for name, value in props.items() if len(props) <= limit else islice(props.items(), limit):
            kind = value_class(value)
            if kind is None:
                continue
            column = routes.get((name, kind)) or column_for(name, kind)
            if column is None:
                extra[name] = value  # the table is at its column cap
                continue
            values = by_column.get(column)
            if values is None:
                values = by_column[column] = [None] * size
            column_type = types[column]
            values[index] = value if column_type == kind else _to_column(value, column_type)
        if len(props) > limit:
            extra.update(islice(props.items(), limit, None))
        if extra:
            extras[index] = text(extra)
    return by_column, extras


def _build(rows: Sequence[LakeRow], schema: TableSchema) -> pa.Table:
    events = [row.event or {} for row in rows]
    arrays: list[pa.Array] = [
        _array(name, [text(event.get(name)) for event in events], pa.string()) for name in STRING_FIELDS
    ]
    arrays += [
        _array(name, [epoch_ms(event.get(name)) for event in events], pa.int64()).cast(TIMESTAMP_TYPE)
        for name in ENVELOPE_TIMES
    ]
    arrays.append(pa.array([row.partition for row in rows], pa.int32()))
    arrays.append(pa.array([row.offset for row in rows], pa.int64()))
    arrays.append(pa.array([None if row.event is not None else row.raw_text() for row in rows], pa.string()))
    arrays.append(pa.array([row.error for row in rows], pa.string()))
    by_column, extras = _properties(rows, schema)
    arrays.append(pa.array(extras, pa.string()))
    empty: list[Any] = [None] * len(rows)
    for column, kind in schema.columns.items():
        arrays.append(_array(column, by_column.get(column, empty), ARROW_TYPES[kind]))
    return pa.Table.from_arrays(arrays, schema=arrow_schema(schema))


def build_table(
    rows: Sequence[LakeRow],
    schema: TableSchema,
    on_quarantine: Callable[[LakeRow, str], None] | None = None,
) -> pa.Table:
    """One Arrow table for ``rows``, with every column of ``schema`` (null where absent).

    A row Arrow refuses is kept as ``_raw`` with ``_error`` naming the column and the cause
    (``on_quarantine`` hears of each); the other rows are unaffected."""
    try:
        return _build(rows, schema)
    except ColumnError:
        if len(rows) == 1 and rows[0].event is None:
            raise
    kept = []
    for row in rows:
        try:
            _build([row], schema)
            kept.append(row)
        except ColumnError as exc:
            error = f"not encodable: {exc}"
            if on_quarantine is not None:
                on_quarantine(row, error)
            kept.append(row.quarantined(error))
    return _build(kept, schema)


def column_encodings(names: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The columns that get a dictionary, and the explicit encoding of the others."""
    encodings = {name: "PLAIN" for name in PLAIN_COLUMNS if name in names}
    encodings.update({name: "DELTA_BINARY_PACKED" for name in DELTA_COLUMNS if name in names})
    return [name for name in names if name not in encodings], encodings


def parquet_file(
    table: pa.Table, compression: str = "zstd", timestamp_unit: str | None = "ms"
) -> tuple[bytes, pq.FileMetaData]:
    """``table`` as Parquet with the lake's encodings, and the file's footer (its statistics).
    ``timestamp_unit`` None keeps the table's own (Iceberg's timestamps are microseconds)."""
    sink = pa.BufferOutputStream()
    dictionary, encodings = column_encodings(table.column_names)
    footers: list[pq.FileMetaData] = []
    pq.write_table(
        table,
        sink,
        compression=compression,
        use_dictionary=dictionary,
        column_encoding=encodings,
        row_group_size=ROW_GROUP_ROWS,
        coerce_timestamps=timestamp_unit,
        allow_truncated_timestamps=timestamp_unit is not None,
        metadata_collector=footers,
    )
    return bytes(sink.getvalue().to_pybytes()), footers[0]


def parquet_bytes(table: pa.Table, compression: str = "zstd") -> bytes:
    return parquet_file(table, compression)[0]
