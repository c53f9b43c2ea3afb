"""Reads that never stall the realtime consumer thread: immutable gauge snapshots on request.

The consumer thread is the only writer of the windows and never shares a lock with readers. A
``/metrics`` scrape asks it for a fresh snapshot (:meth:`SnapshotBoard.read`); the thread builds
one between batches (``idle`` runs after every poll, so within ``batch_wait_s`` plus the batch being
applied) and hands it over with one assignment under a lock held for O(1). If the thread is busy
longer than ``wait_s`` — a long apply, a blocking rebalance — the scrape answers with the newest
snapshot it has instead of waiting: slightly stale gauges, never a stalled scrape or a stalled
batch. A snapshot is built only when asked for, so an unscraped worker spends nothing on it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from core.realtime.exposition import LaneSnapshot

WAIT_S = 0.5


class SnapshotBoard:
    """Latest immutable snapshots of every lane, and whether a reader wants a newer one."""

    def __init__(self, wait_s: float = WAIT_S) -> None:
        self._wait_s = wait_s
        self._cond = threading.Condition()
        self._latest: Sequence[LaneSnapshot] = ()
        self._version = 0
        self._wanted = False
        self.built_at = 0.0  # monotonic time of the latest snapshot (0: none yet)

    @property
    def wanted(self) -> bool:
        return self._wanted

    def publish_if_wanted(self, build: Callable[[], Sequence[LaneSnapshot]]) -> None:
        """On the writer's thread, between batches: build and publish when a reader asked."""
        if not self._wanted:
            return
        snapshots = tuple(build())
        with self._cond:
            self._latest = snapshots
            self._version += 1
            self._wanted = False
            self.built_at = time.monotonic()
            self._cond.notify_all()

    def read(self) -> Sequence[LaneSnapshot]:
        """A fresh snapshot if the writer delivers one within ``wait_s``, else the newest one."""
        with self._cond:
            version = self._version
            self._wanted = True
            self._cond.wait_for(lambda: self._version != version, timeout=self._wait_s)
            return self._latest
