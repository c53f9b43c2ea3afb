"""Event-time windows for one Kafka partition: exact distinct users, counts, watermark, lateness.

Every decision depends only on the partition's event sequence, never on wall-clock time or on
how events were batched, so replaying the same offsets from a checkpoint rebuilds the same state:

* event time is ``server_ts`` (epoch ms); windows are tumbling ``[start, start + window)``,
  aligned to the epoch;
* the watermark seen by an event is the maximum event time of the events *before* it in the
  partition minus the allowed lateness; an event whose window ended at or before that watermark
  is late — counted in ``late_events``, never added;
* a window closes when the watermark passes its end; closing emits a :class:`ClosedWindow` with
  the 1-window counts and the sliding view (union of the last ``slide_windows`` tumbling windows);
* bounded by design: each dimension keeps at most ``value_cap`` named values per window — the
  first ones seen in the partition's event order, so a replay folds the same ones — and folds later
  values into ``other`` (its bitmap holds their users exactly); the sliding view keeps the
  ``value_cap`` largest values and folds the rest the same way, so a partial has at most
  ``value_cap + 1`` values per dimension and measure whatever the input;
* an event more than ``future_ms`` ahead of the caller's wall clock (``now_ms``) is counted in
  ``future_events`` and neither added nor allowed to move the watermark (one bad clock must not
  make every later event late);
* :meth:`PartitionWindows.advance` moves the event clock of an idle partition (the caller decides
  from the wall clock when; see ``streams.realtime_state``) so that its windows close.

State is compact: users are interned per partition into dense 32-bit indices
(:class:`~core.realtime.users.UserTable`, which also holds last-seen times), and the window bitmaps
are 32-bit roaring bitmaps of those indices; a batch is applied vectorized (numpy), with the
per-event semantics above.

A :class:`Checkpoint` (published with every closed window) says where a replay must start
(``resume_offset``: the first event of the oldest window still held) and the watermark state
there, plus ``closed_until`` so that a replay never re-emits windows it may rebuild incompletely.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from pyroaring import BitMap

from core.realtime.cardinality import OTHER
from core.realtime.users import PLATFORM_SLOTS, Indices, UserTable

NO_TIME = -(1 << 62)


class ParsedEvent(NamedTuple):
    offset: int
    ts_ms: int
    user: int  # core.realtime.ids.user_key(user_id)
    platform: str
    values: tuple[str, ...]  # one per configured dimension, in WindowSpec.dimensions order


@dataclass(frozen=True)
class WindowSpec:
    window_ms: int
    slide_windows: int  # the sliding view spans this many tumbling windows
    lateness_ms: int
    dimensions: tuple[str, ...]
    value_cap: int = 50  # named values per dimension and window; later ones fold into "other"
    future_ms: int | None = None  # events further ahead of now_ms are not applied (None: no check)

    def start(self, ts_ms: int) -> int:
        return ts_ms - ts_ms % self.window_ms

    def closed_until(self, max_ts: int) -> int:
        """End boundary: every window ending at or before it is closed."""
        if max_ts == NO_TIME:
            return NO_TIME
        return self.start(max_ts - self.lateness_ms)


@dataclass(frozen=True)
class Checkpoint:
    resume_offset: int
    resume_max_ts: int
    closed_until: int
    next_offset: int


Counts = dict[str, object]  # {"all": int, "by": {dimension: {value: int}}}


@dataclass(frozen=True)
class ClosedWindow:
    partition: int
    start_ms: int
    users: Counts
    users_sliding: Counts
    events: Counts
    checkpoint: Checkpoint


@dataclass
class _Window:
    """One tumbling window: bitmaps of dense user indices (:mod:`core.realtime.users`), event counts."""

    start_ms: int
    first_offset: int
    max_ts_before: int
    users: BitMap = field(default_factory=BitMap)
    users_by: dict[str, dict[str, BitMap]] = field(default_factory=dict)
    events: int = 0
    events_by: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, users: Indices, columns: Sequence[_Column], cap: int, folded: Counter[str]) -> None:
        """Add a batch of accepted events: their dense user indices and value codes per dimension.

        A value gets its own bitmap if it has one or fewer than ``cap`` named values exist; decided in
        the order the values first appear, which is the partition's event order, as per event.
        """
        self.users.update(_u32(users))
        self.events += len(users)
        for column in columns:
            per_dim = self.users_by.setdefault(column.dimension, {})
            counter = self.events_by.setdefault(column.dimension, Counter())
            codes = column.codes
            present, first = np.unique(codes, return_index=True)
            order = np.argsort(codes, kind="stable")
            bounds = np.searchsorted(codes[order], present)
            ends = [*bounds[1:].tolist(), len(codes)]
            groups = sorted(zip(first.tolist(), present.tolist(), bounds.tolist(), ends, strict=True))
            for _, code, lo, hi in groups:
                value = column.vocabulary[code]
                if value not in per_dim:
                    if len(per_dim) - (OTHER in per_dim) >= cap:
                        folded[column.dimension] += hi - lo
                        value = OTHER
                    if value not in per_dim:
                        per_dim[value] = BitMap()
                per_dim[value].update(_u32(users[order[lo:hi]]))
                counter[value] += hi - lo


@dataclass(frozen=True)
class _Column:
    """One dimension's values of a batch's accepted events, as codes into ``vocabulary``."""

    dimension: str
    codes: Indices
    vocabulary: list[str]


def _u32(values: Indices) -> array[int]:
    # pyroaring adds an array('I') in one C call; numpy arrays and lists go value by value.
    out = array("I")
    out.frombytes(values.astype(np.uint32).tobytes())
    return out


def _encode(values: Sequence[str]) -> tuple[Indices, list[str]]:
    vocabulary: dict[str, int] = {}
    codes = np.fromiter((vocabulary.setdefault(v, len(vocabulary)) for v in values), np.int64, len(values))
    return codes, list(vocabulary)


def _cap_values(values: dict[str, BitMap], cap: int) -> dict[str, BitMap]:
    """The ``cap`` largest named values (ties by name); the others' users united into ``other``."""
    named = [(v, b) for v, b in values.items() if v != OTHER]
    if len(named) <= cap:
        return values
    named.sort(key=lambda item: (-len(item[1]), item[0]))
    kept = dict(named[:cap])
    rest = [b for _, b in named[cap:]]
    if OTHER in values:
        rest.append(values[OTHER])
    kept[OTHER] = BitMap.union(*rest)
    return kept


def _bitmap_counts(total: BitMap, by: dict[str, dict[str, BitMap]]) -> Counts:
    return {"all": len(total), "by": {dim: {v: len(b) for v, b in vals.items()} for dim, vals in by.items()}}


class PartitionWindows:
    """All window state of one partition. Feed it events in offset order with :meth:`apply`."""

    def __init__(self, spec: WindowSpec, partition: int, checkpoint: Checkpoint | None = None) -> None:
        self.spec = spec
        self.partition = partition
        self.windows: dict[int, _Window] = {}
        self.max_ts = NO_TIME
        self.next_offset = 0
        self.emit_after = NO_TIME  # windows ending at or before this were published already
        self.late_events = 0
        self.future_events = 0
        self.events_seen = 0
        self.folded: Counter[str] = Counter()  # events whose value was folded into "other", per dimension
        self.users = UserTable()  # dense index per user key, last seen and platform
        self._platforms: list[str] = []
        self._platform_index: dict[str, int] = {}
        if checkpoint is not None:
            self.max_ts = checkpoint.resume_max_ts
            self.next_offset = checkpoint.resume_offset
            self.emit_after = checkpoint.closed_until
        self.closed_until = spec.closed_until(self.max_ts)

    # --- feeding -----------------------------------------------------------------------------
    def apply(self, events: Sequence[ParsedEvent], now_ms: int | None = None) -> list[ClosedWindow]:
        """Add a batch (offset order); return the windows this batch closed, oldest first.

        Vectorized over the batch, with the per-event semantics: each event sees the watermark of
        the events before it (a running maximum), future events do not move it.
        """
        fresh = [e for e in events if e.offset >= self.next_offset]  # the rest: redelivered
        if not fresh:
            return self._close()
        spec = self.spec
        window_ms, lateness, n = spec.window_ms, spec.lateness_ms, len(fresh)
        ts = np.fromiter((e.ts_ms for e in fresh), np.int64, n)
        future = np.zeros(n, dtype=bool)
        if now_ms is not None and spec.future_ms is not None:
            future = ts > now_ms + spec.future_ms
        # running[i]: the maximum event time before event i (future events do not count).
        running = np.maximum.accumulate(np.concatenate(([self.max_ts], np.where(future, NO_TIME, ts))))
        behind = running[:-1] - lateness
        starts = ts - ts % window_ms
        late = (running[:-1] != NO_TIME) & (starts + window_ms <= behind - behind % window_ms) & ~future
        counted = np.flatnonzero(~future)
        keys = np.fromiter((fresh[i].user for i in counted.tolist()), np.uint64, len(counted))
        users = np.full(n, -1, dtype=np.int64)
        users[counted] = self.users.intern(keys)
        platforms = np.fromiter((self._platform_code(fresh[i].platform) for i in counted.tolist()), np.int64)
        self.users.touch(users[counted], ts[counted] * PLATFORM_SLOTS + platforms)
        accepted = np.flatnonzero(~future & ~late)
        if len(accepted):
            self._add(fresh, accepted, starts[accepted], users, running)
        self.next_offset = fresh[-1].offset + 1
        self.max_ts = int(running[-1])
        self.late_events += int(late.sum())
        self.future_events += int(future.sum())
        self.events_seen += len(counted)
        return self._close()

    def _add(
        self,
        fresh: Sequence[ParsedEvent],
        accepted: Indices,
        starts: Indices,
        users: Indices,
        running: Indices,
    ) -> None:
        """Add the accepted events (positions in ``fresh``) to their windows."""
        spec = self.spec
        columns = [
            _encode([fresh[i].values[d] for i in accepted.tolist()]) for d in range(len(spec.dimensions))
        ]
        present, first = np.unique(starts, return_index=True)
        for start, at in zip(present.tolist(), first.tolist(), strict=True):
            window = self.windows.get(start)
            if window is None:
                position = int(accepted[at])
                window = self.windows[start] = _Window(start, fresh[position].offset, int(running[position]))
            mine = np.flatnonzero(starts == start)
            window.add(
                users[accepted[mine]],
                [
                    _Column(dim, codes[mine], vocab)
                    for dim, (codes, vocab) in zip(spec.dimensions, columns, strict=True)
                ],
                spec.value_cap,
                self.folded,
            )

    def advance(self, ts_ms: int) -> list[ClosedWindow]:
        """Move the event clock to ``ts_ms`` without an event (an idle partition); close what that closes.

        When windows close but none of them holds data, one empty partial of the newest closed window
        is emitted anyway: its checkpoint tells readers the partition closed past it, so the
        cluster-wide windows become complete instead of waiting for this partition's next event.
        """
        if self.max_ts == NO_TIME or ts_ms <= self.max_ts:
            return []
        self.max_ts = ts_ms
        before = self.closed_until
        closed = self._close()
        if closed or self.closed_until <= max(before, self.emit_after):
            return closed
        keep_from = self.closed_until - (self.spec.slide_windows - 1) * self.spec.window_ms
        newest = self.closed_until - self.spec.window_ms
        return [self._closed_window(newest, self._checkpoint(keep_from, self.closed_until))]

    def _platform_code(self, platform: str) -> int:
        index = self._platform_index.get(platform)
        if index is None:
            if len(self._platforms) >= PLATFORM_SLOTS - 1:
                platform = "other"
                index = self._platform_index.get(platform)
            if index is None:
                self._platforms.append(platform)
                index = self._platform_index[platform] = len(self._platforms) - 1
        return index

    # --- closing -----------------------------------------------------------------------------
    def _close(self) -> list[ClosedWindow]:
        spec = self.spec
        new_until = spec.closed_until(self.max_ts)
        old_until = self.closed_until
        if new_until <= old_until:
            return []
        window_ms = spec.window_ms
        span = spec.slide_windows
        candidates: set[int] = set()
        for start in self.windows:
            for step in range(span):
                candidate = start + step * window_ms
                if old_until <= candidate and candidate + window_ms <= new_until:
                    candidates.add(candidate)
        self.closed_until = new_until
        # Keep what the sliding view of any still-open window may need; the rest is final.
        keep_from = new_until - (span - 1) * window_ms
        emitted = [start for start in sorted(candidates) if start + window_ms > self.emit_after]
        closed: list[ClosedWindow] = []
        for number, start in enumerate(emitted, 1):
            # Each partial's checkpoint claims no more than is published with it: the partials go
            # out one after the other, and a crash between two must not leave a checkpoint whose
            # closed_until covers a window that never reached the topic (it would read complete).
            until = new_until if number == len(emitted) else start + window_ms
            checkpoint = self._checkpoint(until - (span - 1) * window_ms, until)
            closed.append(self._closed_window(start, checkpoint))
        for start in [s for s in self.windows if s < keep_from]:
            del self.windows[start]
        self.users.evict_before(new_until - span * window_ms)
        return closed

    def _checkpoint(self, keep_from: int, closed_until: int) -> Checkpoint:
        """Where a replay starts so that every window from ``keep_from`` on is rebuilt whole."""
        held = [w for s, w in self.windows.items() if s >= keep_from]
        if held:
            oldest = min(held, key=lambda w: w.first_offset)
            return Checkpoint(oldest.first_offset, oldest.max_ts_before, closed_until, self.next_offset)
        return Checkpoint(self.next_offset, self.max_ts, closed_until, self.next_offset)

    def _closed_window(self, start: int, checkpoint: Checkpoint) -> ClosedWindow:
        users, sliding, events = self.window_counts(start)
        return ClosedWindow(self.partition, start, users, sliding, events, checkpoint)

    def window_counts(self, start: int) -> tuple[Counts, Counts, Counts]:
        """(distinct users, distinct users of the sliding view ending with it, events) of a held window."""
        spec = self.spec
        window = self.windows.get(start) or _Window(start, 0, NO_TIME)
        members = [
            self.windows[s]
            for s in range(start - (spec.slide_windows - 1) * spec.window_ms, start + 1, spec.window_ms)
            if s in self.windows
        ]
        sliding_by: dict[str, dict[str, BitMap]] = {}
        for dim in spec.dimensions:
            values: dict[str, list[BitMap]] = {}
            for member in members:
                for value, bitmap in member.users_by.get(dim, {}).items():
                    values.setdefault(value, []).append(bitmap)
            united = {value: BitMap.union(*maps) for value, maps in values.items()}
            sliding_by[dim] = _cap_values(united, spec.value_cap)
        sliding_all = BitMap.union(*(m.users for m in members)) if members else BitMap()
        events: Counts = {
            "all": window.events,
            "by": {dim: dict(counter) for dim, counter in window.events_by.items()},
        }
        return (
            _bitmap_counts(window.users, window.users_by),
            _bitmap_counts(sliding_all, sliding_by),
            events,
        )

    # --- reading -----------------------------------------------------------------------------
    def last_seen(self, user: int) -> tuple[int, str] | None:
        """(last event time ms, platform) of a user active within the sliding horizon (any thread)."""
        packed = self.users.lookup(user)
        if packed is None:
            return None
        return packed // PLATFORM_SLOTS, self._platforms[packed % PLATFORM_SLOTS]

    def active_users(self) -> int:
        return len(self.users)
