"""The sessions table's commit path: closed sessions and the checkpoints that vouch for them, together.

One lane's sessions table holds, in each commit (one Iceberg snapshot), the rows of every session
closed since the last commit **and** each written partition's :class:`~core.sessions.model.Checkpoint`
(in the snapshot summary). Rows and checkpoints become visible together or not at all, so:

* a crash before the commit loses nothing: the restart reads the previous checkpoint and replays
  from its ``replay_offset``; every session closed after its ``closed_through`` is emitted again;
* a crash after it duplicates nothing: the replay rebuilds the sessions it had emitted, closes them
  at the same offsets — at or before ``closed_through`` — and skips them;
* a commit whose answer was lost looks, on the next attempt, like another writer's (the head moved):
  the partitions are recovered from the head again, which is this writer's own commit.

Fencing: a commit goes through only if the head's checkpoints of the partitions written are still
the ones this writer recovered or last committed; otherwise another writer owns them (or the lost
answer above) — nothing is committed, their state is dropped and recovered from the head.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from core.sessions.model import Checkpoint, ClosedSession, SessionSpec
from core.sessions.sessionizer import PartitionSessionizer

log = logging.getLogger(__name__)
TP = tuple[str, int]


def tp_key(topic: str, partition: int) -> str:
    return f"{topic}/{partition}"


class SessionTables(Protocol):
    """The lanes' sessions tables as the commit path needs them (``connectors.sessions_lake``)."""

    def head(self, lane: str) -> dict[str, Checkpoint]:
        """Per ``topic/partition``, the newest committed checkpoint (empty: no table yet)."""
        ...

    def append(
        self,
        lane: str,
        rows: Sequence[ClosedSession],
        expected: Mapping[str, Checkpoint | None],
        written: Mapping[str, Checkpoint],
    ) -> bool:
        """Commit ``rows`` and the head's checkpoints updated with ``written`` in one snapshot, only
        if the head's checkpoints of ``expected``'s partitions equal it; False (nothing committed)
        otherwise. Raises when the commit failed (it may have landed: see the module docstring)."""
        ...


@dataclass(frozen=True)
class Flushed:
    rows: int = 0
    commits: int = 0
    fenced: tuple[TP, ...] = ()
    by_lane: Mapping[str, int] = field(default_factory=dict)


@dataclass
class SessionCommitter:
    """Per assigned partition its sessionizer and last committed checkpoint; the lanes' tables."""

    tables: SessionTables
    spec: SessionSpec
    lane_of: Mapping[str, str]  # common topic → lane
    sessionizers: dict[TP, PartitionSessionizer] = field(default_factory=dict)
    committed: dict[TP, Checkpoint | None] = field(default_factory=dict)
    rows_committed: int = 0

    def recover(self, partitions: Iterable[TP]) -> dict[TP, int | None]:
        """Take over partitions: their state from the head; where reading starts (None: beginning)."""
        wanted = [tp for tp in partitions if tp[0] in self.lane_of]
        heads = {lane: self.tables.head(lane) for lane in sorted({self.lane_of[t] for t, _ in wanted})}
        starts: dict[TP, int | None] = {}
        for tp in wanted:
            checkpoint = heads[self.lane_of[tp[0]]].get(tp_key(*tp))
            sessionizer = PartitionSessionizer(tp[1], self.spec, checkpoint)
            self.sessionizers[tp] = sessionizer
            self.committed[tp] = checkpoint
            starts[tp] = sessionizer.start_offset
        return starts

    def release(self, partitions: Iterable[TP]) -> None:
        for tp in partitions:
            self.sessionizers.pop(tp, None)
            self.committed.pop(tp, None)

    def pending(self) -> int:
        """Closed sessions not yet committed."""
        return sum(len(s.closed) for s in self.sessionizers.values())

    def flush(self, partitions: Iterable[TP] | None = None) -> Flushed:
        """Commit every closed session (of ``partitions``, default all) with its checkpoint, one
        commit per lane. Raises when a commit failed: the rows stay pending."""
        chosen = self.sessionizers.keys() if partitions is None else partitions
        by_lane: dict[str, list[TP]] = {}
        for tp in chosen:
            if tp in self.sessionizers and self.sessionizers[tp].closed:
                by_lane.setdefault(self.lane_of[tp[0]], []).append(tp)
        rows: dict[str, int] = {}
        fenced: list[TP] = []
        for lane, tps in sorted(by_lane.items()):
            rows[lane], refused = self._commit(lane, sorted(tps))
            fenced += refused
        commits = sum(1 for lane in by_lane if rows[lane] or not any(tp in fenced for tp in by_lane[lane]))
        return Flushed(sum(rows.values()), commits, tuple(fenced), rows)

    def _commit(self, lane: str, tps: list[TP]) -> tuple[int, list[TP]]:
        taken = {tp: self.sessionizers[tp].take() for tp in tps}
        rows = [row for closed, _ in taken.values() for row in closed]
        expected = {tp_key(*tp): self.committed[tp] for tp in tps}
        written = {tp_key(*tp): checkpoint for tp, (_, checkpoint) in taken.items()}
        try:
            ok = self.tables.append(lane, rows, expected, written)
        except BaseException:
            for tp, (closed, _) in taken.items():  # kept for the next attempt, in order
                self.sessionizers[tp].closed[:0] = closed
            raise
        if not ok:
            log.warning("sessions: %s written by another worker (or our lost commit); recovering", tps)
            self.release(tps)
            self.recover(tps)
            return 0, tps
        for tp, (_, checkpoint) in taken.items():
            self.committed[tp] = checkpoint
        self.rows_committed += len(rows)
        return len(rows), []

    def positions(self) -> dict[TP, int]:
        """Per partition the committed replay offset (the consumer group's position, for lag)."""
        return {tp: c.replay_offset for tp, c in self.committed.items() if c is not None}
