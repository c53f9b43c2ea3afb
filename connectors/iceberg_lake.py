"""The Iceberg lake's write edge: rows → data files → one fenced snapshot per table and flush.

:class:`IcebergLake` is the :class:`core.lake.ports.SnapshotTables` of ``core.lake.iceberg_commit``.
An append, for one table:

1. **columns** — the table's column decisions are a :class:`core.lake.schema.TableSchema` (fixed
   types, typed siblings, injective names, caps), kept in the table property ``highway.schema``;
   a batch that needs new columns adds them and the updated property in one schema commit (a
   concurrent change makes it fail, and the plan is redone on the new head);
2. **data files** — written once (Parquet, split by the ``dt``/``hour`` partitions); invisible to
   every reader until a snapshot references them;
3. **fenced commit** — on the head (the first attempt on the one this process last saw, with no
   catalog round trip; every retry on one just read): if its offsets
   (``highway.offsets``) of the partitions written differ from what the writer recovered or last
   committed, another writer owns them: return *fenced*, commit nothing. Else commit a fast append
   whose summary carries the head's map moved to the new offsets. The catalog compare-and-swaps the
   metadata location, so a writer that committed in between makes this attempt fail; then step 3
   runs again on the refreshed head.

Files of an attempt that never committed stay unreferenced: ``connectors.iceberg_maintenance``
removes them after a safety window.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Executor
from typing import Any

import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table, Transaction
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.snapshots import ancestors_of
from pyiceberg.table.update import TableUpdate, update_table_metadata
from pyiceberg.utils.concurrent import ExecutorFactory

from connectors.iceberg_catalog import ICEBERG_TYPES, LakeTables, property_kinds
from connectors.iceberg_files import write_data_files
from core.lake.columnar import FlushBatch, ParsedBatch, build_parsed, partition_columns
from core.lake.encode import build_table
from core.lake.offsets import OFFSETS_PROPERTY, advanced, encode_offsets, fenced, latest_offsets
from core.lake.ports import TableAppend
from core.lake.records import LakeRow, partition_value
from core.lake.schema import ShapeLimits, TableSchema
from core.settings import Settings

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 50
ENCODE_CHUNK_ROWS = 50_000
"""Rows of one table turned into Arrow per task. A flush's biggest table — a lane's common table holds
every event's projection, as many rows as all its other tables together — was one thread's serial
work that ran on alone after every other table had committed: the last ~9 s of a 28 s flush in the
soak at 4,000 events/s (py-spy; docs/operations.md). In chunks it runs beside the small tables."""
SCHEMA_PROPERTY = "highway.schema"


def head_summaries(table: Table) -> Iterable[Mapping[str, str]]:
    """Snapshot summaries from the head back through its ancestors."""
    for snapshot in ancestors_of(table.current_snapshot(), table.metadata):
        summary = snapshot.summary
        yield {} if summary is None else dict(summary.additional_properties)


def table_offsets(table: Table) -> dict[str, int]:
    return latest_offsets(head_summaries(table))


class ViewOnceTransaction(Transaction):
    """pyiceberg's transaction with its metadata view computed once per staged change. The base class
    re-applies every staged update and deep-copies the whole table metadata (every live snapshot) on
    each access of ``table_metadata`` — about fifteen times per fast append, most of a commit's CPU.
    The metadata models are frozen, so one view can be shared until the base or the updates change."""

    _view: tuple[TableMetadata, tuple[TableUpdate, ...], TableMetadata] | None = None

    @property
    def table_metadata(self) -> TableMetadata:
        view = self._view
        if view is None or view[0] is not self._table.metadata or view[1] is not self._updates:
            base, updates = self._table.metadata, self._updates
            view = (base, updates, update_table_metadata(base, updates) if updates else base)
            self._view = view
        return view[2]


def append_snapshot(head: Table, files: Iterable[DataFile], properties: dict[str, str]) -> None:
    """One fast-append snapshot of ``files`` on ``head`` whose summary carries ``properties`` (the
    offsets or checkpoints it vouches for); ``CommitFailedException`` when the table moved past ``head``."""
    transaction = ViewOnceTransaction(head)
    with transaction.update_snapshot(snapshot_properties=properties).fast_append() as append:
        for data_file in files:
            append.append_data_file(data_file)
    transaction.commit_transaction()


def conform(data: pa.Table, target: pa.Schema) -> pa.Table:
    """``data`` with exactly ``target``'s columns and types (missing ones null)."""
    columns = []
    for target_field in target:
        if target_field.name in data.column_names:
            columns.append(data.column(target_field.name).cast(target_field.type))
        else:
            columns.append(pa.nulls(data.num_rows, target_field.type))
    return pa.Table.from_arrays(columns, schema=target)


def _quarantined(row: LakeRow, error: str) -> None:
    log.warning("lake: offset %s of partition %s kept as _raw: %s", row.offset, row.partition, error)


def arrow_rows(settings: Settings, rows: Sequence[LakeRow], schema: TableSchema) -> pa.Table:
    """The rows as Arrow with the ``dt``/``hour`` partition columns."""
    data = build_table(rows, schema, _quarantined)
    values = [partition_value(row, settings.lake_partition_time) for row in rows]
    data = data.append_column("dt", pa.array([value.dt for value in values], pa.string()))
    return data.append_column("hour", pa.array([value.hour for value in values], pa.string()))


def parsed_rows(settings: Settings, parsed: ParsedBatch, schema: TableSchema) -> pa.Table:
    """:func:`arrow_rows` of a batch Arrow's JSON reader parsed (``core.lake.columnar``)."""
    dt, hour = partition_columns(parsed, settings.lake_partition_time)
    return build_parsed(parsed, schema).append_column("dt", dt).append_column("hour", hour)


def arrow_chunks(
    settings: Settings,
    rows: Sequence[LakeRow],
    schema: TableSchema,
    executor: Executor,
    chunk_rows: int = ENCODE_CHUNK_ROWS,
) -> pa.Table:
    """:func:`arrow_rows` of a big batch in chunks on ``executor``, concatenated (the same table).
    ``schema`` has observed every row, so the chunks only read its column decisions."""
    if len(rows) <= chunk_rows:
        return arrow_rows(settings, rows, schema)
    chunks = [rows[start : start + chunk_rows] for start in range(0, len(rows), chunk_rows)]
    return pa.concat_tables(executor.map(lambda chunk: arrow_rows(settings, chunk, schema), chunks))


class IcebergLake:
    """Fenced appends and offset recovery on the lake's Iceberg tables."""

    def __init__(
        self, settings: Settings, overrides: Mapping[str, TableSchema], tables: LakeTables | None = None
    ) -> None:
        self.settings = settings
        self.overrides = overrides
        self.tables = tables or LakeTables(settings)
        self.retries = 0  # commits that met a concurrent writer and were tried again

    def head_offsets(self, lane: str, table: str) -> dict[str, int]:
        found = self.tables.load(lane, table)
        return {} if found is None else table_offsets(found)

    def append(
        self,
        lane: str,
        table: str,
        batch: FlushBatch,
        expected: Mapping[str, int | None],
        written: Mapping[str, int],
    ) -> TableAppend:
        target = self._prepared(lane, table, batch)
        files = write_data_files(target[0].metadata, target[0].io, target[1])
        size = sum(data_file.file_size_in_bytes for data_file in files)
        for attempt in range(MAX_ATTEMPTS):
            # The first attempt commits on the head the columns were planned on: if anything was
            # committed since, the catalog's compare-and-swap refuses it and the retry refreshes.
            head = target[0] if attempt == 0 else target[0].refresh()
            offsets = table_offsets(head)
            refused = fenced(offsets, expected)
            if refused:
                log.warning("lake: %s.%s fenced on %s (head %s)", lane, table, refused, offsets)
                return TableAppend(fenced=tuple(refused))
            properties = {OFFSETS_PROPERTY: encode_offsets(advanced(offsets, written))}
            try:
                append_snapshot(head, files, properties)
                return TableAppend(files=len(files), bytes=size)
            except CommitFailedException as exc:
                self.retries += 1
                log.info("lake: %s.%s commit met a concurrent writer (%s); retrying", lane, table, exc)
                time.sleep(min(0.05 * 2**attempt, 1.0))
        raise CommitFailedException(f"{lane}.{table}: no commit after {MAX_ATTEMPTS} attempts")

    def _prepared(self, lane: str, table: str, batch: FlushBatch) -> tuple[Table, pa.Table]:
        """The table with every column the rows need, and the rows as Arrow in its schema."""
        where = batch.where(lane, table)
        # Planned first on the head this process last saw (its own last commit or load), without a
        # catalog round trip: if anything was committed since, the append's compare-and-swap refuses
        # it and the retry reads the head. Columns are only ever changed on a head just read.
        current = self.tables.known(lane, table)
        fresh = current is None
        for _ in range(MAX_ATTEMPTS):
            if fresh:
                current = self.tables.load(lane, table)
            schema = self._schema_of(table, current)
            parsed = batch.observe(schema, where)  # None: the per-record path (core.lake.columnar)
            encoded = schema.to_bytes(table).decode()
            if current is None:  # created with the batch's columns: one metadata commit, not two
                current = self.tables.ensure(lane, table, schema.columns, {SCHEMA_PROPERTY: encoded})
                if current.properties.get(SCHEMA_PROPERTY) != encoded:
                    continue  # another writer created it first: plan again on its table
            elif current.properties.get(SCHEMA_PROPERTY) != encoded:
                if not fresh:
                    fresh = True
                    continue
                have = set(current.schema().column_names)
                try:
                    transaction = ViewOnceTransaction(current)
                    with transaction.update_schema() as update:
                        for column, kind in schema.columns.items():
                            if column not in have:
                                update.add_column(column, ICEBERG_TYPES[kind])
                    transaction.set_properties({SCHEMA_PROPERTY: encoded})
                    transaction.commit_transaction()
                except CommitFailedException:
                    self.retries += 1
                    continue  # another writer changed the table: plan again on the new head
            # pyiceberg's own executor (it writes the data files): not the flush's pool, whose threads
            # wait here — tasks queued behind them there could deadlock a full pool.
            if parsed is not None:
                data = parsed_rows(self.settings, parsed, schema)
            else:
                data = arrow_chunks(self.settings, batch.rows, schema, ExecutorFactory.get_or_create())
            return current, conform(data, current.schema().as_arrow())
        raise CommitFailedException(f"{lane}.{table}: schema kept changing under {MAX_ATTEMPTS} attempts")

    def _schema_of(self, table: str, current: Table | None) -> TableSchema:
        """The table's column decisions: stored with it, else adopted from its columns (a table
        written before they were stored), then an override's declarations where they do not clash."""
        stored = current.properties.get(SCHEMA_PROPERTY) if current is not None else None
        if stored:
            schema = TableSchema.from_bytes(stored.encode())
        elif current is not None:
            schema = TableSchema(property_kinds(current.schema()))
        else:
            schema = TableSchema()
        override = self.overrides.get(table)
        if override is not None:
            schema.merge(override)
        schema.limits = ShapeLimits(
            self.settings.lake_max_properties_per_event, self.settings.lake_max_columns_per_table
        )
        return schema

    def read(self, lane: str, table: str, columns: Sequence[str] | None = None, **scan: Any) -> pa.Table:
        """A table's rows (``columns`` only, when given) as Arrow; empty when it does not exist."""
        found = self.tables.load(lane, table)
        if found is None:
            return pa.table({name: pa.array([], pa.string()) for name in columns or ()})
        fields = tuple(columns) if columns else ("*",)
        return found.scan(selected_fields=fields, **scan).to_arrow()
