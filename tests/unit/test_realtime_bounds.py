"""Realtime bounded by design: hostile dimension values, far-future clocks, idle partitions.

Pure (core.realtime): a window's partial stays under Kafka's message size whatever the values,
folding is exact and replay-stable, a far-future event cannot move the watermark, and an idle
partition's advance closes windows and tells readers so.
"""

from __future__ import annotations

import random
from collections import Counter

import orjson
import pytest

from core.errors import ConfigError
from core.realtime.cardinality import OTHER, TOPIC_MESSAGE_BYTES, max_partial_bytes
from core.realtime.events import parse
from core.realtime.partials import merge, to_record
from core.realtime.windows import ParsedEvent, PartitionWindows, WindowSpec
from tests.conftest import isolated_settings

MIN = 60_000
T0 = 1_700_000_000_000 // MIN * MIN
DIMS = ("platform", "app_version", "event_name")
SPEC = WindowSpec(MIN, 5, 0, DIMS, value_cap=50)


def hostile_messages(n: int, seed: int = 3) -> list[tuple[int, bytes]]:
    """``n`` events over five minutes, each with its own 200-character app_version."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        version = f"{i:06d}" + "".join(rng.choice('ab"\\\x01é') for _ in range(194))
        doc = {
            "user_id": str(i % 4000),
            "server_ts": T0 + (i * 5 * MIN) // n,
            "platform": "android",
            "app_version": version,
            "event_name": f"ev{i % 300}",
        }
        out.append((i, orjson.dumps(doc)))
    return out


def test_partials_stay_bounded_with_thousands_of_long_distinct_values() -> None:
    truncated: Counter[str] = Counter()
    events, bad = parse(hostile_messages(6000), DIMS, max_chars=64, truncated=truncated)
    assert bad == 0
    assert truncated == {"app_version": 6000}
    state = PartitionWindows(SPEC, 0)
    closed = state.apply(events) + state.apply([events[-1]._replace(offset=6000, ts_ms=T0 + 20 * MIN)])
    assert len(closed) >= 5
    bound = max_partial_bytes(DIMS, 50, 64)
    assert bound < TOPIC_MESSAGE_BYTES
    for window in closed:
        size = len(orjson.dumps(to_record("default", window, 6, 60, 300)))
        assert size <= bound
        for counts in (window.users, window.users_sliding, window.events):
            for dim, values in counts["by"].items():  # type: ignore[attr-defined]
                assert len(values) <= 51, dim
                assert all(len(value) <= 64 for value in values)
    assert state.folded["app_version"] > 5000
    assert state.folded["event_name"] > 0  # 300 names, 50 kept per window


def test_folded_values_keep_exact_users_and_fold_the_same_way_on_replay() -> None:
    spec = WindowSpec(MIN, 2, 0, ("v",), value_cap=2)
    events = [ParsedEvent(i, T0 + i, i % 7, "web", (f"x{i % 5}",)) for i in range(40)]
    close = ParsedEvent(40, T0 + 5 * MIN, 99, "web", ("x0",))
    whole = PartitionWindows(spec, 0).apply([*events, close])
    state = PartitionWindows(spec, 0)
    pieces = [w for i in range(0, 40, 3) for w in state.apply(events[i : i + 3])] + state.apply([close])
    assert pieces == whole
    first = whole[0]
    # x0 and x1 are seen first and keep their names; x2..x4 become "other", with exact users.
    users = {v: {e.user for e in events if e.values[0] == v} for v in ("x0", "x1", "x2", "x3", "x4")}
    assert first.users["by"]["v"] == {  # type: ignore[index]
        "x0": len(users["x0"]),
        "x1": len(users["x1"]),
        OTHER: len(users["x2"] | users["x3"] | users["x4"]),
    }
    assert first.events["by"]["v"][OTHER] == sum(1 for e in events if e.values[0] not in ("x0", "x1"))  # type: ignore[index]


def test_a_far_future_event_is_counted_and_does_not_move_the_watermark() -> None:
    spec = WindowSpec(MIN, 1, MIN, ("platform",), future_ms=300_000)
    state = PartitionWindows(spec, 0)
    now = T0 + 10 * MIN
    year_2100 = 4_102_444_800_000
    state.apply([ParsedEvent(0, now, 1, "web", ("web",)), ParsedEvent(1, year_2100, 2, "web", ("web",))], now)
    assert state.future_events == 1
    assert state.max_ts == now
    state.apply([ParsedEvent(2, now - 30_000, 3, "ios", ("ios",))], now)
    assert state.late_events == 0, "later events are not late because of the bad clock"
    assert state.next_offset == 3


def test_idle_advance_closes_windows_and_publishes_progress_readers_see_as_complete() -> None:
    spec = WindowSpec(MIN, 1, 0, ("platform",))
    busy, idle = PartitionWindows(spec, 0), PartitionWindows(spec, 1)
    busy.apply([ParsedEvent(0, T0 + 1, 1, "web", ("web",))])
    idle.apply([ParsedEvent(0, T0 + 2, 2, "ios", ("ios",))])
    records = [
        to_record("l", w, 2, 60, 60) for w in busy.apply([ParsedEvent(1, T0 + 3 * MIN, 3, "web", ("web",))])
    ]
    assert not merge(records, "users", T0, T0 + 3 * MIN)[0]["complete"], "partition 1 holds window 0 open"
    assert idle.advance(T0 + 1) == [], "an advance never moves the clock back"
    first = idle.advance(T0 + MIN + 5)
    assert [w.start_ms for w in first] == [T0]
    assert first[0].users["all"] == 1
    progress = idle.advance(T0 + 3 * MIN)
    assert [(w.start_ms, w.users["all"]) for w in progress] == [(T0 + 2 * MIN, 0)]
    assert progress[0].checkpoint.closed_until == T0 + 3 * MIN
    records += [to_record("l", w, 2, 60, 60) for w in first + progress]
    rows = merge(records, "users", T0, T0 + 3 * MIN)
    assert [(r["window_start"], r["complete"], r["counts"]["all"]) for r in rows] == [
        (T0, True, 2),
        (T0 + 2 * MIN, True, 0),
    ]
    assert idle.advance(T0 + 3 * MIN + 1) == [], "nothing new closed: nothing published"


def test_settings_reject_a_partial_bound_above_the_message_size_and_keep_the_old_name() -> None:
    with pytest.raises((ConfigError, ValueError), match="realtime partial could reach"):
        isolated_settings(realtime_dimension_top_n=2000)
    assert isolated_settings(realtime_event_name_top_n=7).realtime_dimension_top_n == 7
    assert (
        isolated_settings(realtime_event_name_top_n=7, realtime_dimension_top_n=9).realtime_dimension_top_n
        == 9
    )


def test_a_server_ts_beyond_int64_arithmetic_is_a_bad_record_not_a_crash() -> None:
    good = b'{"user_id":"u1","server_ts":1700000000000,"platform":"ios"}'
    messages = [
        (0, good),
        (1, b'{"user_id":"u2","server_ts":1e30,"platform":"ios"}'),
        (2, b'{"user_id":"u3","server_ts":-99999999999999999999,"platform":"ios"}'),
        (3, b'{"user_id":"u4","server_ts":null,"platform":"ios"}'),
    ]
    events, bad = parse(messages, DIMS)
    assert bad == 3
    assert [e.offset for e in events] == [0]
