"""The router's producer side (``core.routing.ports.OutputSession``): transactions or flush-then-commit.

One confluent-kafka producer per lane, configured by ``kafka_config.router_producer_config`` (the
bench's matched passthrough uses the same). No Python callback runs for a record that succeeds
(``delivery.report.only.error``); the barrier is ``commit_transaction`` (exactly once) or ``flush``
(at least once), each bounded by ``timeout_s`` — well under the consumer's ``max.poll.interval.ms``,
since both run on the consumer thread.

Errors, by kind:

* a record refused before sending for good (too large for the client) → handed back by ``send``;
  any other error raised by ``produce`` (stale metadata, a fatal producer) → ``TransientError``;
* a record the broker refuses for good (``REFUSED_FOR_GOOD``) → handed back by ``commit`` (the
  transaction aborted first);
* anything else (timeouts, broker away, leaders moving) → ``TransientError`` after aborting;
* a fatal producer error (fenced, idempotence state lost) → the producer is dropped and made anew
  (``init_transactions`` fences the old one), then ``TransientError``: never retried forever;
* after any aborted unit the producer is replaced too (see :meth:`RouterOutput.abort`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition

from connectors.kafka_config import router_producer_config
from core.errors import TransientError
from core.ports import TopicPartitionKey
from core.routing.classify import OutRecord
from core.routing.ports import InputGroup, RefusedRecord
from core.settings import Settings

log = logging.getLogger(__name__)
_Headers = list[tuple[str, str | bytes | None]]
ProducerFactory = Callable[[dict[str, Any]], Producer]
METADATA_TIMEOUT_S = 5.0
CALL_GRACE_S = 15.0
"""How long past its own timeout a transactional call may take before its producer is abandoned."""

# Errors about the record itself: sending it again cannot help, so the router dead-letters it.
# Every other error is transient: treating an unlisted one (say, a just-created topic's metadata not
# yet known to this client) as permanent would dead-letter a valid event.
REFUSED_FOR_GOOD = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_TIMESTAMP,
        KafkaError.INVALID_MSG,
        KafkaError.TOPIC_EXCEPTION,
        KafkaError.POLICY_VIOLATION,
        KafkaError._INVALID_ARG,
    }
)


class RouterOutput:
    """One lane's output session (see the module docstring); used from the consumer thread only,
    except :meth:`topic_ready`, which the topic provisioner calls from its own thread."""

    def __init__(
        self,
        settings: Settings,
        lane: str,
        instance: str | None = None,
        producer_factory: ProducerFactory = Producer,
    ) -> None:
        self.config = router_producer_config(settings, lane, instance)
        self.atomic = "transactional.id" in self.config
        self.timeout_s = min(60.0, settings.router_transaction_timeout_s)
        self._factory = producer_factory
        self._producer: Producer | None = None
        self._open = False
        self._errors: list[tuple[KafkaError, str, bytes]] = []
        self._fatal: KafkaError | None = None
        self.recreated = 0
        self.commit_failures = 0
        self._calling: tuple[str, float] | None = None  # the bounded call running, and since when

    # --- callbacks (served by poll/flush/commit on the consumer thread) -------------------------
    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None and err.code() not in (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT):
            self._errors.append((err, str(msg.topic()), msg.value() or b""))

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err
        log.warning("router producer: %s", err)

    # --- the session ------------------------------------------------------------------------------
    def producer(self) -> Producer:
        if self._fatal is not None:
            self._recreate(f"fatal producer error: {self._fatal}")
        if self._producer is None:
            producer = self._factory(
                {**self.config, "on_delivery": self._on_delivery, "error_cb": self._on_error}
            )
            if self.atomic:
                try:
                    producer.init_transactions(self.timeout_s)
                except KafkaException as exc:
                    raise TransientError(f"router producer could not start its transactions: {exc}") from exc
            self._producer = producer
        return self._producer

    def begin(self) -> None:
        producer = self.producer()
        if self.atomic and not self._open:
            try:
                producer.begin_transaction()
            except KafkaException as exc:
                self._recreate(f"begin_transaction: {exc}")
                raise TransientError(f"could not begin a transaction: {exc}") from exc
            self._open = True

    def send(self, records: Sequence[OutRecord]) -> list[tuple[int, str]]:
        producer = self.producer()
        produce, poll = producer.produce, producer.poll
        refused: list[tuple[int, str]] = []
        if not self.atomic:
            self._open = True  # without transactions a unit is open from its first record
        for index, record in enumerate(records):
            while True:
                try:
                    produce(
                        record.topic,
                        record.value,
                        record.key,
                        timestamp=record.timestamp_ms or 0,
                        headers=cast(_Headers, record.headers) or None,
                    )
                    break
                except BufferError:
                    poll(0.005)  # the local queue is full: let librdkafka send some
                except KafkaException as exc:
                    error = exc.args[0]
                    if isinstance(error, KafkaError) and error.code() in REFUSED_FOR_GOOD:
                        refused.append((index, str(error)))  # e.g. larger than message.max.bytes
                        break
                    # Not the record's fault (e.g. _UNKNOWN_TOPIC while metadata is stale, a fatal
                    # producer): dead-lettering it would lose a valid event from its topic.
                    if isinstance(error, KafkaError) and error.fatal():
                        self._fatal = error
                    raise TransientError(f"could not send to {record.topic}: {error}") from exc
        poll(0)
        return refused

    def commit(self, offsets: Mapping[TopicPartitionKey, int], group: InputGroup) -> list[RefusedRecord]:
        producer = self.producer()
        if not self.atomic:
            return self._flush_then_commit(producer, offsets, group)
        # Served before committing, so that a record whose delivery failed never has its input offset
        # committed, whatever librdkafka's commit would make of it (commit_transaction flushes anyway).
        producer.flush(self.timeout_s)
        if self._errors:
            failed = KafkaError(KafkaError._FAIL, f"{len(self._errors)} records failed delivery")
            return self._after_failed_commit(KafkaException(failed))
        try:
            positions = [TopicPartition(topic, part, offset) for (topic, part), offset in offsets.items()]
            metadata = group.group_metadata()
            self._bounded(
                "send_offsets_to_transaction",
                lambda: producer.send_offsets_to_transaction(positions, metadata, self.timeout_s),
            )
            self._bounded("commit_transaction", lambda: producer.commit_transaction(self.timeout_s))
        except KafkaException as exc:
            return self._after_failed_commit(exc)
        self._open = False
        self._errors.clear()
        return []

    def abort(self) -> None:
        """Abort the open unit and retire this producer: the next unit starts on a new one.

        A new producer is a new idempotence session (the transactional id's next epoch, or a new
        producer id), so no sequence number of the aborted unit can be used again. A kept producer
        numbers the records after an abort as if none of the purged ones had reached the broker
        (librdkafka advances the partition's base sequence past them); one that had — sent before a
        broker restart, its answer lost, queued again for retry — would share its sequence number
        with a later record, which the broker then acknowledges as a duplicate without writing it.
        """
        producer = self._producer
        if producer is not None and self._open:
            if self.atomic:
                try:
                    producer.abort_transaction(self.timeout_s)
                except KafkaException as exc:
                    self._recreate(f"abort_transaction: {exc}")
                    return
            else:
                producer.purge(in_queue=True, in_flight=False)  # what was not sent yet need not be
                producer.poll(0)
            self._retire("an aborted unit")
        self._open = False
        self._errors.clear()

    def topic_ready(self, topic: str) -> bool:
        """This producer's metadata shows ``topic`` with a leader for every partition."""
        producer = self._producer
        if producer is None:
            return False
        metadata = producer.list_topics(topic=topic, timeout=METADATA_TIMEOUT_S)
        found = metadata.topics.get(topic)
        return bool(
            found is not None
            and found.error is None
            and found.partitions
            and all(p.leader >= 0 and p.error is None for p in found.partitions.values())
        )

    def overdue(self) -> str | None:
        """Why ``/health`` should say degraded: a transactional call running past its own timeout
        (the lane routes nothing meanwhile); None otherwise. Read from any thread."""
        calling = self._calling
        if calling is None:
            return None
        what, since = calling
        running = time.monotonic() - since
        if running <= self.timeout_s:
            return None
        return (
            f"{what} blocked for {running:.0f}s, past its {self.timeout_s:.0f}s timeout (broker or group "
            f"coordinator away); a new producer takes over at {self.timeout_s + CALL_GRACE_S:.0f}s"
        )

    def close(self) -> None:
        self.abort()
        if self._producer is not None:
            self._producer.flush(self.timeout_s)

    def _bounded(self, what: str, call: Callable[[], None]) -> None:
        """``call`` on a helper thread, given its own timeout and :data:`CALL_GRACE_S` more.

        librdkafka's transactional calls can block past their timeout: in the fault suite
        ``send_offsets_to_transaction`` (30 s timeout) was still blocked 7 minutes after a broker
        restart, holding the consumer thread and so the whole lane. A call that does not return in
        time abandons this producer (left to its thread); the next one's ``init_transactions`` fences
        it, so its transaction can no longer commit, and the unit is routed again.
        """
        done = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                call()
            except BaseException as exc:
                failure.append(exc)
            finally:
                done.set()

        threading.Thread(target=run, name=f"router-{what}", daemon=True).start()
        deadline = self.timeout_s + CALL_GRACE_S
        self._calling = (what, time.monotonic())
        try:
            returned = done.wait(deadline)
        finally:
            self._calling = None
        if not returned:
            self._recreate(f"{what} still blocked after {deadline:.0f}s")
            raise TransientError(f"{what} did not return within {deadline:.0f}s; a new producer takes over")
        if failure:
            raise failure[0]

    # --- failures ---------------------------------------------------------------------------------
    def _flush_then_commit(
        self, producer: Producer, offsets: Mapping[TopicPartitionKey, int], group: InputGroup
    ) -> list[RefusedRecord]:
        remaining = producer.flush(self.timeout_s)
        refused, failed = self._take_errors()
        if remaining or failed:
            self.abort()
            first = failed[0] if failed else f"{remaining} records unacknowledged after {self.timeout_s:.0f}s"
            raise TransientError(f"router output not delivered ({len(failed)} failed; first: {first})")
        if refused:
            return refused
        self._open = False  # every record is durable: nothing of this unit can be aborted any more
        try:
            group.commit(offsets)
        except TransientError as exc:  # the next commit covers these offsets
            self.commit_failures += 1
            log.warning("router: offset commit failed, the next one covers it: %s", exc)
        return []

    def _after_failed_commit(self, exc: KafkaException) -> list[RefusedRecord]:
        error = exc.args[0]
        if self._producer is not None:
            # The failed records' delivery reports may still be queued: serve them, so that the
            # records refused for good are known before the transaction is aborted.
            self._producer.poll(0)
        refused, failed = self._take_errors()
        if isinstance(error, KafkaError) and error.fatal():
            self._recreate(f"commit_transaction: {error}")
        else:
            self.abort()
        if refused and not failed:
            return refused
        detail = f"; first delivery failure: {failed[0]}" if failed else ""
        raise TransientError(f"transaction not committed: {error}{detail}") from exc

    def _take_errors(self) -> tuple[list[RefusedRecord], list[str]]:
        refused: list[RefusedRecord] = []
        failed: list[str] = []
        for error, topic, value in self._errors:
            if error.code() in REFUSED_FOR_GOOD:
                refused.append(RefusedRecord(topic, value, str(error)))
            else:
                failed.append(f"{topic}: {error}")
        self._errors.clear()
        return refused, failed

    def _recreate(self, why: str) -> None:
        """Drop a failed producer; the next call makes a new one (whose init_transactions fences the old)."""
        self._retire(why, logging.WARNING)

    def _retire(self, why: str, level: int = logging.INFO) -> None:
        """Drop the producer; the next call makes a new one, in a new idempotence session."""
        log.log(level, "router producer replaced after %s", why)
        self._producer = None
        self._open = False
        self._fatal = None
        self._errors.clear()
        self.recreated += 1
