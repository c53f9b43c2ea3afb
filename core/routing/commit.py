"""The router's commit path for one lane: what must be durable before an input offset is committed.

Delivery guarantee: **at-least-once, no commit past a failure.** For every batch of input records,
in input order, :class:`LaneCommitPath`:

1. classifies it (``core.routing.classify``: routed + projection, or one dead letter each);
2. creates the per-event topics of newly admitted event types (a name the broker refuses for good
   is dead-lettered as ``topic_create_failed``; a broker that does not answer is a failure);
3. enqueues every derived record — routed, projection, dead letters — on the producer;
4. once Kafka acknowledged every record of the **oldest** in-flight batch (records refused for good
   are dead-lettered and those letters acknowledged too), commits that batch's next offsets.

At most ``max_in_flight`` batches await their acknowledgements. Any failure to make a batch durable —
classifying, creating topics, sending, delivering, dead-lettering — marks the path failed and
propagates: from then on nothing is committed, not by a later batch, not by :meth:`drain` on a revoke
or a stop. The failed batch and every later one are consumed again after a restart: duplicates
downstream, never a gap. A commit that fails (a ``TransientError`` from the offset store, e.g. during
a rebalance) is different: its batch *is* durable, and commits are cumulative per partition, so the
next successful commit covers it. It is logged and counted (``commit_failures``), never fatal — at
worst the batch is routed again after a restart.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic

from core.errors import TerminalError, TransientError
from core.ports import OffsetStore
from core.routing.classify import BatchClassifier, ClassifiedBatch, OutRecord, SourceRecord
from core.routing.gate import NewTypeGate
from core.routing.ports import PendingT, RecordProducer, TopicAdmin
from core.settings import Settings

log = logging.getLogger(__name__)

TOPIC_CREATE_FAILED = "topic_create_failed"
PRODUCE_REFUSED = "produce_refused"
MAX_BATCHES_IN_FLIGHT = 4
SLOW_BATCH_S = 0.5


@dataclass
class BatchStats:
    """What one settled batch did (for metrics)."""

    events: int
    routed: int
    dead: int
    new_topics: int
    reasons: Counter[str] = field(default_factory=Counter)


@dataclass
class InFlight(Generic[PendingT]):
    """One batch whose records are enqueued, with the offsets to commit once all are acknowledged."""

    next_offsets: dict[tuple[str, int], int]
    events: int
    out: ClassifiedBatch
    records: list[OutRecord]
    pending: PendingT
    created: int


class LaneCommitPath(Generic[PendingT]):
    """Routes and commits one lane's input batches (see the module docstring); not thread-safe.

    ``route`` and ``drain`` are called from one thread (the lane's consumer thread); they block on
    topic creation and acknowledgements.
    """

    def __init__(
        self,
        settings: Settings,
        lane: str,
        admin: TopicAdmin,
        producer: RecordProducer[PendingT],
        decode: Callable[[bytes], dict[str, Any]],
        *,
        max_in_flight: int = MAX_BATCHES_IN_FLIGHT,
        on_settled: Callable[[BatchStats], None] = lambda stats: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lane = lane
        self.source_topic = settings.all_events_topic(lane)
        self.admin = admin
        self.producer = producer
        self.max_in_flight = max_in_flight
        self.on_settled = on_settled
        self.clock = clock
        known = admin.list_topics(settings.event_topic_pattern(lane))
        self.gate = NewTypeGate(
            settings.router_new_types_per_minute,
            settings.router_max_event_types,
            settings.router_event_name_allow,
            known_topics=known,
        )
        self.classifier = BatchClassifier(settings, lane, self.gate, decode)
        self.in_flight: deque[InFlight[PendingT]] = deque()
        self.failure: BaseException | None = None
        self.commit_failures = 0

    # --- the two entry points -----------------------------------------------------------------
    def route(self, batch: Sequence[SourceRecord], offsets: OffsetStore) -> None:
        """Enqueue ``batch``'s records, then settle and commit the oldest batches that are done."""
        self._check_not_failed()
        try:
            if batch:
                self.in_flight.append(self._prepare(batch))
            while self.in_flight and (
                self.in_flight[0].pending.done or len(self.in_flight) >= self.max_in_flight
            ):
                self._settle_oldest(offsets)
        except BaseException as exc:
            self._fail(exc)
            raise

    def drain(self, offsets: OffsetStore) -> None:
        """Settle and commit every in-flight batch, oldest first (before partitions go, or at stop).

        After a failure this commits nothing and returns quietly: the failure is already on its way
        up, and a revoke or a close that follows it must neither commit nor replace it.
        """
        if self.failure is not None:
            log.warning("lane %s: not committing %d batches after a failure", self.lane, len(self.in_flight))
            return
        try:
            while self.in_flight:
                self._settle_oldest(offsets)
        except BaseException as exc:
            self._fail(exc)
            raise

    def discard(self) -> None:
        """Forget the in-flight batches uncommitted (partitions lost: their new owner routes them again)."""
        if self.in_flight:
            log.warning("lane %s: %d batches left uncommitted", self.lane, len(self.in_flight))
        self.in_flight.clear()

    # --- steps ----------------------------------------------------------------------------------
    def _check_not_failed(self) -> None:
        if self.failure is not None:
            raise TerminalError(f"router for lane {self.lane} failed earlier: {self.failure!r}")

    def _fail(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc
            log.error("lane %s: routing failed; nothing more is committed: %r", self.lane, exc)

    def _prepare(self, batch: Sequence[SourceRecord]) -> InFlight[PendingT]:
        started = time.monotonic()
        out = self.classifier.classify(batch, int(self.clock() * 1000))
        created = 0
        if out.new_topics:
            created = self._create_topics(out)
            ready = sorted(out.new_topics & {record.topic for record in out.routed})
            if ready:
                self.producer.wait_for_topics(ready)
        records = out.records()
        pending = self.producer.send(records)
        next_offsets: dict[tuple[str, int], int] = {}
        for source in batch:
            key = (self.source_topic, source.partition)
            next_offsets[key] = max(next_offsets.get(key, 0), source.offset + 1)
        elapsed = time.monotonic() - started
        if elapsed > SLOW_BATCH_S:
            log.info("lane %s: %d events took %.3fs to classify and enqueue", self.lane, len(batch), elapsed)
        return InFlight(next_offsets, len(batch), out, records, pending, created)

    def _settle_oldest(self, offsets: OffsetStore) -> None:
        """Settle, then commit, the oldest batch; it leaves the queue only once committed."""
        oldest = self.in_flight[0]
        refused = self.producer.complete(oldest.records, oldest.pending)
        out = oldest.out
        if refused:
            self._dead_letter_refused(out, [(oldest.records[r.index], r.error) for r in refused])
        try:
            offsets.commit(oldest.next_offsets)
        except TransientError as exc:
            self.commit_failures += 1
            log.warning("lane %s: offset commit failed, the next one covers it: %s", self.lane, exc)
        self.in_flight.popleft()
        reasons = Counter(out.reasons)
        self.on_settled(BatchStats(oldest.events, len(out.routed), len(out.dead), oldest.created, reasons))

    def _create_topics(self, out: ClassifiedBatch) -> int:
        try:
            return len(self.admin.ensure_topics(out.new_topics))
        except TransientError:
            log.warning("creating %d topics together failed; trying one by one", len(out.new_topics))
        failed: dict[str, str] = {}
        created = 0
        for topic in sorted(out.new_topics):
            try:
                created += len(self.admin.ensure_topics([topic]))
            except TransientError as exc:
                failed[topic] = str(exc)
        if failed:
            # If the broker itself is away this raises too, and the batch is retried after a restart;
            # if it answers, these names are refused for good (e.g. a metric-name collision).
            self.admin.list_topics()
            for topic in failed:
                self.gate.forget(topic)
            doomed = [(record, failed[record.topic]) for record in out.routed if record.topic in failed]
            self._move_to_dlq(out, doomed, TOPIC_CREATE_FAILED)
        return created

    def _dead_letter_refused(self, out: ClassifiedBatch, refused: list[tuple[OutRecord, str]]) -> None:
        dlq = self.classifier.dlq_topic
        if any(record.topic == dlq for record, _ in refused):
            raise TerminalError(f"the dead-letter topic {dlq!r} refused records")
        record, error = refused[0]
        log.warning(
            "lane %s: Kafka refused %d records for good (first: %s to %s); dead-lettering their events",
            self.lane,
            len(refused),
            error,
            record.topic,
        )
        letters = self._move_to_dlq(out, refused, PRODUCE_REFUSED)
        still = self.producer.complete(letters, self.producer.send(letters))
        if still:
            raise TerminalError(f"the dead-letter topic refused {len(still)} records: {still[0].error}")

    def _move_to_dlq(
        self, out: ClassifiedBatch, failures: list[tuple[OutRecord, str]], reason: str
    ) -> list[OutRecord]:
        """Replace the routed+projection records of the failures' sources by dead letters."""
        sources: dict[int, tuple[SourceRecord, str]] = {}
        for record, error in failures:
            sources.setdefault(id(record.source), (record.source, error))
        out.routed = [r for r in out.routed if id(r.source) not in sources]
        out.projections = [r for r in out.projections if id(r.source) not in sources]
        letters = [self.classifier.dead_letter(source, reason, error) for source, error in sources.values()]
        out.dead.extend(letters)
        out.reasons[reason] += len(letters)
        return letters
