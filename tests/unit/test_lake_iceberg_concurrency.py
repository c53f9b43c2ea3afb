"""The Iceberg commit path with many tables committed at once on the real edge (a ``file://`` lake,
the SQLite catalog, ``lake_flush_concurrency`` threads): a table whose commit fails, or lands with
its answer lost, must not lose or double any row of its own or of the tables committed beside it."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest
from pyiceberg.table import CommitTableResponse, Table
from pyiceberg.table.update import TableRequirement, TableUpdate

from connectors.iceberg_catalog import LakeTables, catalog_path, lake_root
from connectors.iceberg_io import FILE_IO_IMPL, LakeSqlCatalog
from connectors.iceberg_lake import IcebergLake
from connectors.lake_reader import lake_columns
from core.lake.flush import PartitionBuffer
from core.lake.iceberg_commit import IcebergCommitter
from core.lake.records import RawRecord
from core.settings import Settings

TABLES = [f"t{index:02d}" for index in range(24)]
FAILING = {"t03", "t11", "t17"}  # the catalog refuses their commit: nothing lands
ANSWER_LOST = {"t05", "t20"}  # their commit lands, the writer hears an error
ROWS = 30


class FlakyCatalog(LakeSqlCatalog):
    def __init__(self, name: str, **properties: str) -> None:
        super().__init__(name, **properties)
        self.failing: set[str] = set()
        self.answer_lost: set[str] = set()

    def commit_table(
        self, table: Table, requirements: tuple[TableRequirement, ...], updates: tuple[TableUpdate, ...]
    ) -> CommitTableResponse:
        name = table.name()[-1]
        if name in self.failing:
            raise OSError(f"{name}: catalog away")
        response = super().commit_table(table, requirements, updates)
        if name in self.answer_lost:
            raise OSError(f"{name}: answer lost")
        return response


class Offsets:
    def __init__(self) -> None:
        self.committed: dict[tuple[str, int], int] = {}

    def commit(self, offsets: Any) -> None:
        self.committed.update(offsets)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(16) as executor:
        yield executor


def filled(tp: tuple[str, int], offsets: range) -> PartitionBuffer:
    buffer = PartitionBuffer(*tp)
    for offset in offsets:
        event = {"event_id": f"{tp[0]}/{tp[1]}/{offset}", "event_name": tp[0]}
        buffer.add(RawRecord(tp[1], offset, 0, orjson.dumps(event)), 0.0)
    return buffer


def test_a_failed_or_unanswered_table_among_many_concurrent_commits_loses_and_doubles_nothing(
    tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    settings = Settings(
        lake_uri=f"file://{tmp_path}/lake", lanes=["l"], lake_format="iceberg", lake_flush_concurrency=16
    )
    path = catalog_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    catalog = FlakyCatalog(
        "highway",
        uri=f"sqlite:///{path}?timeout=60",
        warehouse=lake_root(settings),
        **{"py-io-impl": FILE_IO_IMPL},
    )
    lake = IcebergLake(settings, {}, LakeTables(settings, catalog))
    committer = IcebergCommitter(settings, lake, pool)
    tps = [(f"l.event.{table}", partition) for table in TABLES for partition in (0, 1)]
    committer.recover(tps)
    offsets = Offsets()
    first = {tp: filled(tp, range(ROWS)) for tp in tps}
    assert committer.flush(first.values(), offsets).rows == 2 * ROWS * len(TABLES)  # tables created
    catalog.failing, catalog.answer_lost = set(FAILING), set(ANSWER_LOST)
    second = {tp: filled(tp, range(ROWS, 2 * ROWS)) for tp in tps}

    result = committer.flush(second.values(), offsets)

    troubled = FAILING | ANSWER_LOST
    assert result.unsettled == "flush"
    assert result.rows == 2 * ROWS * (len(TABLES) - len(troubled))
    for tp, buffer in second.items():
        table = tp[0].rsplit(".", 1)[1]
        assert len(buffer.rows) == (ROWS if table in troubled else 0), tp
        assert offsets.committed[tp] == (ROWS if table in troubled else 2 * ROWS), tp

    catalog.failing, catalog.answer_lost = set(), set()
    retried = committer.flush([second[tp] for tp in tps if tp[0].rsplit(".", 1)[1] in troubled], offsets)
    # The failed tables commit now; the landed ones are found in the lake (their offsets moved on)
    # and their buffers dropped instead of written twice.
    assert retried.rows == 2 * ROWS * len(FAILING)
    lost = {tp for tp in tps if tp[0].rsplit(".", 1)[1] in ANSWER_LOST}
    assert committer.take_fenced() == dict.fromkeys(lost, 2 * ROWS)
    assert all(not buffer.rows for buffer in second.values())

    ids = lake_columns(settings, "l", ["event_id"]).column("event_id").to_pylist()
    expected = [f"{topic}/{partition}/{offset}" for topic, partition in tps for offset in range(2 * ROWS)]
    assert sorted(ids) == sorted(expected)
