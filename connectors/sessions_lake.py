"""The sessions tables in the Iceberg lake: fenced appends that carry the sessionizers' checkpoints.

:class:`IcebergSessionTables` is the :class:`core.sessions.commit.SessionTables` of the sessions
stage. One table per lane, ``<namespace>.sessions`` at ``<lake>/<lane>/sessions``, partitioned by
``dt``/``hour`` of ``session_start``. Each commit is one fast append whose snapshot summary holds the
full map of checkpoints, ``highway.sessions`` = JSON ``{"<topic>/<partition>": checkpoint}``
(``core.sessions.model.Checkpoint``): rows and the checkpoints that vouch for them are visible
together or not at all. The fencing check and the retry on a concurrent commit are those of the
event tables (``connectors.iceberg_lake``): the catalog compare-and-swaps the head.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.types import (
    DoubleType,
    IcebergType,
    IntegerType,
    LongType,
    NestedField,
    StringType,
    TimestamptzType,
)

from connectors.iceberg_catalog import LakeTables
from connectors.iceberg_files import write_data_files
from connectors.iceberg_lake import append_snapshot, conform, head_summaries
from core.sessions.commit import SessionTables
from core.sessions.model import Checkpoint, ClosedSession, decode_checkpoints, encode_checkpoints
from core.sessions.rows import COLUMNS, SESSIONS_TABLE, sessions_table
from core.settings import Settings

log = logging.getLogger(__name__)
CHECKPOINTS_PROPERTY = "highway.sessions"
MAX_ATTEMPTS = 50
_ICEBERG: dict[str, IcebergType] = {
    "string": StringType(),
    "timestamp[ms, tz=UTC]": TimestamptzType(),
    "double": DoubleType(),
    "int64": LongType(),
    "int32": IntegerType(),
}


def sessions_schema() -> Schema:
    fields = [
        NestedField(index, name, _ICEBERG[str(kind)], required=False)
        for index, (name, kind) in enumerate(COLUMNS, 1)
    ]
    return Schema(*fields)


def table_checkpoints(table: Table) -> dict[str, Checkpoint]:
    """The checkpoints of the newest snapshot that has them (compaction's snapshots do not)."""
    for summary in head_summaries(table):
        if CHECKPOINTS_PROPERTY in summary:
            return decode_checkpoints(summary[CHECKPOINTS_PROPERTY])
    return {}


class IcebergSessionTables(SessionTables):
    def __init__(self, settings: Settings, tables: LakeTables | None = None) -> None:
        self.settings = settings
        self.tables = tables or LakeTables(settings)
        self.retries = 0

    def head(self, lane: str) -> dict[str, Checkpoint]:
        found = self.tables.load(lane, SESSIONS_TABLE)
        return {} if found is None else table_checkpoints(found)

    def append(
        self,
        lane: str,
        rows: Sequence[ClosedSession],
        expected: Mapping[str, Checkpoint | None],
        written: Mapping[str, Checkpoint],
    ) -> bool:
        table = self.tables.known(lane, SESSIONS_TABLE) or self.tables.ensure(
            lane, SESSIONS_TABLE, schema=sessions_schema()
        )
        data = conform(sessions_table(lane, rows), table.schema().as_arrow())
        files = write_data_files(table.metadata, table.io, data) if rows else []
        for attempt in range(MAX_ATTEMPTS):
            head = table if attempt == 0 else table.refresh()
            current = table_checkpoints(head)
            refused = sorted(key for key, value in expected.items() if current.get(key) != value)
            if refused:
                log.warning("sessions: %s fenced on %s", lane, refused)
                return False
            properties = {CHECKPOINTS_PROPERTY: encode_checkpoints({**current, **written})}
            try:
                append_snapshot(head, files, properties)
                return True
            except CommitFailedException as exc:
                self.retries += 1
                log.info("sessions: %s commit met a concurrent writer (%s); retrying", lane, exc)
                time.sleep(min(0.05 * 2**attempt, 1.0))
        raise CommitFailedException(f"{lane}.{SESSIONS_TABLE}: no commit after {MAX_ATTEMPTS} attempts")

    def read(self, lane: str, columns: Sequence[str] | None = None) -> pa.Table:
        """The lane's sessions (``columns`` only, when given; empty when there is no table yet)."""
        found = self.tables.load(lane, SESSIONS_TABLE)
        if found is None:
            wanted = [(name, kind) for name, kind in COLUMNS if columns is None or name in columns]
            return pa.table({name: pa.array([], kind) for name, kind in wanted})
        return found.scan(selected_fields=tuple(columns) if columns else ("*",)).to_arrow()
