"""Unit tests for core.realtime: ids, window state, replay from checkpoints, partial merging."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest

from core.realtime.cardinality import OTHER, StableLabels, top_n_with_other
from core.realtime.ids import user_key
from core.realtime.partials import flatten, merge, partial_key, to_record
from core.realtime.windows import ClosedWindow, ParsedEvent, PartitionWindows, WindowSpec

MIN = 60_000
SPEC = WindowSpec(window_ms=MIN, slide_windows=5, lateness_ms=2 * MIN, dimensions=("platform", "event_name"))
PLATFORMS = ("android", "ios", "web")


def traffic(seed: int, n: int, users: int = 300, partitions: int = 1) -> list[list[ParsedEvent]]:
    """Events per partition, time mostly increasing with jitter and some very late stragglers."""
    rng = random.Random(seed)
    per_partition: list[list[ParsedEvent]] = [[] for _ in range(partitions)]
    now = 1_700_000_000_000
    for _ in range(n):
        now += rng.randint(0, 400)
        ts = now - rng.randint(0, 90_000) if rng.random() < 0.2 else now
        if rng.random() < 0.01:
            ts = now - rng.randint(4 * MIN, 8 * MIN)  # beyond the allowance
        user = rng.randint(1, users)
        p = user % partitions
        platform = PLATFORMS[user % 3]
        name = f"ev{rng.randint(0, 9)}"
        events = per_partition[p]
        events.append(ParsedEvent(len(events), ts, user_key(str(user)), platform, (platform, name)))
    return per_partition


def reference(events: list[ParsedEvent]) -> tuple[dict[int, set[int]], dict[int, dict[str, set[int]]], int]:
    """Brute force: distinct users per window (overall, by platform) with per-event lateness."""
    users: dict[int, set[int]] = defaultdict(set)
    by_platform: dict[int, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    running = None
    late = 0
    for e in events:
        start = e.ts_ms // MIN * MIN
        if running is not None and start + MIN <= (running - SPEC.lateness_ms) // MIN * MIN:
            late += 1
        else:
            users[start].add(e.user)
            by_platform[start][e.platform].add(e.user)
        running = e.ts_ms if running is None else max(running, e.ts_ms)
    return users, by_platform, late


def run(events: list[ParsedEvent], batch: int, state: PartitionWindows | None = None) -> list[ClosedWindow]:
    state = state or PartitionWindows(SPEC, 0)
    out: list[ClosedWindow] = []
    for i in range(0, len(events), batch):
        out.extend(state.apply(events[i : i + batch]))
    return out


def test_user_keys_integer_direct_and_hashed_disjoint() -> None:
    assert user_key("42") == 42
    assert user_key("0") == 0
    assert user_key("042") != 42
    assert user_key("042") >= 1 << 63
    assert user_key("u-1") == user_key("u-1") >= 1 << 63
    assert user_key(str(2**63)) >= 1 << 63
    assert len({user_key(f"user-{i}") for i in range(20_000)}) == 20_000


def test_closed_windows_equal_brute_force_and_late_events_counted() -> None:
    (events,) = traffic(1, 5000)
    state = PartitionWindows(SPEC, 0)
    closed = run(events, 97, state)
    users, by_platform, late = reference(events)
    assert late > 0
    assert state.late_events == late
    assert len(closed) > 10
    for window in closed:
        assert window.users["all"] == len(users.get(window.start_ms, set()))
        expected = {p: len(s) for p, s in by_platform.get(window.start_ms, {}).items()}
        assert window.users["by"].get("platform", {}) == expected  # type: ignore[attr-defined]
        sliding = set().union(*(users.get(window.start_ms - k * MIN, set()) for k in range(5)))
        assert window.users_sliding["all"] == len(sliding)
    assert [w.start_ms for w in closed] == sorted({w.start_ms for w in closed})


@pytest.mark.parametrize("batch", [1, 13, 1000, 10_000])
def test_result_does_not_depend_on_batching(batch: int) -> None:
    (events,) = traffic(2, 3000)
    assert [(w.start_ms, w.users, w.users_sliding, w.events) for w in run(events, batch)] == [
        (w.start_ms, w.users, w.users_sliding, w.events) for w in run(events, 50)
    ]


def test_replay_from_any_checkpoint_rebuilds_the_same_later_windows() -> None:
    (events,) = traffic(3, 4000)
    full = run(events, 64)
    by_start = {w.start_ms: w for w in full}
    for cut in (len(full) // 4, len(full) // 2, len(full) - 3):
        checkpoint = full[cut].checkpoint
        restored = PartitionWindows(SPEC, 0, checkpoint)
        replayed = run(events[checkpoint.resume_offset :], 37, restored)
        assert replayed, "the replay must close the remaining windows"
        assert all(w.start_ms + MIN > checkpoint.closed_until for w in replayed)
        for window in replayed:
            original = by_start[window.start_ms]
            assert (window.users, window.users_sliding, window.events) == (
                original.users,
                original.users_sliding,
                original.events,
            )
        assert {w.start_ms for w in replayed} == {
            w.start_ms for w in full if w.start_ms + MIN > checkpoint.closed_until
        }


def test_redelivered_offsets_are_ignored() -> None:
    (events,) = traffic(4, 1000)
    state = PartitionWindows(SPEC, 0)
    once = run(events, 100, state)
    again = state.apply(events[500:])
    assert again == []
    assert state.next_offset == len(events)
    assert once


def test_partials_sum_exactly_across_partitions() -> None:
    per_partition = traffic(5, 6000, users=500, partitions=3)
    records = []
    truth: dict[int, set[int]] = defaultdict(set)
    for p, events in enumerate(per_partition):
        users, _, _ = reference(events)
        for start, members in users.items():
            truth[start] |= members
        state = PartitionWindows(SPEC, p)
        for window in run(events, 200, state):
            records.append(to_record("default", window, 3, 60, 300))
    rows = merge(records, "users", 0, 2**62)
    complete = [row for row in rows if row["complete"]]
    assert len(complete) > 5
    for row in complete:
        assert row["counts"]["all"] == len(truth[row["window_start"]])
    flat = flatten(complete, "platform")
    assert {r["platform"] for r in flat} <= set(PLATFORMS)
    assert partial_key("l", 60_000, 2) == "l|60000|2"


def test_active_user_lookup_and_eviction() -> None:
    state = PartitionWindows(SPEC, 0)
    state.apply(
        [
            ParsedEvent(0, 10 * MIN, 7, "ios", ("ios", "a")),
            ParsedEvent(1, 10 * MIN + 5, 8, "web", ("web", "a")),
        ]
    )
    assert state.last_seen(7) == (10 * MIN, "ios")
    state.apply([ParsedEvent(2, 30 * MIN, 8, "android", ("android", "b"))])
    assert state.last_seen(7) is None
    assert state.last_seen(8) == (30 * MIN, "android")


def test_cardinality_caps() -> None:
    assert top_n_with_other({"a": 5, "b": 3, "c": 1, "d": 1}, 2) == {"a": 5, "b": 3, OTHER: 2}
    assert top_n_with_other({"a": 5}, 2) == {"a": 5}
    labels = StableLabels(2)
    assert [labels.label(v) for v in "abcab"] == ["a", "b", OTHER, "a", "b"]


def test_a_crash_between_the_partials_of_one_batch_loses_no_window() -> None:
    """One batch closes several windows; their partials go out one by one. Restoring from any
    prefix's last checkpoint republishes every later window with equal contents (sliding view too),
    and no published checkpoint claims a window closed before its own partial."""
    (events,) = traffic(6, 3000)
    state = PartitionWindows(SPEC, 0)
    state.apply(events[:1500])
    jump = events[1500]
    far = ParsedEvent(jump.offset, jump.ts_ms + 4 * MIN, jump.user, jump.platform, jump.values)
    burst = state.apply([far])  # the watermark leaps: several windows close in one batch
    assert len(burst) >= 3
    for sent, window in enumerate(burst):
        assert window.checkpoint.closed_until <= window.start_ms + MIN or sent == len(burst) - 1
    for crash_after in range(len(burst) - 1):
        checkpoint = burst[crash_after].checkpoint
        restored = PartitionWindows(SPEC, 0, checkpoint)
        replayed = run([*events[checkpoint.resume_offset : 1500], far], 40, restored)
        assert [w.start_ms for w in replayed] == [w.start_ms for w in burst[crash_after + 1 :]]
        for window, original in zip(replayed, burst[crash_after + 1 :], strict=True):
            assert (window.users, window.users_sliding, window.events) == (
                original.users,
                original.users_sliding,
                original.events,
            )
