"""Fencing of stale lake writers, driven through the REAL commit path against the fake store of
``test_lake_protocol`` (which models S3's conditional writes).

A zombie — a writer whose partitions were claimed by another one while it was cut off, paused or
blocked — must be refused at its next manifest write (or intent), lose nothing, commit no Kafka
offset, delete only the files of its own failed flush, and never a file of the owner's.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from core.lake.commit import LakeCommitter
from core.lake.fence import ManifestGone, recover_partition
from core.lake.flush import PartitionBuffer
from core.lake.layout import manifest_key, parse_data_file
from core.lake.manifest import Manifest
from tests.unit.test_lake_protocol import HOURS, SETTINGS, TPS, Boom, World, committer, filled, row


def data_keys(world: World) -> set[str]:
    return {key for key in world.objects if parse_data_file(key) is not None}


@pytest.mark.parametrize("refused_at", ["intent", "manifest"])
def test_a_stale_writer_is_fenced_loses_nothing_and_deletes_nothing_of_the_new_owner(refused_at: str) -> None:
    world = World()
    with ThreadPoolExecutor(4) as pool:
        stale = committer(world, pool)
        stale.flush(filled(0, 10).values(), world)  # offsets 0..9 in the lake, under epoch 1
        # The stale writer reads on while it is cut off; meanwhile its partitions move on.
        pending = filled(10, 20) if refused_at == "intent" else filled(0, 10)
        if refused_at == "manifest":  # rows under the Hive partitions already declared: no intent
            pending = {tp: PartitionBuffer(*tp) for tp in TPS}
            for tp, buffer in pending.items():
                for offset in (10 + 3 * i for i in range(6)):  # one hour, declared by the first flush
                    buffer.add(row(tp[1], offset), 0.0)
        owner = LakeCommitter(SETTINGS, world, world, pool)
        starts = {tp: r.start_offset for tp, r in owner.recover(TPS).items()}
        assert starts == dict.fromkeys(TPS, 10)
        owner.flush(filled(10, 15).values(), world)  # the owner writes 10..24 under epoch 2
        owners_files = data_keys(world)
        committed_before = dict(world.committed)
        world.log.clear()
        result = stale.flush(pending.values(), world)  # the zombie wakes up and flushes
        assert set(result.fenced) == set(TPS)
        assert stale.take_fenced() == dict.fromkeys(TPS, 25)  # where the owner's manifests resume
        assert stale.fenced_total == 3
        assert (result.partitions, result.rows) == (0, 0)
        steps = {step for step, _ in world.log}
        if refused_at == "intent":
            assert "data" not in steps, "a zombie refused at its intent wrote data files"
        else:
            assert "data" in steps  # it wrote files, then was refused: they are gone again
        assert data_keys(world) == owners_files, "the zombie left a file or removed one of the owner's"
        assert world.committed == committed_before, "a fenced writer committed Kafka offsets"
        assert not stale.manifests
        assert not stale.pending_offsets
        assert all(not buffer.rows for buffer in pending.values())  # dropped: the owner replays them
        for tp in TPS:
            stored = Manifest.from_bytes(world.objects[manifest_key("l", *tp)])
            assert (stored.epoch, stored.owner, stored.committed_offset) == (2, owner.owner, 24)
        owner.flush(filled(25, 15).values(), world)
    assert world.lake_offsets() == {tp: list(range(40)) for tp in TPS}
    assert world.committed == dict.fromkeys(TPS, 40)


def test_a_zombie_recovery_fences_the_owner_and_deletes_only_dead_files() -> None:
    """The other order: a stale writer finishes an old assignment (claims) while the owner is
    mid-flush. The owner is then the one fenced; the claim deletes the owner's unvouched files (they
    can never be vouched for now), never a vouched one, and the rows are replayed once."""
    world = World()
    with ThreadPoolExecutor(4) as pool:
        owner = committer(world, pool)
        owner.flush(filled(0, 10).values(), world)
        vouched = data_keys(world)
        world.fail = ("manifest", "")  # the owner's next flush dies before its manifests ...
        with pytest.raises(Boom):
            owner.flush(filled(10, 10).values(), world)
        world.fail = None
        unvouched = data_keys(world) - vouched
        assert unvouched
        late = LakeCommitter(SETTINGS, world, world, pool)  # ... while a late claim happens
        recoveries = late.recover(TPS)
        assert set().union(*(r.orphans for r in recoveries.values())) == unvouched
        assert data_keys(world) == vouched
        result = owner.flush([PartitionBuffer(*tp) for tp in TPS] + list(filled(10, 10).values()), world)
        assert set(result.fenced) == set(TPS)
        assert data_keys(world) == vouched  # its retry's files went again, nothing else
        for tp, recovery in recoveries.items():
            assert recovery.start_offset == 10
            buffer = PartitionBuffer(*tp)
            for offset in range(10, 40):
                buffer.add(row(tp[1], offset), 0.0)
            late.flush([buffer], world)
    assert world.lake_offsets() == {tp: list(range(40)) for tp in TPS}


def test_a_file_a_zombie_wrote_after_the_claim_and_left_behind_goes_at_the_next_claim() -> None:
    world = World()
    with ThreadPoolExecutor(4) as pool:
        zombie = committer(world, pool)
        zombie.flush(filled(0, 10).values(), world)
        owner = LakeCommitter(SETTINGS, world, world, pool)
        owner.recover(TPS)  # claims at offset 9
        late = {tp: PartitionBuffer(*tp) for tp in TPS}
        for tp, buffer in late.items():  # under an hour the zombie had declared: no intent to refuse
            for offset in range(10, 28, 3):
                buffer.add(row(tp[1], offset), 0.0)
        real_put_if = world.put_if

        def dying(key: str, data: bytes, tag: str | None) -> str:
            if key.endswith("_schema.json"):  # the schema is settled before the files
                return real_put_if(key, data, tag)
            raise Boom(f"the zombie dies before its manifest write {key}")

        world.put_if = dying  # type: ignore[method-assign]
        with pytest.raises(Boom):  # it wrote its files (no intent needed) and dies
            zombie.flush(late.values(), world)
        world.put_if = real_put_if  # type: ignore[method-assign]
        owner.flush(filled(10, 20).values(), world)  # the owner vouches for 10..29 in its own files
        assert world.lake_offsets() != {tp: list(range(30)) for tp in TPS}  # the zombie's rows, twice
        recoveries = LakeCommitter(SETTINGS, world, world, pool).recover(TPS)
        assert all(recovery.orphans for recovery in recoveries.values())
        assert all(parse_data_file(key).epoch == 1 for r in recoveries.values() for key in r.orphans)  # type: ignore[union-attr]
    assert world.lake_offsets() == {tp: list(range(30)) for tp in TPS}


def test_a_lost_answer_to_a_manifest_write_is_not_taken_for_a_fence() -> None:
    world = World()
    with ThreadPoolExecutor(4) as pool:
        commit = committer(world, pool)
        commit.flush(filled(0, 10).values(), world)
        buffers = filled(10, 10)
        world.lose = ("intent", manifest_key("l", *TPS[0]))
        with pytest.raises(Boom):  # the intent landed, its answer did not
            commit.flush(buffers.values(), world)
        world.lose = ("manifest", manifest_key("l", *TPS[1]))
        with pytest.raises(Boom):  # the retry's manifest landed, its answer did not
            commit.flush(buffers.values(), world)
        world.lose = None
        result = commit.flush(buffers.values(), world)
        assert result.fenced == ()
        assert not commit.take_fenced()
        assert commit.settle(world) is None
    assert world.lake_offsets() == {tp: list(range(20)) for tp in TPS}
    assert world.committed == dict.fromkeys(TPS, 20)


def test_a_refusal_of_a_manifest_write_that_had_landed_keeps_the_files_it_vouches_for() -> None:
    """S3 away in mid-write: the manifest PUT lands, its answer is lost, the store retries — and by
    then another writer has claimed the partition (built on the landed manifest), so the retry is
    refused. The refused writer must not delete the files its landed manifest vouches for."""
    world = World()
    with ThreadPoolExecutor(4) as pool:
        stale = committer(world, pool)
        stale.flush(filled(0, 10).values(), world)
        real_put_if = world.put_if
        claimed: list[LakeCommitter] = []

        def land_then_refuse(key: str, data: bytes, tag: str | None) -> str:
            answer = real_put_if(key, data, tag)
            ours = key == manifest_key("l", *TPS[0])
            if ours and Manifest.from_bytes(data).committed_offset == 19 and not claimed:  # no answer:
                claimed.append(LakeCommitter(SETTINGS, world, world, pool))
                claimed[0].recover([TPS[0]])  # meanwhile the partition is claimed ...
                return real_put_if(key, data, answer)  # ... and the store's retry is refused
            return answer

        world.put_if = land_then_refuse  # type: ignore[method-assign]
        result = stale.flush(filled(10, 10).values(), world)
        world.put_if = real_put_if  # type: ignore[method-assign]
        assert result.fenced == (TPS[0],)
        assert stale.take_fenced() == {TPS[0]: 20}  # the owner resumes after the landed write
        owner = claimed[0]
        assert owner.manifests[TPS[0]].committed_offset == 19
        owner.flush({TPS[0]: filled(20, 10)[TPS[0]]}.values(), world)
        stale.flush(filled(20, 10).values(), world)  # the other partitions stay with the stale writer
    assert world.lake_offsets() == {tp: list(range(30)) for tp in TPS}, "rows lost or duplicated"


def test_an_unanswered_manifest_write_is_resolved_before_its_rows_are_written_again() -> None:
    """A manifest write that failed without an answer may have landed. The next flush finds out
    first: landed, its rows leave the buffer (their file is never rewritten with more rows);
    claimed meanwhile by another writer, the partition is fenced without writing anything."""
    world = World()
    with ThreadPoolExecutor(4) as pool:
        stale = committer(world, pool)
        stale.flush(filled(0, 10).values(), world)
        world.lose = ("manifest", "")  # every manifest of this flush lands; no answer arrives
        buffers = filled(10, 10)
        with pytest.raises(Boom):
            stale.flush(buffers.values(), world)
        world.lose = None
        landed = {key: data for key, data in world.objects.items() if parse_data_file(key)}
        owner = LakeCommitter(SETTINGS, world, world, pool)
        assert owner.recover([TPS[0]])[TPS[0]].start_offset == 20  # the claim built on the landed write
        for tp, buffer in filled(20, 5).items():  # the stale writer reads on meanwhile
            for record in buffer.rows:
                buffers[tp].add(record, 0.0)
        world.log.clear()
        result = stale.flush(buffers.values(), world)
        assert result.fenced == (TPS[0],)
        written = {key for step, key in world.log if step == "data"}
        assert not written & set(landed), "a file a landed manifest vouches for was rewritten"
        assert all(f"part-{TPS[0][1]:05d}" not in key or "/a/" not in key for key in written)
        owner.flush({TPS[0]: filled(20, 5)[TPS[0]]}.values(), world)
    assert world.lake_offsets() == {tp: list(range(25)) for tp in TPS}, "rows lost or duplicated"


def test_a_claim_racing_a_last_commit_reads_again_and_keeps_that_commit() -> None:
    world = World()
    with ThreadPoolExecutor(4) as pool:
        stale = committer(world, pool)
        stale.flush(filled(0, 10).values(), world)
        real_get = world.get_tagged
        raced: list[str] = []

        def get_then_race(key: str) -> tuple[bytes, str] | None:
            found = real_get(key)
            if not raced:  # between the claim's read and its write, the old writer commits 10..19
                raced.append(key)
                stale.flush(filled(10, 10).values(), world)
            return found

        world.get_tagged = get_then_race  # type: ignore[method-assign]
        recoveries = LakeCommitter(SETTINGS, world, world, pool).recover([TPS[0]])
    assert recoveries[TPS[0]].start_offset == 20  # the claim read again and kept that commit
    assert recoveries[TPS[0]].orphans == []
    assert world.lake_offsets()[TPS[0]] == list(range(20))


def test_recovery_lists_only_the_declared_hive_partitions_and_a_table_once() -> None:
    world = World()
    with ThreadPoolExecutor(4) as pool:
        commit = committer(world, pool)  # never claimed before: one listing per table, not per partition
        assert sorted(world.listed) == ["l/a/", "l/b/"]
        commit.flush(filled(0, 10).values(), world)
        world.listed.clear()
        LakeCommitter(SETTINGS, world, world, pool).recover(TPS)
    expected = {
        f"l/{tp[0][-1]}/{value.path}/part-{tp[1]:05d}-" for tp in TPS for value in HOURS - {max(HOURS)}
    }
    assert sorted(world.listed) == sorted(expected)


def test_recovery_never_deletes_a_file_of_a_newer_epoch_or_a_vouched_one() -> None:
    world = World()
    manifest = Manifest("l.event.a", 2, committed_offset=99, epoch=4, values=("dt=2026-01-01/hour=01",))
    world.objects[manifest_key("l", "l.event.a", 2)] = manifest.to_bytes()
    base = "l/a/dt=2026-01-01/hour=01/part-00002-"
    vouched = f"{base}00000000000000000050-e000004.parquet"
    dead = f"{base}00000000000000000100-e000004.parquet"
    older_dead = f"{base}00000000000000000120-e000002.parquet"
    newer = f"{base}00000000000000000100-e000009.parquet"  # a later claim's: never ours to delete
    elsewhere = "l/a/dt=2026-01-01/hour=05/part-00002-00000000000000000200-e000004.parquet"
    for key in (vouched, dead, older_dead, newer, elsewhere):
        world.objects[key] = b"x"
    recovery = recover_partition(world, "l", "a", "l.event.a", 2, owner="me")
    assert recovery.orphans == [dead, older_dead]
    assert recovery.manifest.epoch == 5
    assert {vouched, newer, elsewhere} <= set(world.objects)
    assert world.listed == ["l/a/dt=2026-01-01/hour=01/part-00002-"]  # never the whole table


@dataclass
class Writer:
    """One lake worker's state in the zombie test: its committer, buffers and read positions."""

    commit: LakeCommitter
    buffers: dict[tuple[str, int], PartitionBuffer]
    read: dict[tuple[str, int], int]

    @classmethod
    def taking_over(cls, world: World, pool: ThreadPoolExecutor) -> Writer:
        commit = LakeCommitter(SETTINGS, world, world, pool)
        starts = {tp: r.start_offset or 0 for tp, r in commit.recover(TPS).items()}
        return cls(commit, {tp: PartitionBuffer(*tp) for tp in TPS}, starts)

    def read_on(self, upto: Callable[[int], int]) -> None:
        for tp in self.commit.manifests:  # a fenced writer reads nothing more of its lost partitions
            end = upto(self.read[tp])
            for offset in range(self.read[tp], end):
                self.buffers[tp].add(row(tp[1], offset), 0.0)
            self.read[tp] = end


@pytest.mark.parametrize("seed", range(40))
def test_zombies_never_lose_or_duplicate_a_row(seed: int) -> None:
    """Two writers take partitions over from each other at random moments while the other one keeps
    reading and flushing what it holds (a zombie), with random failures and lost answers: every offset
    ends up in the lake exactly once."""
    rng = random.Random(seed)
    world = World()
    end = 120
    with ThreadPoolExecutor(3) as pool:
        writers = [Writer.taking_over(world, pool), Writer.taking_over(world, pool)]
        for _step in range(60):
            index = rng.randrange(2)
            if rng.random() < 0.1:
                writers[index] = Writer.taking_over(world, pool)
                continue
            writer = writers[index]
            writer.read_on(lambda start: min(start + rng.randint(0, 25), end))
            world.fail = (rng.choice(["intent", "data", "manifest"]), "") if rng.random() < 0.2 else None
            # A write that lands but whose answer is lost: the writer cannot tell it from a failure.
            world.lose = (rng.choice(["intent", "manifest"]), "") if rng.random() < 0.15 else None
            try:
                writer.commit.flush(writer.buffers.values(), world)
            except Boom:
                pass
            finally:
                world.fail = world.lose = None
        final = Writer.taking_over(world, pool)  # one more takeover; it reads to the end
        manifests = {key: data for key, data in world.objects.items() if "/_manifests/" in key}
        for zombie in writers:  # the zombies' last words are refused
            zombie.commit.flush(zombie.buffers.values(), world)
        assert manifests == {key: data for key, data in world.objects.items() if "/_manifests/" in key}
        final.read_on(lambda start: end)
        final.commit.flush(final.buffers.values(), world)
    assert world.lake_offsets() == {tp: list(range(end)) for tp in TPS}


def test_a_vanished_manifest_is_waited_for_not_taken_for_a_fence() -> None:
    """The bucket deleted and being restored: a manifest this writer holds is gone. That is no
    other writer's claim — the flush fails (retried), deletes and re-claims nothing, and goes on
    once the same manifest is back; a claim from scratch would have rewritten restored rows."""
    world = World()
    with ThreadPoolExecutor(4) as pool:
        commit = committer(world, pool)
        commit.flush(filled(0, 10).values(), world)
        saved = dict(world.objects)
        buffers = filled(10, 10)
        world.objects.clear()  # the bucket is gone (and recreated empty)
        for _ in range(2):
            with pytest.raises(ManifestGone):
                commit.flush(buffers.values(), world)
        assert commit.take_fenced() == {}
        assert set(commit.manifests) == set(TPS), "nothing released: no other writer claimed them"
        world.objects.update(saved)  # the restore: the same bytes, so the same tags
        result = commit.flush(buffers.values(), world)
        assert (result.fenced, result.rows) == ((), 30)
    assert world.lake_offsets() == {tp: list(range(20)) for tp in TPS}, "rows lost or duplicated"
