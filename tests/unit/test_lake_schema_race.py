"""Two parquet writers of one table creating columns at the same instant (``core.lake.schema_store``):
the schema write is a compare-and-swap settled before the data files, so no writer's columns are
lost and no file contradicts the table."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from core.lake.commit import LakeCommitter
from core.lake.encode import arrow_schema
from core.lake.flush import PartitionBuffer
from core.lake.records import RawRecord
from core.lake.schema import DOUBLE, INT, STRING, TableSchema
from core.settings import Settings
from tests.unit.test_lake_protocol import World
from tests.unit.test_lake_shapes import TS, event


class RacingWorld(World):
    """A store where each writer's first schema write waits until the other writer has reached its
    own: both decided their new columns from the same (absent) stored schema — the worst instant."""

    def __init__(self, writers: int) -> None:
        super().__init__()
        self.barrier = threading.Barrier(writers)
        self.waited: set[int] = set()
        self.schema_writes = 0

    def _schema_race(self, key: str) -> None:
        if key.endswith("_schema.json"):
            self.schema_writes += 1
            if threading.get_ident() not in self.waited:
                self.waited.add(threading.get_ident())
                self.barrier.wait(timeout=10)

    def put(self, key: str, data: bytes) -> None:
        self._schema_race(key)
        super().put(key, data)

    def put_if(self, key: str, data: bytes, tag: str | None) -> str:
        self._schema_race(key)
        return super().put_if(key, data, tag)


RACING_PROPS: list[list[dict[str, Any]]] = [
    # the same property with conflicting types, colliding names, and columns only one writer has
    [{"x": 7, "a.b": 1, "n": 1, "only_a": "s"}, {"x": 8, "n": 2}, {"x": None, "a.b": 3}],
    [{"x": "seven", "a_b": 2.5, "n": 2.5, "only_b": True}, {"x": "eight"}, {"n": "many", "a_b": 0.5}],
]


def race(world: World, props: list[list[dict[str, Any]]]) -> tuple[list[LakeCommitter], list[int]]:
    """One writer per partition of ``l.event.a``, each flushing its ``props`` at the same time; the
    writers and the rows each flush landed."""
    settings = Settings(lake_uri="file:///nonexistent/lake", lanes=["l"], lake_format="parquet")
    pools = [ThreadPoolExecutor(2) for _ in props]
    try:
        writers = [LakeCommitter(settings, world, None, pool) for pool in pools]
        buffers = []
        for partition, (writer, values) in enumerate(zip(writers, props, strict=True)):
            writer.recover([("l.event.a", partition)])
            buffer = PartitionBuffer("l.event.a", partition)
            for offset, properties in enumerate(values):
                buffer.add(RawRecord(partition, offset, TS, event(offset, properties)), now=0.0)
            buffers.append(buffer)
        with ThreadPoolExecutor(len(props)) as racers:
            flushes = [racers.submit(w.flush, [b], world) for w, b in zip(writers, buffers, strict=True)]
            return writers, [flush.result(timeout=30).rows for flush in flushes]
    finally:
        for pool in pools:
            pool.shutdown()


def values_kept(world: World, stored: TableSchema) -> dict[tuple[int, str], int]:
    """(partition, property) → how many non-null values of it the data files hold, checking on the
    way that every file's property columns have the table's physical types."""
    table_types = arrow_schema(stored)
    kept: dict[tuple[int, str], int] = {}
    for key, data in world.objects.items():
        if not key.endswith(".parquet"):
            continue
        file = pq.read_table(pa.BufferReader(data))
        for field in file.schema:
            if field.name.startswith("p_"):
                assert field.type == table_types.field(field.name).type, (key, field.name)
        for row in file.to_pylist():
            assert row["_raw"] is None
            for name, owned in stored.properties.items():
                found = sum(1 for column in owned.values() if row.get(column) is not None)
                kept[(row["_kafka_partition"], name)] = kept.get((row["_kafka_partition"], name), 0) + found
    return kept


def test_two_writers_racing_new_columns_of_one_table_keep_every_column_and_row() -> None:
    """Two writers create columns for one table at the same instant, with conflicting types: the
    schema write is a compare-and-swap, so the later one merges the stored decisions, routes its
    rows again and only then writes its files. Every file's physical types are the final table's,
    both writers hold the stored decisions, and every row and value is kept."""
    world = RacingWorld(2)
    writers, rows = race(world, RACING_PROPS)
    assert rows == [3, 3]
    assert world.schema_writes == 3, "the refused writer must merge and write once more"
    stored = TableSchema.from_bytes(world.objects["l/a/_schema.json"])
    for writer in writers:  # what each holds is the stored decisions (the winner lacks the later ones)
        mine = writer.schemas[("l", "a")]
        assert {column: stored.columns[column] for column in mine.columns} == mine.columns
        assert all(
            stored.properties[name] | owned == stored.properties[name]
            for name, owned in mine.properties.items()
        )
    assert {"x", "a.b", "a_b", "n", "only_a", "only_b"} <= set(stored.properties)
    assert len({column.lower() for column in stored.columns}) == len(stored.columns)
    kept = values_kept(world, stored)
    assert world.lake_offsets() == {("l.event.a", 0): [0, 1, 2], ("l.event.a", 1): [0, 1, 2]}
    for partition, props in enumerate(RACING_PROPS):
        for name in {name for values in props for name in values}:
            expected = sum(1 for values in props if values.get(name) is not None)
            assert kept.get((partition, name), 0) == expected, (partition, name)


def test_a_schema_write_refused_because_the_object_is_gone_writes_it_anew() -> None:
    world = World()
    settings = Settings(lake_uri="file:///nonexistent/lake", lanes=["l"], lake_format="parquet")
    with ThreadPoolExecutor(2) as pool:
        writer = LakeCommitter(settings, world, None, pool)
        writer.recover([("l.event.a", 0)])
        shapes: list[dict[str, Any]] = [{"x": 1}, {"y": "a"}, {"z": 2.5}]
        for offset, props in enumerate(shapes):
            if offset == 2:
                del world.objects["l/a/_schema.json"]  # removed behind the writer's back
            buffer = PartitionBuffer("l.event.a", 0)
            buffer.add(RawRecord(0, offset, TS, event(offset, props)), now=0.0)
            assert writer.flush([buffer], world).rows == 1
    stored = TableSchema.from_bytes(world.objects["l/a/_schema.json"])
    assert stored.columns == {"p_x": INT, "p_y": STRING, "p_z": DOUBLE}
