"""Sessions of one partition of the common topic, in event time, rebuilt identically by a replay.

Rules (docs/analytics.md, "Sessions"):

* an event with a client ``session_id`` belongs to that user's open session of that id; one without
  belongs to the user's open gap session it is within ``gap`` of (bridging two merges them), else
  it opens one;
* the watermark is the partition's maximum event time read so far minus the allowed lateness; a
  session closes when the watermark passes its last event time + ``gap`` — no on-time event can
  join it any more. Closing is checked as each event is read, so it depends only on the
  partition's event sequence (and on :meth:`PartitionSessionizer.advance`, see below);
* a *late* event (event time behind the watermark) is never dropped and never changes a closed
  session: it joins an open session if one fits, else opens a new one, and ``late_events`` counts it
  in whichever row it lands;
* :meth:`PartitionSessionizer.advance` moves the clock of a quiet partition on the wall clock. It
  is recorded (only when it closes something) in the :class:`~core.sessions.model.Checkpoint`, so
  that a replay applies it at the same point.

Exactly once: a restart replays from the checkpoint's ``replay_offset`` with its ``replay_max_ts``
and advances; the watermark then moves exactly as in the first reading, so every session closes
at the same point as before, and those closed while the replay is still within what the checkpoint
covers (offsets up to ``closed_through``, and its recorded advances) — already in the lake — are not
emitted again. No wall-clock advance is made before the replay is through (:attr:`replaying`).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field

from core.sessions.model import (
    NO_TIME,
    Checkpoint,
    ClosedSession,
    OpenSession,
    SessionEvent,
    SessionSpec,
    derived_session_id,
)

UserKey = tuple[str, str | None]


@dataclass
class PartitionSessionizer:
    partition: int
    spec: SessionSpec
    resume: Checkpoint | None = None
    max_ts: int = NO_TIME
    position: int = -1  # the last offset read
    open: dict[UserKey, list[OpenSession]] = field(default_factory=dict)
    closed: list[ClosedSession] = field(default_factory=list)  # not yet taken by the commit path
    skipped: int = 0  # sessions a replay rebuilt that the lake already holds
    late: int = 0
    _heap: list[tuple[int, int, OpenSession]] = field(default_factory=list)
    _seq: int = 0
    _advances: list[tuple[int, int]] = field(default_factory=list)
    _pending: list[tuple[int, int]] = field(default_factory=list)  # advances a replay still applies
    _emit_after: int = -1

    def __post_init__(self) -> None:
        if self.resume is not None:
            self.max_ts = self.resume.replay_max_ts
            self.position = self.resume.replay_offset - 1
            self._pending = sorted(self.resume.advances)
            self._emit_after = self.resume.closed_through

    @property
    def start_offset(self) -> int | None:
        """Where reading starts: None for the beginning of the partition."""
        return None if self.resume is None else self.resume.replay_offset

    @property
    def replaying(self) -> bool:
        """Still rebuilding what the committed checkpoint covers: a live advance now would move the
        clock where the first reading did not, so none is made until the replay is through."""
        return self.position < self._emit_after or bool(self._pending)

    @property
    def watermark(self) -> int:
        return NO_TIME if self.max_ts == NO_TIME else self.max_ts - self.spec.lateness_ms

    def open_count(self) -> int:
        return sum(len(sessions) for sessions in self.open.values())

    # --- reading -------------------------------------------------------------------------------
    def feed(self, events: Iterable[SessionEvent]) -> None:
        """Read events in offset order; what closes goes to :attr:`closed`."""
        for event in events:
            if event.offset <= self.position:
                continue  # read before (a replay that started early, a seek back)
            self._replay_advances(event.offset - 1)
            self._read(event)
        self._replay_advances(self.position)

    def _read(self, event: SessionEvent) -> None:
        late = self.max_ts != NO_TIME and event.ts_ms < self.watermark
        self.late += int(late)
        key = (event.user_id, event.session_id)
        sessions = self.open.get(key)
        if event.session_id is not None:
            joined = sessions[0] if sessions else None
            if joined is not None:
                joined.add(event, late)
        else:
            joined = self._join_gap(sessions or [], event, late)
        if joined is None:
            joined = OpenSession.start(event, self.max_ts, late)
            self.open.setdefault(key, []).append(joined)
            self._push(joined)
        self.position = event.offset
        if event.ts_ms > self.max_ts:
            self.max_ts = event.ts_ms
            self._close(event.offset, replayed=event.offset <= self._emit_after)

    def _join_gap(self, sessions: list[OpenSession], event: SessionEvent, late: bool) -> OpenSession | None:
        gap = self.spec.gap_ms
        near = [s for s in sessions if s.start_ms - gap <= event.ts_ms <= s.end_ms + gap]
        if not near:
            return None
        keep = min(near, key=lambda s: s.first_offset)
        keep.add(event, late)
        for other in near:
            if other is not keep:
                keep.absorb(other)
                sessions.remove(other)
        return keep

    def _push(self, session: OpenSession) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (session.end_ms + self.spec.gap_ms, self._seq, session))

    # --- closing -------------------------------------------------------------------------------
    def _close(self, at_offset: int, replayed: bool) -> int:
        """Close every session the watermark has passed; how many closed. ``replayed``: closed at a
        point the committed checkpoint covers — the lake has those sessions already."""
        watermark, heap, closed = self.watermark, self._heap, 0
        while heap and heap[0][0] < watermark:
            _, _, session = heapq.heappop(heap)
            if session.merged:
                continue  # absorbed into another session, which has its own entry
            if session.end_ms + self.spec.gap_ms >= watermark:
                self._push(session)  # its end moved since it was pushed (one entry per session)
                continue
            sessions = self.open[(session.user_id, session.client_id)]
            sessions.remove(session)
            if not sessions:
                del self.open[(session.user_id, session.client_id)]
            closed += 1
            if replayed:
                self.skipped += 1
            else:
                self.closed.append(self._row(session, at_offset))
        return closed

    def _row(self, session: OpenSession, at_offset: int) -> ClosedSession:
        return ClosedSession(
            self.partition,
            f"{self.partition}-{session.first_offset}",
            session.user_id,
            session.client_id or derived_session_id(session.user_id, session.start_ms),
            session.start_ms,
            session.end_ms,
            session.events,
            session.first_event,
            session.last_event,
            session.platform,
            session.app_version,
            session.late_events,
            at_offset,
        )

    def advance(self, clock_ms: int) -> int:
        """Move a quiet partition's event clock to ``clock_ms`` (the caller derives it from the wall
        clock); recorded and kept only when it closes something. How many sessions it closed."""
        if self.max_ts == NO_TIME or clock_ms <= self.max_ts or self.position < 0 or self.replaying:
            return 0
        due = clock_ms - self.spec.lateness_ms
        if not any(s.end_ms + self.spec.gap_ms < due for group in self.open.values() for s in group):
            return 0
        return self._apply_advance(self.position, clock_ms, replayed=False)

    def _apply_advance(self, at_offset: int, clock_ms: int, replayed: bool) -> int:
        self.max_ts = max(self.max_ts, clock_ms)
        self._advances.append((at_offset, clock_ms))
        return self._close(at_offset, replayed)

    def _replay_advances(self, through: int) -> None:
        while self._pending and self._pending[0][0] <= through:
            at_offset, clock_ms = self._pending.pop(0)
            self._apply_advance(at_offset, clock_ms, replayed=True)

    # --- checkpoint ------------------------------------------------------------------------------
    def checkpoint(self) -> Checkpoint:
        """The state to commit with everything closed so far (read: after every session in
        :attr:`closed` is in the same commit)."""
        oldest = min(
            (s for sessions in self.open.values() for s in sessions),
            key=lambda s: s.first_offset,
            default=None,
        )
        if oldest is None:
            replay, replay_max_ts = self.position + 1, self.max_ts
        else:
            replay, replay_max_ts = oldest.first_offset, oldest.max_ts_before
        advances = tuple(pair for pair in (*self._advances, *self._pending) if pair[0] >= replay)
        self._advances = [pair for pair in self._advances if pair[0] >= replay]
        closed_through = max(self.position, self._emit_after)
        return Checkpoint(closed_through, replay, replay_max_ts, advances)

    def take(self) -> tuple[list[ClosedSession], Checkpoint]:
        """Everything closed and not yet taken, with the checkpoint that vouches for it."""
        rows, self.closed = self.closed, []
        return rows, self.checkpoint()
