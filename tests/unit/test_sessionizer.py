"""The sessionizer alone: gaps, client session ids, watermark closing, late events, replay."""

from __future__ import annotations

import random

from core.sessions.model import Checkpoint, ClosedSession, SessionEvent, SessionSpec
from core.sessions.sessionizer import PartitionSessionizer

MIN = 60_000
SPEC = SessionSpec(gap_ms=30 * MIN, lateness_ms=2 * MIN)


def ev(offset: int, ts: int, user: str = "u1", sid: str | None = None, name: str = "e") -> SessionEvent:
    return SessionEvent(offset, ts, user, sid, name, "android", "5.1")


def test_gap_splits_a_users_events_into_sessions_once_the_watermark_passes() -> None:
    s = PartitionSessionizer(0, SPEC)
    s.feed([ev(0, 0, name="open"), ev(1, 10 * MIN), ev(2, 20 * MIN, name="close")])
    s.feed([ev(3, 51 * MIN, name="again")])  # 31 min after the last event: a new session
    assert s.closed == []  # the watermark (51 - 2 min) has not passed 20 + 30 min yet
    s.feed([ev(4, 52 * MIN + 1, user="u2")])  # another user's event moves the watermark past it
    assert len(s.closed) == 1
    row = s.closed[0]
    assert (row.start_ms, row.end_ms, row.event_count) == (0, 20 * MIN, 3)
    assert (row.first_event, row.last_event, row.session_key, row.closing_offset) == (
        "open",
        "close",
        "0-0",
        4,
    )
    assert row.session_id == "u1-t0"
    assert row.duration_s == 1200.0
    assert s.open_count() == 2


def test_client_session_ids_group_interleaved_events_of_one_user() -> None:
    s = PartitionSessionizer(0, SPEC)
    s.feed([ev(0, 0, sid="a"), ev(1, 1000, sid="b"), ev(2, 2000, sid="a"), ev(3, 3000, sid="b")])
    s.feed([ev(4, 3000 + 33 * MIN, user="other", sid="x")])
    rows = sorted(s.closed, key=lambda r: r.session_id)
    assert [(r.session_id, r.event_count, r.start_ms, r.end_ms) for r in rows] == [
        ("a", 2, 0, 2000),
        ("b", 2, 1000, 3000),
    ]


def test_an_event_bridging_two_gap_sessions_merges_them() -> None:
    s = PartitionSessionizer(0, SessionSpec(gap_ms=10 * MIN, lateness_ms=30 * MIN))
    s.feed([ev(0, 0), ev(1, 15 * MIN), ev(2, 7 * MIN)])  # the third is within 10 min of both
    assert s.open_count() == 1
    s.feed([ev(3, 60 * MIN, user="u2")])
    assert [(r.event_count, r.session_key, r.start_ms, r.end_ms) for r in s.closed] == [
        (3, "0-0", 0, 15 * MIN)
    ]


def test_late_event_for_a_closed_session_opens_its_own_row_counted_as_late() -> None:
    s = PartitionSessionizer(0, SPEC)
    s.feed([ev(0, 0, sid="a"), ev(1, 40 * MIN, user="u2", sid="b")])
    assert [r.session_id for r in s.closed] == ["a"]
    s.feed([ev(2, 1000, sid="a", name="straggler")])  # far behind the watermark
    assert s.late == 1
    s.feed([ev(3, 80 * MIN, user="u2", sid="c")])
    late_rows = [r for r in s.closed if r.session_id == "a" and r.late_events]
    assert len(late_rows) == 1
    assert (late_rows[0].event_count, late_rows[0].session_key, late_rows[0].first_event) == (
        1,
        "0-2",
        "straggler",
    )


def test_replay_offset_is_the_oldest_open_session_and_its_watermark() -> None:
    s = PartitionSessionizer(0, SPEC)
    s.feed([ev(0, 0, user="a"), ev(1, 5 * MIN, user="b"), ev(2, 36 * MIN, user="c")])
    rows, checkpoint = s.take()
    assert [r.user_id for r in rows] == ["a"]  # watermark 34 min: past 0 + 30, not 5 + 30
    assert checkpoint.closed_through == 2
    assert checkpoint.replay_offset == 1  # b's first event
    assert checkpoint.replay_max_ts == 0  # the maximum event time read before offset 1


def test_a_quiet_partition_closes_on_the_wall_clock_and_a_replay_repeats_it() -> None:
    s = PartitionSessionizer(0, SPEC)
    s.feed([ev(0, 0, user="a"), ev(1, 10 * MIN, user="b")])
    assert s.advance(20 * MIN) == 0  # closes nothing: not even recorded
    assert s.advance(40 * MIN) == 1  # a: 0 + 30 < 38 min
    rows, checkpoint = s.take()
    assert [r.user_id for r in rows] == ["a"]
    assert checkpoint.advances == ((1, 40 * MIN),)
    # A restart from that checkpoint replays offset 1 and the advance: a is not emitted again, b is
    # still open with the same watermark, and closes where the first run would have closed it.
    again = PartitionSessionizer(0, SPEC, checkpoint)
    assert again.start_offset == 1
    again.feed([ev(1, 10 * MIN, user="b")])
    assert again.closed == []
    assert again.skipped == 0
    assert again.open_count() == 1
    assert again.watermark == s.watermark


Step = SessionEvent | int  # an event read, or a wall-clock advance to that clock


def run(script: list[Step], crash_at: set[int], commit_at: set[int]) -> tuple[list[ClosedSession], int]:
    """Drive a sessionizer through ``script``; commit and crash (restart from the last commit,
    replaying the events from its replay offset) at the given steps. Rows committed, restarts."""
    events = [step for step in script if isinstance(step, SessionEvent)]
    lake: list[ClosedSession] = []
    committed: Checkpoint | None = None
    s = PartitionSessionizer(3, SPEC)
    restarts = 0
    for index, step in enumerate(script):
        if isinstance(step, SessionEvent):
            s.feed([step])
        else:
            s.advance(step)
        if index in commit_at:
            rows, committed = s.take()
            lake += rows
        if index in crash_at:
            restarts += 1
            s = PartitionSessionizer(3, SPEC, committed)
            start = s.start_offset or 0
            through = max((e.offset for e in script[: index + 1] if isinstance(e, SessionEvent)), default=-1)
            s.feed([e for e in events if start <= e.offset <= through])
    s.advance(10**15)
    lake += s.take()[0]
    return lake, restarts


def random_script(seed: int, with_advances: bool) -> list[Step]:
    rng = random.Random(seed)
    clock, script = 0, list[Step]()
    for offset in range(400):
        clock += rng.randrange(0, 3 * MIN)
        ts = clock - rng.randrange(0, 40 * MIN) if rng.random() < 0.1 else clock
        user = f"u{rng.randrange(8)}"
        sid = f"{user}-s{rng.randrange(3)}" if rng.random() < 0.5 else None
        script.append(ev(offset, ts, user, sid))
        if with_advances and rng.random() < 0.05:
            script.append(clock + rng.randrange(0, 60 * MIN))
    return script


def test_commits_and_crashes_anywhere_leave_every_event_in_exactly_one_row() -> None:
    for seed in range(30):
        script = random_script(seed, with_advances=True)
        rng = random.Random(seed)
        commits = {i for i in range(len(script)) if rng.random() < 0.1}
        crashes = {i for i in range(len(script)) if rng.random() < 0.05}
        rows, restarts = run(script, crashes, commits)
        keys = [r.session_key for r in rows]
        assert len(keys) == len(set(keys)), f"seed {seed}: a session written twice"
        assert sum(r.event_count for r in rows) == 400, f"seed {seed}: events missing or doubled"
        assert restarts == len(crashes)


def test_a_crash_replay_gives_the_rows_of_an_uninterrupted_run() -> None:
    for seed in range(30):
        script = random_script(seed, with_advances=True)
        # Advances right before a commit are never lost by a crash: the replay must then rebuild
        # exactly the uninterrupted run's sessions.
        commits = {i for i, step in enumerate(script) if not isinstance(step, SessionEvent)}
        rng = random.Random(seed)
        commits |= {i for i in range(len(script)) if rng.random() < 0.1}
        crashes = {i for i in commits if rng.random() < 0.5}
        expected, _ = run(script, set(), commits)
        got, _ = run(script, crashes, commits)
        assert sorted(got) == sorted(expected), f"seed {seed}"
