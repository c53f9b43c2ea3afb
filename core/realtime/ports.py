"""The interface the realtime commit path is written against; ``connectors.metrics_topic`` implements it.

Realtime's durable step is publishing closed-window partials (each carrying its checkpoint) to the
compacted ``<lane>.metrics.concurrency`` topic. :mod:`core.realtime.publish` orders that step over
this Protocol, so unit tests drive the real sequence with a fake that fails at any point.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class PartialPublisher(Protocol):
    """Hands partials to a transport and reports, on :meth:`wait`, whether all of them arrived."""

    def send(self, lane: str, key: str, record: Mapping[str, Any]) -> None:
        """Start publishing one partial (may return before it is acknowledged); raise if it cannot start."""

    def wait(self) -> None:
        """Block until every partial sent so far is acknowledged; raise if any was not."""
