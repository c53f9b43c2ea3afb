"""Guard against topic explosion: which never-seen event types may get a topic of their own.

One :class:`NewTypeGate` per lane holds the lane's known per-event topics and admits a new one only
when its name matches the allowlist (if configured), the lane is under its total cap, and fewer than
``per_minute`` new types were admitted in the last 60 s (a sliding window on an injectable monotonic
clock). Refusals carry a reason code for the dead-letter topic. The state is per process: with
several router workers each enforces the rate on its own, while the total cap counts every topic
the lane already has (seeded from the broker at start).
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable, Iterable

EVENT_TYPE_QUOTA = "event_type_quota"
EVENT_NAME_NOT_ALLOWED = "event_name_not_allowed"
WINDOW_S = 60.0


class NewTypeGate:
    """Admission of per-event topics for one lane (pure: no I/O, clock injectable)."""

    def __init__(
        self,
        per_minute: int,
        max_types: int,
        allow_pattern: str | None = None,
        known_topics: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_minute = per_minute
        self.max_types = max_types
        self._allow = re.compile(allow_pattern) if allow_pattern else None
        self._clock = clock
        self._admitted_at: deque[float] = deque()
        self.known: set[str] = set(known_topics)

    @property
    def restricts_names(self) -> bool:
        """Whether an allowlist applies (then even known types are checked)."""
        return self._allow is not None

    def check(self, event_name: str, topic: str) -> tuple[str, str] | None:
        """None when events of ``event_name`` may go to ``topic`` now, else ``(reason, detail)``.

        Admitting a new topic records it as known; the caller must create it before acking.
        """
        if self._allow is not None and self._allow.fullmatch(event_name) is None:
            return EVENT_NAME_NOT_ALLOWED, f"event name does not match the allowlist {self._allow.pattern!r}"
        if topic in self.known:
            return None
        if len(self.known) >= self.max_types:
            return EVENT_TYPE_QUOTA, f"lane has {len(self.known)} event types, the cap is {self.max_types}"
        now = self._clock()
        window = self._admitted_at
        while window and now - window[0] >= WINDOW_S:
            window.popleft()
        if len(window) >= self.per_minute:
            return EVENT_TYPE_QUOTA, f"more than {self.per_minute} new event types in the last minute"
        window.append(now)
        self.known.add(topic)
        return None

    def forget(self, topic: str) -> None:
        """Undo an admission whose topic could not be created."""
        self.known.discard(topic)
