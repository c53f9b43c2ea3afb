"""The building blocks of the lake's commit path: barrier steps on a pool, and what a flush did."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, wait
from dataclasses import dataclass
from typing import TypeVar

from core.lake.columnar import FlushBatch
from core.lake.flush import FilePlan, PartitionBuffer
from core.lake.manifest import Manifest
from core.ports import OffsetStore

log = logging.getLogger(__name__)
T = TypeVar("T")
TP = tuple[str, int]
TableKey = tuple[str, str]


def run_step(pool: Executor, call: Callable[[T], object], items: Iterable[T]) -> list[BaseException | None]:
    """Run ``call`` over ``items`` on the pool and wait for **every** call; the outcome of each
    (None or its exception). A step is a barrier: nothing of the next step may start while a call
    of this one is still running."""
    futures = [pool.submit(call, item) for item in items]
    wait(futures)
    return [future.exception() for future in futures]


def raise_first(outcomes: Sequence[BaseException | None]) -> None:
    for outcome in outcomes:
        if outcome is not None:
            raise outcome


@dataclass(frozen=True)
class FlushResult:
    partitions: int = 0
    rows: int = 0
    files: int = 0
    bytes: int = 0
    unsettled: str | None = None  # the step (catalog/offsets) left pending, None when all done
    fenced: tuple[TP, ...] = ()  # partitions lost to another writer in this flush


@dataclass
class FlushWork:
    buffer: PartitionBuffer
    lane: str
    table: str
    plans: list[FilePlan]
    advanced: Manifest
    batch: FlushBatch  # the buffer's records, parsed or decoded for the files of ``plans``

    @property
    def groups(self) -> list[list[int]]:
        """The positions of each file's rows in ``batch``, in the order of ``plans``."""
        return [plan.positions for plan in self.plans]

    @property
    def values(self) -> set[str]:
        return {plan.value.path for plan in self.plans}

    @property
    def tp(self) -> TP:
        return (self.buffer.topic, self.buffer.partition)


def commit_offsets(pending: dict[TP, int], offsets: OffsetStore) -> str | None:
    """Commit the ``pending`` Kafka offsets (removing those committed); ``"offsets"`` when it failed.
    The lake (manifests or snapshots) holds them already: a failure only delays lag monitoring."""
    if not pending:
        return None
    committing = dict(pending)
    try:
        offsets.commit(committing)
    except Exception as exc:
        log.info("lake: offset commit deferred: %s", exc)
        return "offsets"
    for tp, offset in committing.items():
        if pending.get(tp) == offset:
            del pending[tp]
    return None
