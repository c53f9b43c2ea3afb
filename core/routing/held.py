"""Routed records waiting for their per-event topic, held per topic in arrival order (pure).

A new event type's topic is created off the hot path (``connectors.topic_provisioner``); until the
producer can send to it, that type's records wait here while every other type flows. Once a topic
has records waiting, later records of the same topic wait behind them, so one user's events within a
type are never reordered; release hands a topic's records back oldest first.
"""

from __future__ import annotations

from collections.abc import Iterable

from core.routing.classify import OutRecord


class HeldRecords:
    """Records per topic, with the time the oldest of them started waiting (monotonic seconds).

    ``count`` is the number of events held (each is its routed record and its projection).
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
        """Hold ``records`` (an event's routed record and its projection) until ``topic`` is ready."""
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
