"""A flush's JSON records → the lake's Arrow table in one pass of Arrow's JSON reader.

The per-record path (``records.decode_records`` → ``TableSchema.observe`` → ``encode.build_table``)
costs about 40 µs of Python per event, most of a flush's CPU (docs/lake.md "Where a flush's time
goes"). Arrow's reader parses a batch in C++ at about 5 µs per event; the columns then come out
of it whole. It serves a batch only when the result is provably the table the per-record path
builds — the same columns created in the same order, the same values — and otherwise says so, and
the batch takes the per-record path. A batch is served when:

* every record is one JSON object on one line (it starts with ``{``, holds no newline), Arrow reads
  as many rows as there are records, and none of its floats, nested ones included, is NaN or
  infinite (Arrow reads the literals ``NaN``, ``Inf``, ``Infinity``; orjson refuses them);
* the envelope's string fields are strings and its times are integers (or absent/null);
* every property is, across the batch, all booleans, all strings, or all integers within ±2**53;
  or all numbers within ±2**53 when the property's main column is ``double``, or is new and its
  first value a float (then ints and floats both land in it, cast); nested values, timestamps
  Arrow would infer, larger numbers: per-record path;
* the batch's distinct properties are within ``max_properties`` (so no event is over the cap) and
  the new columns within ``max_columns`` (so nothing goes to ``_extra``).

Equivalence with the per-record path is tested on random messy batches
(``tests/unit/test_lake_columnar.py``).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from core.envelope import STRING_FIELDS, parse_json_event
from core.lake.encode import ARROW_TYPES, ERROR, EXTRA, RAW, TIMESTAMP_TYPE, arrow_schema, build_table
from core.lake.flush import partition_positions
from core.lake.layout import PartitionValue, partition_for_ms
from core.lake.records import (
    ENVELOPE_TIMES,
    EventDecoder,
    LakeRow,
    RawRecord,
    decode_records,
)
from core.lake.schema import BOOL, DOUBLE, INT, STRING, TableSchema

_ENVELOPE = pa.schema(
    [
        *(pa.field(name, pa.string()) for name in STRING_FIELDS),
        *(pa.field(name, pa.int64()) for name in ENVELOPE_TIMES),
    ]
)
_PARSE = pj.ParseOptions(explicit_schema=_ENVELOPE, unexpected_field_behavior="infer")
_EXACT = 2**53
_LAST_MS = 253_402_300_800_000  # year 10000, as records.partition_value
_HOUR_MS = 3_600_000
_KINDS = {pa.bool_(): BOOL, pa.string(): STRING, pa.int64(): INT, pa.float64(): DOUBLE}


@dataclass(frozen=True)
class Property:
    name: str
    kind: str  # the value class of every non-null value (schema.value_class), DOUBLE when mixed
    values: pa.Array
    first_float: bool  # its first value is a float (that makes a new column double)


@dataclass(frozen=True)
class ParsedBatch:
    """One flush's records of one table, parsed: the envelope columns, the properties in the order
    the per-record path would create their columns, and the Kafka coordinates."""

    envelope: pa.Table
    keys: int  # distinct property names, null-valued ones included (the per-event cap counts them)
    properties: tuple[Property, ...]
    partitions: pa.Array
    offsets: pa.Array
    kafka_ts_ms: pa.Array


def _in_exact_range(values: pa.Array) -> bool:
    low, high = pc.min_max(values).values()
    return low.as_py() is None or (low.as_py() >= -_EXACT and high.as_py() <= _EXACT)


def _properties(parsed: pa.Table, records: Sequence[RawRecord]) -> tuple[int, tuple[Property, ...]] | None:
    if "properties" not in parsed.column_names:
        return 0, ()
    column = parsed.column("properties").combine_chunks()
    if pa.types.is_null(column.type):
        return 0, ()
    if not pa.types.is_struct(column.type):
        return None
    first_rows: dict[int, dict[str, Any]] = {}  # row → its properties, as the per-record path reads them
    found: list[tuple[tuple[int, int], Property]] = []
    for index in range(column.type.num_fields):
        name = column.type.field(index).name
        values = column.field(index)
        if column.null_count:  # a null ``properties`` makes its fields null too
            values = pc.if_else(column.is_valid(), values, pa.nulls(len(values), values.type))
        if pa.types.is_null(values.type) or values.null_count == len(values):
            continue
        kind = _KINDS.get(values.type)
        if kind is None or (kind in (INT, DOUBLE) and not _in_exact_range(values)):
            return None
        # Where the per-record path meets the property first: its first row with a value, then its
        # place among that row's keys (Arrow orders fields by first appearance, nulls included).
        row = pc.index(values.is_valid(), True).as_py()
        if row not in first_rows:
            first_rows[row] = orjson.loads(records[row].raw)["properties"]
        keys = first_rows[row]
        first_float = type(keys[name]) is float
        found.append(((row, list(keys).index(name)), Property(name, kind, values, first_float)))
    return column.type.num_fields, tuple(prop for _, prop in sorted(found, key=lambda item: item[0]))


def parse_batch(records: Sequence[RawRecord]) -> ParsedBatch | None:
    """The records parsed by Arrow, or None when they need the per-record path."""
    if not records:
        return None
    # One list per field rather than zip(*records): the buffered records lie scattered in memory,
    # and zip's striding across them cost 1.0 s of CPU per million records against 0.65 s.
    raws = [record.raw for record in records]
    joined = b"\n".join(raws)
    lines = len(raws) - 1  # each record one line starting with "{": no other newline, none missing
    # Starting with "{", a record cannot start with a byte-order mark either (Arrow skips a leading
    # one, orjson refuses it); one between tokens fails Arrow's parse, one inside a string is the
    # same character to both.
    if joined[:1] != b"{" or joined.count(b"\n") != lines or joined.count(b"\n{") != lines:
        return None
    try:
        reading = pj.ReadOptions(use_threads=False, block_size=len(joined) + 1)
        parsed = pj.read_json(io.BytesIO(joined), read_options=reading, parse_options=_PARSE)
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None
    if parsed.num_rows != len(raws) or any(_non_finite(column) for column in parsed.columns):
        return None
    found = _properties(parsed, records)
    if found is None:
        return None
    return ParsedBatch(
        parsed.select(_ENVELOPE.names),
        *found,
        pa.array([record.partition for record in records], pa.int32()),
        pa.array([record.offset for record in records], pa.int64()),
        pa.array([record.kafka_ts_ms for record in records], pa.int64()),
    )


def _non_finite(values: pa.ChunkedArray) -> bool:
    """Whether any float in ``values``, nested ones included, is NaN or infinite. Arrow reads the
    literals ``NaN``, ``Inf``, ``Infinity`` and their negatives as floats; orjson, the per-record
    decoder, refuses the record (it goes to ``_raw``), so such a batch takes the per-record path.
    Checked on the parsed columns, not by searching the bytes: a string may hold those letters."""
    kind = values.type
    if pa.types.is_floating(kind):
        return pc.all(pc.is_finite(values)).as_py() is False
    if pa.types.is_struct(kind):
        return any(_non_finite(pc.struct_field(values, [index])) for index in range(kind.num_fields))
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _non_finite(pc.list_flatten(values))
    return False


def _kinds(batch: ParsedBatch, schema: TableSchema) -> list[str] | None:
    """Each property's value class as the schema routes it, or None when a value would not land
    where the per-record path puts it (or would go to ``_extra``)."""
    if batch.keys > schema.limits.max_properties:
        return None
    kinds, new = [], 0
    for prop in batch.properties:
        kind = prop.kind
        main = schema.main_type(prop.name)
        if kind == DOUBLE and main != DOUBLE and not (main is None and prop.first_float):
            return None  # its ints would go to an int column, or ints and floats to different ones
        new += schema.needs_column(prop.name, kind)
        kinds.append(kind)
    return kinds if len(schema.columns) + new <= schema.limits.max_columns else None


def observe_parsed(batch: ParsedBatch, schema: TableSchema, where: str = "") -> bool | None:
    """``TableSchema.observe`` for a parsed batch: True when the schema changed, None (and the
    schema untouched) when the batch needs the per-record path."""
    kinds = _kinds(batch, schema)
    if kinds is None:
        return None
    before = schema.shape()
    for prop, kind in zip(batch.properties, kinds, strict=True):
        schema.column_for(prop.name, kind, where)
    return schema.shape() != before


def build_parsed(batch: ParsedBatch, schema: TableSchema) -> pa.Table:
    """``encode.build_table`` of the batch; the schema has observed it (:func:`observe_parsed`)."""
    rows = batch.envelope.num_rows
    arrays: list[pa.Array] = [batch.envelope.column(name).combine_chunks() for name in STRING_FIELDS]
    arrays += [batch.envelope.column(name).combine_chunks().cast(TIMESTAMP_TYPE) for name in ENVELOPE_TIMES]
    arrays += [batch.partitions, batch.offsets, *(pa.nulls(rows, pa.string()) for _ in (RAW, ERROR, EXTRA))]
    by_column: dict[str, pa.Array] = {}
    for prop in batch.properties:
        column = schema.column_for(prop.name, prop.kind)
        assert column is not None, "observe_parsed checked the column cap"
        by_column[column] = prop.values.cast(ARROW_TYPES[schema.columns[column]])
    for column, kind in schema.columns.items():
        arrays.append(by_column.get(column, pa.nulls(rows, ARROW_TYPES[kind])))
    return pa.Table.from_arrays(arrays, schema=arrow_schema(schema))


def partition_columns(
    batch: ParsedBatch, time_source: Literal["server", "client"]
) -> tuple[pa.Array, pa.Array]:
    """``dt`` and ``hour`` of every row, as ``records.partition_value`` gives them."""
    hours, unique, values = _hour_partitions(batch, time_source)
    at = pc.index_in(hours, unique)
    return (
        pa.array([value.dt for value in values], pa.string()).take(at),
        pa.array([value.hour for value in values], pa.string()).take(at),
    )


def _hour_partitions(
    batch: ParsedBatch, time_source: Literal["server", "client"]
) -> tuple[pa.Array, pa.Array, list[PartitionValue]]:
    """Each row's partition hour (whole hours since the epoch), the distinct hours, and the Hive
    partition of each distinct hour."""
    hours = _hours(batch, time_source)
    unique = pc.unique(hours)
    return hours, unique, [partition_for_ms(hour * _HOUR_MS) for hour in unique.to_pylist()]


def _hours(batch: ParsedBatch, time_source: Literal["server", "client"]) -> pa.Array:
    """Each row's partition time in whole hours since the epoch."""
    first, second = ("server_ts", "client_ts") if time_source == "server" else ("client_ts", "server_ts")
    chosen = batch.kafka_ts_ms
    for name in (second, first):  # the first usable one wins: applied last
        values = batch.envelope.column(name).combine_chunks()
        usable = pc.and_(pc.greater_equal(values, 0), pc.less(values, _LAST_MS)).fill_null(False)
        chosen = pc.if_else(usable, values, chosen)
    return pc.floor(pc.divide(chosen.cast(pa.float64()), float(_HOUR_MS))).cast(pa.int64())


class FlushBatch:
    """One table's records of one flush: parsed by Arrow when they can be (JSON records, and
    ``decoder`` the JSON one), decoded one by one (``rows``) otherwise.

    :meth:`observe`, :meth:`would_grow`, :meth:`partition_groups` and :meth:`tables` take the Arrow
    path while it serves the batch under the table's schema, and the per-record path from the first
    time it does not (a schema refreshed after another writer's change can route a property
    differently): the two build the same table, so a batch may switch between planning and writing."""

    def __init__(self, records: Sequence[RawRecord], decoder: EventDecoder = parse_json_event) -> None:
        self.records = records
        self.decoder = decoder
        self._rows: list[LakeRow] | None = None
        self._parsed: ParsedBatch | bool | None = False
        self._declined = False

    def served(self, schema: TableSchema) -> ParsedBatch | None:
        """The parsed batch while the Arrow path serves it under ``schema``, else None."""
        parsed = None if self._declined else self.parsed
        if parsed is not None and _kinds(parsed, schema) is None:
            self._declined, parsed = True, None
        return parsed

    def observe(self, schema: TableSchema, where: str) -> ParsedBatch | None:
        """``TableSchema.observe`` of every record of the batch; the parsed batch when the Arrow
        path served it (None: the records were decoded one by one, :attr:`rows`)."""
        parsed = self.served(schema)
        if parsed is not None and observe_parsed(parsed, schema, where) is not None:
            return parsed
        self._declined = True
        schema.observe((row.properties for row in self.rows), where)
        return None

    def would_grow(self, schema: TableSchema) -> bool:
        """Whether :meth:`observe` would add a column to ``schema``."""
        parsed = None if self._declined else self.parsed
        kinds = None if parsed is None else _kinds(parsed, schema)
        if parsed is None or kinds is None:  # observe will take the per-record path
            return schema.would_grow(row.properties for row in self.rows)
        return any(
            schema.needs_column(p.name, kind) for p, kind in zip(parsed.properties, kinds, strict=True)
        )

    def partition_groups(
        self, schema: TableSchema, time_source: Literal["server", "client"]
    ) -> dict[PartitionValue, list[int]]:
        """The positions of the batch's records in each Hive partition, in record order."""
        parsed = self.served(schema)
        if parsed is None:
            return partition_positions(self.rows, time_source)
        hours, unique, values = _hour_partitions(parsed, time_source)
        if len(values) == 1:
            return {values[0]: list(range(len(hours)))}
        return {
            value: pc.indices_nonzero(pc.equal(hours, hour)).to_pylist()
            for hour, value in zip(unique, values, strict=True)
        }

    def tables(
        self,
        schema: TableSchema,
        groups: Sequence[Sequence[int]],
        on_quarantine: Callable[[LakeRow, str], None] | None = None,
    ) -> list[pa.Table]:
        """``encode.build_table`` of the records at each group of positions; ``schema`` has observed
        the batch. A parsed batch is built once and taken apart."""
        parsed = self.served(schema)
        if parsed is None:
            return [build_table([self.rows[i] for i in group], schema, on_quarantine) for group in groups]
        built = build_parsed(parsed, schema)
        return [
            built if len(group) == built.num_rows else built.take(pa.array(group, pa.int64()))
            for group in groups
        ]

    @property
    def rows(self) -> list[LakeRow]:
        if self._rows is None:
            self._rows = decode_records(self.records, self.decoder)
        return self._rows

    @property
    def parsed(self) -> ParsedBatch | None:
        if self._parsed is False:
            self._parsed = parse_batch(self.records) if self.decoder is parse_json_event else None
        return self._parsed  # type: ignore[return-value]

    def where(self, lane: str, table: str) -> str:
        """Where the batch starts, for the schema's change history."""
        first = self.records[0] if self.records else None
        return f"{lane}.{table}@{first.partition}:{first.offset}" if first else ""
