"""What the sessionizer reads, keeps, emits and checkpoints (plain values, no logic beyond merging)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

NO_TIME = -(1 << 62)


class SessionEvent(NamedTuple):
    """One event of the common topic, as far as sessions care."""

    offset: int
    ts_ms: int  # event time: client_ts, or server_ts when client_ts is missing or implausible
    user_id: str
    session_id: str | None  # the client's; None: the session is found by the inactivity gap
    event_name: str
    platform: str | None = None
    app_version: str | None = None


@dataclass(frozen=True)
class SessionSpec:
    gap_ms: int
    lateness_ms: int


@dataclass(slots=True)
class OpenSession:
    """A session still receiving events. ``first_offset`` is its identity within the partition;
    ``max_ts_before`` the partition's running maximum event time just before that offset was read
    (what a replay from ``first_offset`` must start the watermark from)."""

    user_id: str
    client_id: str | None
    first_offset: int
    max_ts_before: int
    start_ms: int
    end_ms: int
    first_key: tuple[int, int]  # (event time, offset) of the first event by event time
    last_key: tuple[int, int]
    first_event: str
    last_event: str
    platform: str | None
    app_version: str | None
    events: int = 1
    late_events: int = 0
    merged: bool = False  # absorbed into another gap session: its heap entries are stale

    @classmethod
    def start(cls, event: SessionEvent, max_ts_before: int, late: bool) -> OpenSession:
        key = (event.ts_ms, event.offset)
        return cls(
            event.user_id,
            event.session_id,
            event.offset,
            max_ts_before,
            event.ts_ms,
            event.ts_ms,
            key,
            key,
            event.event_name,
            event.event_name,
            event.platform,
            event.app_version,
            late_events=int(late),
        )

    def add(self, event: SessionEvent, late: bool) -> None:
        key = (event.ts_ms, event.offset)
        self.events += 1
        self.late_events += int(late)
        self.start_ms = min(self.start_ms, event.ts_ms)
        self.end_ms = max(self.end_ms, event.ts_ms)
        if key < self.first_key:
            self.first_key, self.first_event = key, event.event_name
            self.platform, self.app_version = event.platform, event.app_version
        if key > self.last_key:
            self.last_key, self.last_event = key, event.event_name

    def absorb(self, other: OpenSession) -> None:
        """Merge a gap session an event has bridged to this one (``other`` is discarded)."""
        other.merged = True
        self.events += other.events
        self.late_events += other.late_events
        self.start_ms = min(self.start_ms, other.start_ms)
        self.end_ms = max(self.end_ms, other.end_ms)
        if other.first_offset < self.first_offset:
            self.first_offset, self.max_ts_before = other.first_offset, other.max_ts_before
        if other.first_key < self.first_key:
            self.first_key, self.first_event = other.first_key, other.first_event
            self.platform, self.app_version = other.platform, other.app_version
        if other.last_key > self.last_key:
            self.last_key, self.last_event = other.last_key, other.last_event


class ClosedSession(NamedTuple):
    """A row of the sessions table. ``session_key`` (``<partition>-<first offset>``) is the row's
    identity: every event is in one session, so two rows never share a first offset, and a replay
    rebuilds the same key. ``closing_offset``: the offset whose reading closed it."""

    partition: int
    session_key: str
    user_id: str
    session_id: str
    start_ms: int
    end_ms: int
    event_count: int
    first_event: str
    last_event: str
    platform: str | None
    app_version: str | None
    late_events: int
    closing_offset: int

    @property
    def duration_s(self) -> float:
        return (self.end_ms - self.start_ms) / 1000


def derived_session_id(user_id: str, start_ms: int) -> str:
    """The id of a session found by the gap (the client sent none): a pure function of its data."""
    return f"{user_id}-t{start_ms}"


@dataclass(frozen=True)
class Checkpoint:
    """What the lake holds for one partition, committed with the rows it vouches for.

    * ``closed_through``: every session closed while reading offsets up to here is in the lake;
    * ``replay_offset``: the first offset of the oldest session still open then — a restart reads
      from here (or from ``closed_through + 1`` when none was open);
    * ``replay_max_ts``: the running maximum event time just before ``replay_offset``, so a replay
      moves the watermark exactly as the first reading did;
    * ``advances``: wall-clock moves of the event clock (a quiet partition) at offsets from
      ``replay_offset`` on, as (offset read before it, clock): they are not in the topic, so a
      replay needs them to close the same sessions at the same points.
    """

    closed_through: int
    replay_offset: int
    replay_max_ts: int
    advances: tuple[tuple[int, int], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "closed_through": self.closed_through,
            "replay_offset": self.replay_offset,
            "replay_max_ts": self.replay_max_ts,
            "advances": [list(pair) for pair in self.advances],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Checkpoint:
        return cls(
            int(doc["closed_through"]),
            int(doc["replay_offset"]),
            int(doc["replay_max_ts"]),
            tuple((int(at), int(clock)) for at, clock in doc.get("advances", ())),
        )


def encode_checkpoints(checkpoints: dict[str, Checkpoint]) -> str:
    return orjson.dumps({key: checkpoints[key].to_json() for key in sorted(checkpoints)}).decode()


def decode_checkpoints(text: str) -> dict[str, Checkpoint]:
    raw = orjson.loads(text)
    if not isinstance(raw, dict):
        raise ValueError(f"session checkpoints are not a JSON object: {text[:80]!r}")
    return {str(key): Checkpoint.from_json(value) for key, value in raw.items()}
