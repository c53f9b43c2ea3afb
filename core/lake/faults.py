"""Storage and catalog faults of the lake: how long they have lasted, and what ``/health`` says.

A *permanent* fault (a missing bucket, denied access, wrong keys, a Glue ``AccessDeniedException``)
will not go away by itself: the stage reports ``degraded`` at once, with the code, where and the fix,
and retries slowly (``lake_error_retry_s``) so that fixing it recovers the stage unattended. A
*transient* fault (an endpoint down, 5xx, throttling) is retried with a short backoff and only
reported once it has lasted :data:`TRANSIENT_DEGRADED_AFTER_S`.

Faults are tracked per (source, operation) — ``storage``/``catalog`` and ``put``, ``get``, ``list``,
``delete``, ``read``, ``table``… — and a success clears only its own operation: read-only credentials
fail every ``put`` while ``get`` works, and must stay reported. Called from the store's and the
catalog's threads; read from the event loop.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Kind = Literal["permanent", "transient"]
TRANSIENT_DEGRADED_AFTER_S = 15.0
"""A transient fault this long without a success of the same operation makes the stage degraded."""
LOG_EVERY_S = 60.0
"""A permanent fault is logged (ERROR) when it starts and then at most this often while it lasts."""


@dataclass(frozen=True)
class Fault:
    """One classified failure: ``code`` (e.g. ``NoSuchBucket``), ``where`` (bucket/key or catalog
    table) and ``fix`` (what an operator does about it)."""

    kind: Kind
    code: str
    where: str
    fix: str
    detail: str = ""

    def describe(self) -> str:
        return f"{self.code} at {self.where}: {self.fix}"


@dataclass
class _Streak:
    fault: Fault
    since: float
    logged_at: float


class FaultTracker:
    """Current fault streaks and counts of every fault seen (for the metric)."""

    def __init__(
        self,
        retry_s: float = 30.0,
        transient_after_s: float = TRANSIENT_DEGRADED_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.retry_s = retry_s
        self.transient_after_s = transient_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._streaks: dict[tuple[str, str], _Streak] = {}
        self.counts: Counter[tuple[str, Kind]] = Counter()

    def failed(self, source: str, operation: str, fault: Fault) -> bool:
        """Record a failure; True when it should be logged at ERROR (a permanent fault that starts,
        changes, or has not been logged for :data:`LOG_EVERY_S`)."""
        now = self._clock()
        with self._lock:
            self.counts[(source, fault.kind)] += 1
            streak = self._streaks.get((source, operation))
            if streak is None or streak.fault.kind != fault.kind:
                self._streaks[(source, operation)] = _Streak(fault, now, now)
                return fault.kind == "permanent"
            changed = streak.fault.code != fault.code
            streak.fault = fault
            if fault.kind == "permanent" and (changed or now - streak.logged_at >= LOG_EVERY_S):
                streak.logged_at = now
                return True
            return False

    def succeeded(self, source: str, operation: str) -> Fault | None:
        """Clear the operation's streak; the fault it ended (to log the recovery), or None."""
        if not self._streaks:  # the common case, without the lock
            return None
        with self._lock:
            streak = self._streaks.pop((source, operation), None)
        return streak.fault if streak else None

    def latest(self) -> Fault | None:
        """The fault of the streak that failed most recently began, or None (for a give-up message)."""
        with self._lock:
            streaks = sorted(self._streaks.values(), key=lambda streak: streak.since)
        return streaks[-1].fault if streaks else None

    def permanent(self, source: str) -> bool:
        with self._lock:
            return any(s.fault.kind == "permanent" for (src, _), s in self._streaks.items() if src == source)

    def reason(self) -> str | None:
        """Why the stage is degraded (permanent faults first, then long transient ones), or None.
        Operations failing with the same code are reported once, with the longest duration."""
        now = self._clock()
        with self._lock:
            streaks = list(self._streaks.items())
        grouped: dict[tuple[str, str, str], tuple[list[str], float, Fault]] = {}
        for (source, operation), streak in streaks:
            key = (source, streak.fault.kind, streak.fault.code)
            operations, since, fault = grouped.get(key, ([], streak.since, streak.fault))
            grouped[key] = ([*operations, operation], min(since, streak.since), fault)
        reasons: list[str] = []
        for (source, kind, _), (operations, since, fault) in sorted(
            grouped.items(), key=lambda item: item[0][1] != "permanent"
        ):
            waited = now - since
            if kind == "transient" and waited < self.transient_after_s:
                continue
            retry = f" (retried every {self.retry_s:.0f}s)" if kind == "permanent" else ""
            ops = "/".join(sorted(operations))
            reasons.append(f"{source} {ops} failing for {waited:.0f}s, {kind}: {fault.describe()}{retry}")
        return "; ".join(reasons) or None
