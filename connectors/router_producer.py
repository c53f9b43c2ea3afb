"""Bulk producing with delivery tracking: many records out, then wait until Kafka acked every one.

:meth:`BulkProducer.deliver` enqueues a whole batch on one idempotent, acks=all confluent-kafka
producer, polls until every delivery report has arrived, and re-sends the records whose delivery
failed with a retriable error (a new attempt, so a re-sent record may be a duplicate — fine for
at-least-once). Records that Kafka refuses for good (too large, invalid timestamp, …) are returned
to the caller to dead-letter. If retriable failures persist past ``attempts`` it raises
``TransientError``: the caller must not commit the batch. It blocks; async callers run it in a
thread (the producer is thread-safe).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol, cast

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from connectors.kafka_config import producer_config
from highway.errors import TransientError
from highway.settings import Settings

log = logging.getLogger(__name__)
_Headers = list[tuple[str, str | bytes | None]]


class Producible(Protocol):
    topic: str
    key: bytes | None
    value: bytes
    timestamp_ms: int | None
    headers: list[tuple[str, bytes]]


@dataclass
class Refused:
    """A record Kafka will never accept, with the error it gave."""

    index: int
    error: str


class BulkProducer:
    """One idempotent acks=all producer; ``deliver`` returns only when every record is settled."""

    def __init__(self, settings: Settings, attempts: int = 5, backoff_s: float = 0.5, **config: object):
        self._producer = Producer(producer_config(settings, **{"delivery.report.only.error": True, **config}))
        self.attempts = attempts
        self.backoff_s = backoff_s

    def deliver(self, records: Sequence[Producible]) -> list[Refused]:
        """Produce ``records``; return those refused for good; raise TransientError if retries run out."""
        pending = list(range(len(records)))
        refused: list[Refused] = []
        for attempt in range(1, self.attempts + 1):
            failed = self._send(records, pending, refused)
            if not failed:
                return refused
            pending = [index for index, _ in failed]
            log.warning(
                "delivery attempt %d: %d records failed (first: %s to %s); retrying",
                attempt,
                len(failed),
                failed[0][1],
                records[failed[0][0]].topic,
            )
            time.sleep(self.backoff_s * attempt)
        raise TransientError(f"{len(pending)} records still undelivered after {self.attempts} attempts")

    def _send(
        self, records: Sequence[Producible], indexes: list[int], refused: list[Refused]
    ) -> list[tuple[int, str]]:
        """One attempt for ``indexes``; returns retriable failures, appends permanent ones to ``refused``."""
        producer = self._producer
        failed: list[tuple[int, str]] = []

        # delivery.report.only.error: this runs for failed records only.
        def settle(index: int, err: KafkaError | None, _msg: Message | None) -> None:
            if err is not None:
                if err.retriable() or err.code() in _RETRY_CODES:
                    failed.append((index, str(err)))
                else:
                    refused.append(Refused(index, str(err)))

        for index in indexes:
            record = records[index]
            while True:
                try:
                    producer.produce(
                        record.topic,
                        record.value,
                        record.key,
                        on_delivery=partial(settle, index),
                        timestamp=record.timestamp_ms or 0,
                        headers=cast(_Headers, record.headers) or None,
                    )
                    break
                except BufferError:
                    producer.poll(0.05)  # local queue full: serve delivery reports, then retry
                except KafkaException as exc:  # refused before sending, e.g. larger than message.max.bytes
                    error = exc.args[0]
                    if isinstance(error, KafkaError) and error.retriable():
                        failed.append((index, str(error)))
                    else:
                        refused.append(Refused(index, str(error)))
                    break
        # Only this thread produces on this producer, so an empty queue means every record is settled.
        while producer.flush(1.0) > 0:
            pass
        return failed

    def close(self, timeout_s: float = 10.0) -> None:
        self._producer.flush(timeout_s)


# Errors librdkafka does not flag retriable but that heal on their own: a topic created a moment
# ago whose metadata has not reached this client yet, or a broker that timed out the request.
_RETRY_CODES = frozenset(
    {
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.REQUEST_TIMED_OUT,
    }
)
