"""Unit tests for core.realtime.users: dense indices, reuse after eviction, exact windows under churn."""

from __future__ import annotations

import random
from collections import defaultdict

import numpy as np

from core.realtime.ids import user_key
from core.realtime.users import PLATFORM_SLOTS, UserTable
from core.realtime.windows import ParsedEvent, PartitionWindows, WindowSpec

MIN = 60_000
HASHED = np.uint64(1 << 63)


def test_intern_is_stable_dense_and_survives_growth() -> None:
    rng = np.random.default_rng(1)
    table = UserTable()
    keys = rng.integers(0, 2**63, 50_000, dtype=np.uint64) | HASHED
    keys[:1000] = np.arange(1000, dtype=np.uint64)  # integer ids next to hashed ones
    indices = table.intern(np.concatenate([keys, keys[:10]]))  # repeats inside one batch
    assert sorted(set(indices.tolist())) == list(range(50_000))
    assert (indices[-10:] == indices[:10]).all()
    assert (table.intern(keys[::-1]) == indices[:50_000][::-1]).all()
    assert len(table) == 50_000


def test_eviction_frees_indices_for_new_users_and_lookups_follow() -> None:
    rng = np.random.default_rng(2)
    table = UserTable()
    keys = rng.integers(0, 2**63, 20_000, dtype=np.uint64) | HASHED
    indices = table.intern(keys)
    table.touch(indices, np.arange(20_000, dtype=np.int64) * PLATFORM_SLOTS + 3)
    assert table.lookup(int(keys[5])) == 5 * PLATFORM_SLOTS + 3
    assert table.lookup(12_345) is None
    assert table.evict_before(10_000) == 10_000
    assert len(table) == 10_000
    assert table.lookup(int(keys[5])) is None
    assert table.lookup(int(keys[15_000])) == 15_000 * PLATFORM_SLOTS + 3
    newcomers = rng.integers(0, 2**63, 30_000, dtype=np.uint64) | HASHED
    fresh = table.intern(newcomers)
    kept = indices[10_000:]
    assert len(set(fresh.tolist()) | set(kept.tolist())) == 40_000  # no two live users share one
    assert set(indices[:10_000].tolist()) <= set(fresh.tolist())  # freed indices were reused
    assert (table.intern(keys[10_000:]) == kept).all()
    assert table.lookup(int(newcomers[0])) is None  # interned, never seen: not active


def test_windows_exact_while_users_churn_through_reused_indices() -> None:
    """A moving population: users leave, are evicted, their indices go to newcomers — every closed
    window (1 minute and the 5-minute view) still equals the brute-force distinct count."""
    spec = WindowSpec(window_ms=MIN, slide_windows=5, lateness_ms=MIN, dimensions=("platform",))
    rng = random.Random(3)
    state = PartitionWindows(spec, 0)
    truth: dict[int, set[str]] = defaultdict(set)
    events = []
    now = 1_700_000_000_000
    for offset in range(40_000):
        now += 25  # 1000 s in all: about 17 windows, users live for about 3 of them
        first = offset // 20
        user = f"u{rng.randint(first, first + 400)}"
        truth[now - now % MIN].add(user)
        events.append(ParsedEvent(offset, now, user_key(user), "web", ("web",)))
    closed = []
    for i in range(0, len(events), 777):
        closed += state.apply(events[i : i + 777])
    assert len(closed) >= 12
    ever = len(set().union(*truth.values()))
    assert len(state.users) < ever // 2  # users gone for longer than the sliding view were evicted
    assert state.users.allocated < ever  # and their indices were given to newcomers
    for window in closed:
        assert window.users["all"] == len(truth[window.start_ms])
        sliding = set().union(*(truth[window.start_ms - k * MIN] for k in range(5)))
        assert window.users_sliding["all"] == len(sliding)
