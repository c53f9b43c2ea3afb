"""The exactly-once protocol of the lake, driven through the REAL commit path (``core.lake.commit``).

In-memory fakes of the object store, the catalog and the Kafka offsets record every call in one
ordered log and fail at a chosen step: each manifest intent, the schema's conditional put, each data-file put,
each manifest put, the catalog, the offset commit — or let the call land and lose its answer. After a
failure at step k nothing of a later step may have happened, the buffers not vouched for by a
manifest must be intact, and a retry — or a crash and a replay from the manifests with other batch
boundaries — must land every row exactly once. The store's conditional writes are modelled (a
version tag per object, checked and written under one lock), so stale writers — zombies that lost
their partitions to a newer claim — are driven against the same store and must be fenced.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.lake.commit import LakeCommitter
from core.lake.fence import recover_partition
from core.lake.flush import PartitionBuffer
from core.lake.layout import PartitionValue, manifest_key, parse_data_file, partition_for_ms
from core.lake.manifest import Manifest, orphan_files
from core.lake.ports import PreconditionFailed
from core.lake.records import RawRecord
from core.lake.schema import TableSchema
from core.settings import Settings

HOUR_MS = 3_600_000
BASE_MS = 1_800_000_000_000
SETTINGS = Settings(lake_uri="file:///nonexistent/lake", lanes=["l"], lake_format="parquet")
HOURS = {partition_for_ms(BASE_MS + hour * HOUR_MS) for hour in range(4)}
TPS = [("l.event.a", 0), ("l.event.a", 1), ("l.event.b", 0)]
STEPS = {"claim": 0, "intent": 1, "schema": 2, "data": 3, "manifest": 4, "catalog": 5, "offsets": 6}


class Boom(Exception):
    """The injected failure."""


class World:
    """Store, catalog and offsets sharing one ordered log of (step, key) and one failure switch."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.log: list[tuple[str, str]] = []
        self.fail: tuple[str, str] | None = None  # (step, key) to fail at; key "" = any
        self.lose: tuple[str, str] | None = None  # (step, key) whose call lands but whose answer is lost
        self.committed: dict[tuple[str, int], int] = {}
        self.registered: set[tuple[str, PartitionValue]] = set()
        self.forgotten: list[str] = []
        self.listed: list[str] = []  # every prefix listed
        self.deleted: list[str] = []  # every key deleted
        self._lock = threading.RLock()

    def _call(self, step: str, key: str) -> None:
        with self._lock:
            if self.fail is not None and self.fail[0] == step and self.fail[1] in ("", key):
                raise Boom(f"{step} {key}")
            self.log.append((step, key))

    def _answer(self, step: str, key: str) -> None:
        if self.lose is not None and self.lose[0] == step and self.lose[1] in ("", key):
            raise Boom(f"answer lost: {step} {key}")

    # ObjectStore
    def put(self, key: str, data: bytes) -> None:
        self._call("data", key)
        self.objects[key] = data
        self._answer("data", key)

    def get(self, key: str) -> bytes | None:
        return self.objects.get(key)

    def get_tagged(self, key: str) -> tuple[bytes, str] | None:
        with self._lock:
            data = self.objects.get(key)
            return None if data is None else (data, tag_of(data))

    def put_if(self, key: str, data: bytes, tag: str | None) -> str:
        with self._lock:  # the check and the write are one step, as on S3
            current = self.objects.get(key)
            step = "schema" if key.endswith("_schema.json") else manifest_step(current, data)
            self._call(step, key)
            if (None if current is None else tag_of(current)) != tag:
                raise PreconditionFailed(key)
            self.objects[key] = data
        self._answer(step, key)
        return tag_of(data)

    def list_keys(self, prefix: str) -> list[str]:
        self.listed.append(prefix)
        return sorted(key for key in list(self.objects) if key.startswith(prefix))

    def delete(self, key: str) -> None:
        self.deleted.append(key)
        self.objects.pop(key, None)

    # Catalog
    def ensure_table(self, lane: str, table: str, schema: TableSchema) -> None:
        self._call("catalog", table)

    def ensure_partitions(self, lane: str, table: str, values: Iterable[PartitionValue]) -> None:
        self._call("catalog", table)
        self.registered.update((table, value) for value in values)

    def forget(self, lane: str, table: str) -> None:
        self.forgotten.append(table)

    # OffsetStore
    def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        self._call("offsets", "")
        self.committed.update(offsets)

    # What the lake holds: (topic, partition) → offsets, over every stored data file
    def lake_offsets(self) -> dict[tuple[str, int], list[int]]:
        found: dict[tuple[str, int], list[int]] = {}
        for key, data in self.objects.items():
            if parse_data_file(key) is None:
                continue
            table = pq.read_table(pa.BufferReader(data), columns=["_kafka_partition", "_kafka_offset"])
            topic = f"l.event.{key.split('/')[1]}"
            for partition, offset in zip(*(table.column(i).to_pylist() for i in range(2)), strict=True):
                found.setdefault((topic, partition), []).append(offset)
        return {tp: sorted(offsets) for tp, offsets in found.items()}


def tag_of(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def manifest_step(current: bytes | None, new: bytes) -> str:
    """What a manifest write is: a claim (new epoch), an intent (same offsets) or a commit. (A stale
    writer's intent or commit over a newer claim is told apart by offsets only: approximate.)"""
    after = Manifest.from_bytes(new)
    before = Manifest.from_bytes(current) if current is not None else None
    if before is None or after.epoch > before.epoch:
        return "claim"
    return "intent" if before.committed_offset == after.committed_offset else "manifest"


def first_offsets(world: World, tp: tuple[str, int]) -> list[int]:
    """First offsets of the data files of one topic-partition."""
    table = tp[0].rsplit(".", 1)[1]
    names = [parse_data_file(key) for key in world.list_keys(f"l/{table}/")]
    return [name.first_offset for name in names if name is not None and name.partition == tp[1]]


def row(partition: int, offset: int) -> RawRecord:
    # Three Hive partitions interleaved (several files per flush); from offset 10 on, one hour later,
    # so a flush after the first one writes under a Hive partition its manifest does not declare.
    ts = BASE_MS + (offset % 3 + (offset >= 10)) * HOUR_MS
    return RawRecord(
        partition,
        offset,
        ts,
        orjson.dumps(
            {
                "event_id": f"e{offset}",
                "server_ts": ts,
                "properties": {"i": offset, **({"late": 1} if offset >= 10 else {})},
            }
        ),
    )


def committer(world: World, pool: ThreadPoolExecutor) -> LakeCommitter:
    commit = LakeCommitter(SETTINGS, world, world, pool)
    recoveries = commit.recover(TPS)
    assert all(recovery.start_offset is None for recovery in recoveries.values())
    return commit


def filled(first: int, count: int) -> dict[tuple[str, int], PartitionBuffer]:
    buffers = {}
    for topic, partition in TPS:
        buffer = PartitionBuffer(topic, partition)
        for offset in range(first, first + count):
            buffer.add(row(partition, offset), 0.0)
        buffers[(topic, partition)] = buffer
    return buffers


def failure_points(after_first_flush: bool = False) -> list[tuple[str, str]]:
    """Every (step, key) a clean flush of ``filled(0, 30)`` goes through — or, after a first flush of
    ``filled(0, 10)``, a flush of ``filled(10, 20)``."""
    world = World()
    with ThreadPoolExecutor(4) as pool:
        commit = committer(world, pool)
        world.log.clear()  # the claims are recovery's, not the flush's
        if after_first_flush:
            commit.flush(filled(0, 10).values(), world)
            world.log.clear()
            commit.flush(filled(10, 20).values(), world)
        else:
            commit.flush(filled(0, 30).values(), world)
    return sorted(set(world.log), key=lambda call: (STEPS[call[0]], call[1]))


def test_a_clean_flush_runs_the_steps_in_order_and_lands_every_row() -> None:
    world = World()
    with ThreadPoolExecutor(4) as pool:
        result = committer(world, pool).flush(filled(0, 30).values(), world)
    steps = [STEPS[step] for step, _ in world.log]
    assert steps == sorted(steps), world.log  # each step is a barrier
    # No intent: a partition's first claim declares its whole table (nothing else to sweep yet).
    assert set(steps) == set(STEPS.values()) - {STEPS["intent"]}
    assert (result.partitions, result.rows, result.files, result.unsettled) == (3, 90, 12, None)
    assert world.lake_offsets() == {tp: list(range(30)) for tp in TPS}
    assert world.committed == dict.fromkeys(TPS, 30)
    for topic, partition in TPS:
        manifest = Manifest.from_bytes(world.objects[manifest_key("l", topic, partition)])
        assert manifest.committed_offset == 29


@pytest.mark.parametrize(("step", "key"), failure_points())
def test_a_failure_at_any_step_stops_later_steps_keeps_buffers_and_a_retry_lands_rows_once(
    step: str, key: str
) -> None:
    world = World()
    with ThreadPoolExecutor(4) as pool:
        commit = committer(world, pool)
        buffers = filled(0, 30)
        world.fail = (step, key)
        if STEPS[step] <= STEPS["manifest"]:
            with pytest.raises(Boom):
                commit.flush(buffers.values(), world)
        else:
            assert commit.flush(buffers.values(), world).unsettled == step
        later = [call for call in world.log if STEPS[call[0]] > STEPS[step]]
        assert later == [], f"after a failure at {step} {key}: {later}"
        assert world.committed == {}, "Kafka offsets committed before everything else was durable"
        for tp, buffer in buffers.items():
            vouched = (step == "manifest" and key != manifest_key("l", *tp)) or STEPS[step] > STEPS[
                "manifest"
            ]
            assert [r.offset for r in buffer.rows] == ([] if vouched else list(range(30)))
            assert commit.manifests[tp].committed_offset == (29 if vouched else -1)
        # The retry: the failure is gone; more rows have arrived meanwhile.
        world.fail = None
        for tp, buffer in buffers.items():
            for offset in range(30, 40):
                buffer.add(row(tp[1], offset), 0.0)
        assert commit.flush(buffers.values(), world).unsettled is None
        assert commit.settle(world) is None
    assert world.lake_offsets() == {tp: list(range(40)) for tp in TPS}
    assert world.committed == dict.fromkeys(TPS, 40)
    assert world.registered == {(table, value) for table in ("a", "b") for value in HOURS}
    assert all(not buffer.rows for buffer in buffers.values())
    assert not commit.unsettled


@pytest.mark.parametrize(
    ("step", "key"), [p for p in failure_points(after_first_flush=True) if STEPS[p[0]] <= STEPS["manifest"]]
)
def test_a_crash_at_any_step_is_recovered_from_the_manifests(step: str, key: str) -> None:
    world = World()
    with ThreadPoolExecutor(4) as pool:
        first = committer(world, pool)
        first.flush(filled(0, 10).values(), world)  # a complete flush: offsets 0..9 are in the lake
        world.fail = (step, key)
        with pytest.raises(Boom):
            first.flush(filled(10, 20).values(), world)
        # The process dies here. A new one recovers: orphans go, reading resumes after the manifest.
        world.fail = None
        before = set(world.objects)
        restarted = LakeCommitter(SETTINGS, world, world, pool)
        recoveries = restarted.recover(TPS)
        for tp, recovery in recoveries.items():
            vouched = step == "manifest" and key != manifest_key("l", *tp)
            assert recovery.start_offset == (30 if vouched else 10)
            assert recovery.start_offset is not None
            assert max(first_offsets(world, tp)) < recovery.start_offset  # no orphan is left
        assert set().union(*(r.orphans for r in recoveries.values())) == before - set(world.objects)
        # the group's offsets are brought up to the manifests on the next settle
        assert restarted.pending_offsets == {tp: r.start_offset for tp, r in recoveries.items()}
        for tp, recovery in recoveries.items():  # replay with other batch boundaries
            assert recovery.start_offset is not None
            for start in range(recovery.start_offset, 40, 7):
                buffer = PartitionBuffer(*tp)
                for offset in range(start, min(start + 7, 40)):
                    buffer.add(row(tp[1], offset), 0.0)
                restarted.flush([buffer], world)
    assert world.lake_offsets() == {tp: list(range(40)) for tp in TPS}
    assert world.committed == dict.fromkeys(TPS, 40)


def run_with_failures(seed: int) -> World:
    """Random batch sizes, random failures at random steps (before the call, or after it landed with
    its answer lost); after each, a retry or a crash."""
    rng = random.Random(seed)
    world = World()
    end = 150
    with ThreadPoolExecutor(3) as pool:
        commit = LakeCommitter(SETTINGS, world, world, pool)
        buffers: dict[tuple[str, int], PartitionBuffer] = {}
        read: dict[tuple[str, int], int] = {}
        for _attempt in range(400):
            if not buffers:  # (re)start: recover and resume after the manifests
                commit = LakeCommitter(SETTINGS, world, world, pool)
                starts = {tp: r.start_offset or 0 for tp, r in commit.recover(TPS).items()}
                buffers, read = {tp: PartitionBuffer(*tp) for tp in TPS}, dict(starts)
            for tp, buffer in buffers.items():  # more records arrive
                upto = min(read[tp] + rng.randint(0, 40), end)
                for offset in range(read[tp], upto):
                    buffer.add(row(tp[1], offset), 0.0)
                read[tp] = upto
            failure = (rng.choice(list(STEPS)), "") if rng.random() < 0.5 else None
            world.fail, world.lose = (failure, None) if rng.random() < 0.5 else (None, failure)
            try:
                commit.flush(buffers.values(), world)
            except Boom:
                if rng.random() < 0.5:
                    buffers = {}  # crash: whatever is in memory is gone
                continue
            finally:
                world.fail = world.lose = None
            assert not commit.take_fenced(), "a writer alone was fenced by its own lost answers"
            done = all(offset == end for offset in read.values()) and not any(
                b.rows for b in buffers.values()
            )
            if done and commit.settle(world) is None:
                return world
    raise AssertionError("never finished")


@pytest.mark.parametrize("seed", range(30))
def test_every_offset_lands_exactly_once_across_random_failures_retries_and_crashes(seed: int) -> None:
    world = run_with_failures(seed)
    assert world.lake_offsets() == {tp: list(range(150)) for tp in TPS}
    assert world.committed == dict.fromkeys(TPS, 150)


def test_recovery_deletes_only_orphans_above_the_committed_offset() -> None:
    world = World()
    keep = "l/a/dt=2026-01-01/hour=00/part-00002-00000000000000000050.parquet"
    orphan = "l/a/dt=2026-01-01/hour=01/part-00002-00000000000000000100.parquet"
    other = "l/a/dt=2026-01-01/hour=01/part-00001-00000000000000000500.parquet"  # another partition
    for key in (keep, orphan, other, "l/a/_schema.json"):
        world.objects[key] = b"x"
    world.objects[manifest_key("l", "l.event.a", 2)] = Manifest(
        "l.event.a", 2, committed_offset=99
    ).to_bytes()
    recovery = recover_partition(world, "l", "a", "l.event.a", 2)
    assert recovery.orphans == [orphan]
    assert recovery.start_offset == 100
    assert sorted(world.objects) == sorted(
        [keep, other, "l/a/_schema.json", manifest_key("l", "l.event.a", 2)]
    )
    assert recover_partition(world, "l", "b", "l.event.b", 0).start_offset is None  # no manifest yet


def test_manifest_never_moves_back_and_round_trips() -> None:
    manifest = Manifest("t", 0).advanced(10, 11, ["a"]).advanced(20, 10, ["b", "c"])
    again = Manifest.from_bytes(manifest.to_bytes())
    assert again == manifest
    assert again.next_offset == 21
    assert again.rows == 21
    with pytest.raises(ValueError, match="cannot move back"):
        again.advanced(20, 1, [])
    assert orphan_files(again, ["l/t/dt=2026-01-01/hour=00/part-00000-00000000000000000021.parquet"])
    claimed = again.claimed("w").claimed("v")
    assert claimed.ended == ((0, 20), (1, 20))
    assert Manifest.from_bytes(claimed.to_bytes()) == claimed
