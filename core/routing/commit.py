"""The router's commit path for one lane: what must be durable before an input offset is committed.

Work is grouped in **units**: every record derived from the input batches read since the last
commit, with the input offsets those batches end at. For each batch, in input order,
:class:`LaneCommitPath`

1. classifies it (``core.routing.classify``: routed + projection, or one dead letter each);
2. asks for the topics of newly admitted event types (``TopicProvisioning``, off the hot path) and
   *holds* the routed records of types whose topic is not ready yet (``core.routing.held``) while
   every other record is sent at once;
3. commits the unit through the ``OutputSession`` once it is ``router_commit_interval_s`` old and
   nothing in it waits for a topic. With an atomic session (Kafka transactions, the default) the
   unit's records and its input offsets become visible together or not at all — a crash leaves no
   duplicates in the per-event, common or dead-letter topics. Otherwise every record is acknowledged
   before the offsets are committed (at least once).

Records Kafka refuses for good are dead-lettered (``produce_refused``) and the unit committed again;
topics the broker refuses for good dead-letter their events (``topic_create_failed``).

Failures: anything that keeps a unit from being durable — a broker away, a produce or commit timing
out, a new topic not ready within ``router_topic_wait_s`` — raises out of :meth:`route` /
:meth:`tick` after marking the path failed. From then on nothing is committed (:meth:`flush` on a
revoke or stop refuses) until :meth:`discard` drops the unit; the consumer service then reads again
from the last committed offsets. Nothing past a failure is ever committed, so the failed unit and
everything after it are routed again: no gap, and in exactly-once mode no duplicate either.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.errors import TerminalError, TransientError
from core.routing.classify import BatchClassifier, OutRecord, SourceRecord
from core.routing.gate import NewTypeGate
from core.routing.held import HeldRecords, ProjectionQueue
from core.routing.ports import InputGroup, OutputSession, RefusedRecord, TopicProvisioning
from core.settings import Settings

log = logging.getLogger(__name__)

TOPIC_CREATE_FAILED = "topic_create_failed"
PRODUCE_REFUSED = "produce_refused"
MAX_REFUSAL_ROUNDS = 3
HOLD_POLL_S = 0.02


@dataclass
class UnitStats:
    """What one committed unit did (for metrics)."""

    events: int = 0
    routed: int = 0
    dead: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


@dataclass
class Unit:
    """Records sent since the last commit (in send order) and the input offsets they cover."""

    opened_at: float
    records: list[OutRecord] = field(default_factory=list)
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    stats: UnitStats = field(default_factory=UnitStats)


class LaneCommitPath:
    """Routes and commits one lane's input (see the module docstring); not thread-safe.

    Every method is called from the lane's consumer thread. ``known_topics`` are the lane's
    per-event topics that exist already (ready to send to).
    """

    def __init__(
        self,
        settings: Settings,
        lane: str,
        session: OutputSession,
        provisioning: TopicProvisioning,
        decode: Callable[[bytes], dict[str, Any]],
        known_topics: Iterable[str],
        *,
        on_committed: Callable[[UnitStats], None] = lambda stats: None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.lane = lane
        self.source_topic = settings.all_events_topic(lane)
        self.session = session
        self.provisioning = provisioning
        self.commit_interval_s = settings.router_commit_interval_s
        self.topic_wait_s = settings.router_topic_wait_s
        self.max_pending = settings.router_max_pending_events
        self.on_committed = on_committed
        self.clock = clock
        self.wall_clock = wall_clock
        self.ready: set[str] = set(known_topics)
        self.refused_topics: dict[str, str] = {}
        self.gate = NewTypeGate(
            settings.router_new_types_per_minute,
            settings.router_max_event_types,
            settings.router_event_name_allow,
            known_topics=self.ready,
        )
        self.classifier = BatchClassifier(settings, lane, self.gate, decode)
        self.held = HeldRecords()
        self.projections = ProjectionQueue()
        self.unit: Unit | None = None
        self.failure: BaseException | None = None

    # --- entry points (the consumer thread) ---------------------------------------------------
    def route(self, batch: Sequence[SourceRecord], group: InputGroup) -> None:
        """Send ``batch``'s records (holding those whose topic is not ready); commit when due."""
        self._guarded(lambda: self._route(batch, group))

    def tick(self, group: InputGroup) -> None:
        """Time-based work after every poll: release ready topics, commit a due unit."""
        self._guarded(lambda: self._tick(group))

    def flush(self, group: InputGroup) -> None:
        """Commit the open unit now (partitions are going, or the service stops).

        After a failure, or while records still wait for a topic, the unit is aborted instead: its
        input is routed again by whoever reads these partitions next.
        """
        if self.unit is None:
            return
        if self.failure is not None or self.held:
            log.warning(
                "lane %s: aborting %d uncommitted events (%s)",
                self.lane,
                self.unit.stats.events,
                "after a failure" if self.failure is not None else f"{self.held.count} wait for topics",
            )
            self.discard()
            return
        self._guarded(lambda: self._commit(group))

    def discard(self) -> None:
        """Drop the open unit and what it holds, uncommitted; the path can be used again."""
        self.session.abort()
        self.unit = None
        self.held.clear()
        self.projections.clear()
        self.failure = None

    @property
    def pending_events(self) -> int:
        return self.unit.stats.events if self.unit is not None else 0

    # --- steps ----------------------------------------------------------------------------------
    def _guarded(self, step: Callable[[], None]) -> None:
        if self.failure is not None:
            raise TerminalError(f"router for lane {self.lane} failed earlier: {self.failure!r}")
        try:
            step()
        except BaseException as exc:
            self.failure = exc
            log.error("lane %s: routing failed; nothing more is committed: %r", self.lane, exc)
            raise

    def _open(self) -> Unit:
        if self.unit is None:
            self.session.begin()
            self.unit = Unit(self.clock())
        return self.unit

    def _route(self, batch: Sequence[SourceRecord], group: InputGroup) -> None:
        if not batch:
            return
        unit = self._open()
        self._apply_provisioning()
        out = self.classifier.classify(batch, int(self.wall_clock() * 1000))
        ready, held, now, refused = self.ready, self.held, self.clock(), self.refused_topics
        to_send: list[OutRecord] = []
        projections: list[OutRecord] = []
        doomed = 0
        asked: set[str] = {topic for topic in out.new_topics if topic not in refused}
        # An event's projection waits while its routed record does (and behind any that waits, see
        # core.routing.held), and is dropped when the event is dead-lettered instead: each event is
        # routed and projected, or neither.
        queue = self.projections
        for record, projection in zip(out.routed, out.projections, strict=True):
            topic = record.topic
            if topic in ready and topic not in held:
                to_send.append(record)
                projections.extend(queue.add(projection, None))
            elif topic in refused:
                self.gate.forget(topic)
                out.dead.append(self._dead_letter(record, TOPIC_CREATE_FAILED, refused[topic]))
                out.reasons[TOPIC_CREATE_FAILED] += 1
                doomed += 1
            else:
                # Every topic that starts waiting is asked for, not only the batch's new ones: a type
                # admitted by a batch that then failed (and was discarded) was never requested.
                if topic not in held:
                    asked.add(topic)
                held.hold(topic, (record,), now)
                queue.add(projection, topic)
        if asked:
            self.provisioning.request(asked)
        self._send(to_send + projections + out.dead)
        stats = unit.stats
        stats.events += len(batch)
        stats.routed += len(out.routed) - doomed
        stats.dead += len(out.dead)
        stats.reasons.update(out.reasons)
        offsets = unit.next_offsets
        for source in batch:
            key = (self.source_topic, source.partition)
            if source.offset >= offsets.get(key, 0):
                offsets[key] = source.offset + 1
        if held and stats.events >= self.max_pending:
            self._wait_for_topics()
        self._tick(group)

    def _tick(self, group: InputGroup) -> None:
        if self.unit is None:
            return
        self._apply_provisioning()
        if self.held:
            waited = self.held.oldest_wait(self.clock())
            if waited > self.topic_wait_s:
                topics = self.held.topics
                raise TransientError(
                    f"{self.held.count} events of {len(topics)} new types waited {waited:.0f}s for their "
                    f"topics (e.g. {topics[0]})"
                )
            return
        if self.clock() - self.unit.opened_at >= self.commit_interval_s:
            self._commit(group)

    def _wait_for_topics(self) -> None:
        """Backpressure: the unit is full and cannot commit before its held topics are ready."""
        deadline = self.clock() + self.topic_wait_s
        while self.held and self.clock() < deadline:
            time.sleep(HOLD_POLL_S)
            self._apply_provisioning()

    def _apply_provisioning(self) -> None:
        ready, refused = self.provisioning.take_results()
        for topic in ready:
            self.ready.add(topic)
            self._send(self.held.release(topic) + self.projections.release(topic, keep=True))
        for topic, reason in refused.items():
            self.refused_topics[topic] = reason
            records = self.held.release(topic)
            self.gate.forget(topic)  # a refused name does not count toward the lane's type cap
            dead = [self._dead_letter(record, TOPIC_CREATE_FAILED, reason) for record in records]
            if self.unit is not None:
                self.unit.stats.dead += len(dead)
                self.unit.stats.routed -= len(dead)
                self.unit.stats.reasons[TOPIC_CREATE_FAILED] += len(dead)
            self._send(dead + self.projections.release(topic, keep=False))

    def _send(self, records: list[OutRecord]) -> None:
        if not records:
            return
        unit = self._open()
        refused = self.session.send(records)
        if refused:
            log.warning(
                "lane %s: Kafka refused %d records for good (first: %s); dead-lettering them",
                self.lane,
                len(refused),
                refused[0][1],
            )
            dead = [self._dead_letter(records[index], PRODUCE_REFUSED, error) for index, error in refused]
            still = self.session.send(dead)
            if still:
                raise TerminalError(f"lane {self.lane}: a dead letter was refused too: {still[0][1]}")
            gone = {index for index, _ in refused}
            records = [record for index, record in enumerate(records) if index not in gone] + dead
            unit.stats.dead += len(dead)
            unit.stats.reasons[PRODUCE_REFUSED] += len(dead)
        unit.records.extend(records)

    def _dead_letter(self, record: OutRecord, reason: str, detail: str) -> OutRecord:
        return self.classifier.dead_letter(record.source, reason, f"{record.topic}: {detail}")

    def _commit(self, group: InputGroup) -> None:
        unit = self.unit
        if unit is None:
            return
        for _ in range(MAX_REFUSAL_ROUNDS):
            refused = self.session.commit(unit.next_offsets, group)
            if not refused:
                self.unit = None
                self.on_committed(unit.stats)
                return
            self._replace_refused(unit, refused)
        raise TerminalError(
            f"lane {self.lane}: Kafka kept refusing records after {MAX_REFUSAL_ROUNDS} rounds"
        )

    def _replace_refused(self, unit: Unit, refused: list[RefusedRecord]) -> None:
        """Dead-letter the records Kafka refused at commit; re-send the unit if it was aborted."""
        # Identical records (an input event sent twice) are refused once each: match them by count.
        wanted: dict[tuple[str, bytes], list[str]] = {}
        for refusal in refused:
            wanted.setdefault((refusal.topic, refusal.value), []).append(refusal.error)
        keep: list[OutRecord] = []
        dead: list[OutRecord] = []
        for record in unit.records:
            errors = wanted.get((record.topic, record.value))
            if not errors:
                keep.append(record)
                continue
            error = errors.pop(0)
            if record.topic == self.classifier.dlq_topic:
                raise TerminalError(f"dead-letter topic {record.topic} refused a letter for good: {error}")
            dead.append(self._dead_letter(record, PRODUCE_REFUSED, error))
        log.warning("lane %s: Kafka refused %d records for good; dead-lettering them", self.lane, len(dead))
        unit.stats.dead += len(dead)
        unit.stats.reasons[PRODUCE_REFUSED] += len(dead)
        if self.session.atomic:  # the unit was aborted: send it again without the refused records
            # ... nor their projections: a dead-lettered event is neither routed nor projected.
            gone = {id(letter.source) for letter in dead}
            common = self.classifier.common_topic
            keep = [r for r in keep if not (r.topic == common and id(r.source) in gone)]
            unit.records = []
            self.session.begin()
            self._send(keep + dead)
        else:
            unit.records = keep
            self._send(dead)
