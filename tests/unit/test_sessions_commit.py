"""The sessions commit path over a fake table that fails at each step, and the real Iceberg edge on a
local lake: every session in the table exactly once whatever fails and whoever restarts."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from connectors.lake_query import run_query
from connectors.sessions_lake import IcebergSessionTables
from core.sessions.commit import SessionCommitter, tp_key
from core.sessions.model import Checkpoint, ClosedSession, SessionEvent, SessionSpec
from tests.conftest import isolated_settings

MIN = 60_000
SPEC = SessionSpec(gap_ms=30 * MIN, lateness_ms=2 * MIN)
TOPIC = "a.events.common"
TP = (TOPIC, 0)


class Boom(Exception):
    pass


class FakeTables:
    """One lane's table in memory; ``fail`` = "before" (nothing lands) or "after" (the commit lands,
    its answer is lost) for the next append."""

    def __init__(self) -> None:
        self.rows: list[ClosedSession] = []
        self.checkpoints: dict[str, Checkpoint] = {}
        self.fail: str | None = None

    def head(self, lane: str) -> dict[str, Checkpoint]:
        return dict(self.checkpoints)

    def append(
        self,
        lane: str,
        rows: Sequence[ClosedSession],
        expected: Mapping[str, Checkpoint | None],
        written: Mapping[str, Checkpoint],
    ) -> bool:
        fail, self.fail = self.fail, None
        if fail == "before":
            raise Boom("S3 away")
        if any(self.checkpoints.get(key) != value for key, value in expected.items()):
            return False
        self.rows += rows
        self.checkpoints.update(written)
        if fail == "after":
            raise Boom("commit landed, answer lost")
        return True


def events(seed: int, count: int = 300) -> list[SessionEvent]:
    rng = random.Random(seed)
    clock, out = 0, []
    for offset in range(count):
        clock += rng.randrange(0, 4 * MIN)
        user = f"u{rng.randrange(6)}"
        sid = f"{user}-{rng.randrange(2)}" if rng.random() < 0.5 else None
        ts = clock - rng.randrange(0, 30 * MIN) if rng.random() < 0.1 else clock
        out.append(SessionEvent(offset, ts, user, sid, "e", "ios", "1"))
    return out


def consume(table: FakeTables, stream: list[SessionEvent], seed: int) -> int:
    """Read the stream in batches, flushing now and then, failing and crashing at random; a crash
    is a new committer recovering from the table. Returns how many crashes happened."""
    rng = random.Random(seed)
    crashes, position = 0, 0
    committer = SessionCommitter(table, SPEC, {TOPIC: "a"})
    position = committer.recover([TP])[TP] or 0
    while position < len(stream):
        batch = stream[position : position + rng.randrange(1, 20)]
        committer.sessionizers[TP].feed(batch)
        position += len(batch)
        if rng.random() < 0.4:
            table.fail = rng.choice([None, None, "before", "after"])
            try:
                flushed = committer.flush()
            except Boom:
                flushed = None
            if flushed is not None and flushed.fenced:  # our own lost commit: read on from the head
                position = committer.sessionizers[TP].start_offset or 0
        if rng.random() < 0.1:
            crashes += 1
            committer = SessionCommitter(table, SPEC, {TOPIC: "a"})
            position = committer.recover([TP])[TP] or 0
    while True:  # the end: read what is left, close everything, commit until it lands
        committer.sessionizers[TP].feed(stream[position:])
        committer.sessionizers[TP].advance(10**15)
        try:
            flushed = committer.flush()
        except Boom:
            continue  # the rows stay pending
        if not flushed.fenced:
            return crashes
        position = committer.sessionizers[TP].start_offset or 0


def test_every_session_lands_once_whatever_fails_and_whoever_restarts() -> None:
    crashes = 0
    for seed in range(40):
        stream = events(seed)
        table = FakeTables()
        crashes += consume(table, stream, seed)
        keys = [row.session_key for row in table.rows]
        assert len(keys) == len(set(keys)), f"seed {seed}: duplicate session rows"
        assert sum(row.event_count for row in table.rows) == len(stream), f"seed {seed}"
    assert crashes > 20  # the scenarios did restart


def test_a_fenced_commit_drops_the_partition_and_recovers_from_the_head() -> None:
    table = FakeTables()
    mine = SessionCommitter(table, SPEC, {TOPIC: "a"})
    mine.recover([TP])
    mine.sessionizers[TP].feed(
        [SessionEvent(0, 0, "u", None, "e"), SessionEvent(1, 40 * MIN, "v", None, "e")]
    )
    table.checkpoints[tp_key(*TP)] = Checkpoint(5, 6, 40 * MIN)  # another writer got there first
    flushed = mine.flush()
    assert flushed.fenced == (TP,)
    assert flushed.rows == 0
    assert table.rows == []
    assert mine.sessionizers[TP].start_offset == 6


def test_the_iceberg_edge_commits_rows_with_checkpoints_and_fences(tmp_path: Path) -> None:
    settings = isolated_settings(lanes=["a"], lake_uri=f"file://{tmp_path}/lake", state_dir=tmp_path / "s")
    tables = IcebergSessionTables(settings)
    committer = SessionCommitter(tables, SPEC, {TOPIC: "a"})
    assert committer.recover([TP]) == {TP: None}
    committer.sessionizers[TP].feed(
        [SessionEvent(0, 0, "u", "s1", "open", "ios", "1"), SessionEvent(1, 40 * MIN, "v", None, "x")]
    )
    assert committer.flush().rows == 1
    head = tables.head("a")[tp_key(*TP)]
    assert (head.closed_through, head.replay_offset) == (1, 1)
    rows = tables.read("a").to_pylist()
    assert [(r["session_id"], r["event_count"], r["platform"], r["dt"]) for r in rows] == [
        ("s1", 1, "ios", "1970-01-01")
    ]
    columns, found = run_query(settings, 'SELECT session_id, event_count FROM "events--sessions"', "a")
    assert (columns, found) == (["session_id", "event_count"], [("s1", 1)])  # highway query reads it
    stale = SessionCommitter(IcebergSessionTables(settings), SPEC, {TOPIC: "a"})
    stale.committed[TP] = None  # believes nothing was committed: another writer's view
    stale.sessionizers[TP] = committer.sessionizers[TP]
    committer.sessionizers[TP].advance(10**12)
    assert stale.flush().fenced == (TP,)
    assert len(tables.read("a")) == 1


@pytest.mark.parametrize("where", ["before", "after"])
def test_a_failed_commit_keeps_its_rows_for_the_next_attempt(where: str) -> None:
    table = FakeTables()
    committer = SessionCommitter(table, SPEC, {TOPIC: "a"})
    committer.recover([TP])
    committer.sessionizers[TP].feed(
        [SessionEvent(0, 0, "u", None, "e"), SessionEvent(1, 40 * MIN, "v", None, "e")]
    )
    table.fail = where
    with pytest.raises(Boom):
        committer.flush()
    assert committer.pending() == 1
    flushed = committer.flush()
    if where == "before":
        assert flushed.rows == 1
    else:  # it had landed: the retry is refused, the partition recovered from our own commit
        assert flushed.fenced == (TP,)
        assert committer.pending() == 0
    assert len(table.rows) == 1
