"""Records waiting for a new per-event topic (pure).

A new event type's topic is created off the hot path (``connectors.topic_provisioner``); until the
producer can send to it, that type's routed records wait in :class:`HeldRecords` while every other
type flows. Once a topic has records waiting, later records of the same topic wait behind them, so
one user's events within a type are never reordered; release hands a topic's records back oldest
first.

Projections (the common topic) wait in :class:`ProjectionQueue`: once one event's projection waits
for its type's topic, every later projection waits behind it. The common topic is read in order by
the realtime and sessions stages, whose windows close on event time: a held event's projection sent
after later events' would arrive behind the watermark (counted late) if the topic took longer than
the allowed lateness. In exactly-once mode nothing of the unit is visible before its commit anyway,
so keeping the order costs no latency.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from core.routing.classify import OutRecord


class HeldRecords:
    """Records per topic, with the time the oldest of them started waiting (monotonic seconds).

    ``count`` is the number of events held.
    """

    def __init__(self) -> None:
        self._by_topic: dict[str, list[OutRecord]] = {}
        self._since: dict[str, float] = {}
        self._events: dict[str, int] = {}
        self.count = 0

    def __contains__(self, topic: object) -> bool:
        return topic in self._by_topic

    def __bool__(self) -> bool:
        return self.count > 0

    @property
    def topics(self) -> list[str]:
        return sorted(self._by_topic)

    def hold(self, topic: str, records: Iterable[OutRecord], now: float) -> None:
        """Hold ``records`` (an event's routed record) until ``topic`` is ready."""
        waiting = self._by_topic.get(topic)
        if waiting is None:
            waiting = self._by_topic[topic] = []
            self._since[topic] = now
        waiting.extend(records)
        self._events[topic] = self._events.get(topic, 0) + 1
        self.count += 1

    def release(self, topic: str) -> list[OutRecord]:
        """The topic's records, oldest first; the topic no longer waits."""
        records = self._by_topic.pop(topic, [])
        self._since.pop(topic, None)
        self.count -= self._events.pop(topic, 0)
        return records

    def oldest_wait(self, now: float) -> float:
        """Seconds the longest-waiting topic has waited (0 when nothing waits)."""
        return now - min(self._since.values()) if self._since else 0.0

    def clear(self) -> None:
        self._by_topic.clear()
        self._since.clear()
        self._events.clear()
        self.count = 0


class ProjectionQueue:
    """Projections in input order; each waits for the topic its event is held for, if any."""

    def __init__(self) -> None:
        self._queue: deque[tuple[str | None, OutRecord]] = deque()

    def __bool__(self) -> bool:
        return bool(self._queue)

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, projection: OutRecord, waits_for: str | None) -> list[OutRecord]:
        """What may be sent now: the projection itself, unless it waits or others wait before it."""
        if waits_for is None and not self._queue:
            return [projection]
        self._queue.append((waits_for, projection))
        return []

    def release(self, topic: str, keep: bool) -> list[OutRecord]:
        """``topic`` is ready (``keep``) or refused (its events' projections are dropped with them);
        returns the projections that no longer wait, oldest first."""
        if keep:
            queue = deque((None if wanted == topic else wanted, record) for wanted, record in self._queue)
        else:
            queue = deque(entry for entry in self._queue if entry[0] != topic)
        ready: list[OutRecord] = []
        while queue and queue[0][0] is None:
            ready.append(queue.popleft()[1])
        self._queue = queue
        return ready

    def clear(self) -> None:
        self._queue.clear()
