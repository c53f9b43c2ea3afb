"""The one consumer service every stage runs on: a confluent-kafka consumer thread owned by a Faust service.

A stage implements :class:`BatchHandler` and owns its own state; this service owns everything else:

* the thread and its consumer (built from the stage's librdkafka configuration);
* the subscription — topic names, or one ``^regex`` (librdkafka matches new topics as they appear);
* partition changes, delivered to the handler **in order, on the consumer thread**, before the
  consumer starts (``assigned``) or after it stopped (``revoked``/``lost``) reading them. The handler
  may set ``TopicPartition.offset`` in ``assigned`` to choose where reading starts. With the
  ``cooperative-sticky`` strategy only the partitions that move are passed (incremental);
* batches of good messages (``batch``), then ``idle`` after every poll — with or without messages —
  so time-based work (a flush on age, a watermark on the wall clock) needs no thread of its own;
* stop: ``stopping`` runs on the consumer thread, then the consumer closes (which revokes); a
  stage still busy after ``stop_timeout_s`` (e.g. waiting on an absent broker) is left behind so that
  the process can exit — its uncommitted work is read again after a restart;
* failure: an exception from the handler or the consumer ends the thread and **crashes this
  service with that exception** (mode propagates the crash to the worker). Nothing polls for it.

Why not a Faust agent: Faust's per-event stream machinery (a task and an event object per message in
its aiokafka driver) tops out at a few thousand events/s here, and its driver cannot subscribe by
pattern; ``bench/naive_agent.py`` keeps that path as the measured baseline.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import mode
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

log = logging.getLogger(__name__)

ConsumerFactory = Callable[[dict[str, Any]], Consumer]


class BatchHandler:
    """A stage's side of the consumer service; every method runs on the consumer thread.

    The defaults do nothing (``lost`` treats the partitions as revoked); a stage overrides what it needs.
    """

    def assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions about to be read; set ``tp.offset`` to choose a start position."""

    def revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions no longer read by this process (finish or hand over their work)."""

    def lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions taken away without a clean revoke: their offsets can no longer be committed."""
        self.revoked(consumer, partitions)

    def batch(self, consumer: Consumer, messages: list[Message]) -> None:
        """A batch of good messages from the assigned partitions, in offset order per partition."""

    def idle(self, consumer: Consumer) -> None:
        """Called after every poll, with or without messages: time-based work goes here."""

    def stopping(self, consumer: Consumer) -> None:
        """The service is stopping: finish what can be finished before the consumer closes."""


class ConsumerOffsets:
    """The :class:`core.ports.OffsetStore` of a consumer: synchronous commits of next offsets."""

    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        if offsets:
            parts = [
                TopicPartition(topic, partition, offset) for (topic, partition), offset in offsets.items()
            ]
            self._consumer.commit(offsets=parts, asynchronous=False)


def subscription_for(topics: Sequence[str]) -> list[str]:
    """librdkafka subscription list: names as they are, a regex only as a single ``^…`` entry."""
    if not topics:
        raise ValueError("a consumer service needs at least one topic or one ^regex")
    if any(topic.startswith("^") for topic in topics) and len(topics) > 1:
        raise ValueError("subscribe to one ^regex, or to topic names, not both")
    return list(topics)


class ConsumerService(mode.Service):
    """Runs one consumer thread for one stage (see the module docstring for the contract)."""

    def __init__(
        self,
        name: str,
        config: dict[str, Any],
        topics: Sequence[str],
        handler: BatchHandler,
        *,
        batch_size: int = 5000,
        batch_wait_s: float = 0.05,
        consumer_factory: ConsumerFactory = Consumer,
        stop_timeout_s: float = 30.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.config = dict(config)
        self.topics = subscription_for(topics)
        self.handler = handler
        self.batch_size = batch_size
        self.batch_wait_s = batch_wait_s
        self.consumer_factory = consumer_factory
        self.stop_timeout_s = stop_timeout_s
        self.cooperative = self.config.get("partition.assignment.strategy") == "cooperative-sticky"
        self._stop_requested = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.failure: BaseException | None = None

    @property
    def shortlabel(self) -> str:
        return f"ConsumerService[{self.name}]"

    async def on_start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name=f"consumer-{self.name}", daemon=True)
        self._thread.start()

    async def on_stop(self) -> None:
        self._stop_requested.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            await asyncio.to_thread(thread.join, self.stop_timeout_s)
            if thread.is_alive():
                # A stage blocked on an absent broker or S3 must not keep the process from exiting:
                # nothing uncommitted is lost, it is read again by the next owner.
                log.warning(
                    "%s: still busy %.0fs after stop was asked; leaving it (its uncommitted work is "
                    "read again after a restart)",
                    self.name,
                    self.stop_timeout_s,
                )

    def request_stop(self) -> None:
        """Ask the thread to stop after the current batch (for callers outside the event loop)."""
        self._stop_requested.set()

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait for the thread to end; True when it has (tests and the bench drive it directly)."""
        if self._thread is not None:
            self._thread.join(timeout_s)
            return not self._thread.is_alive()
        return True

    # --- the consumer thread ------------------------------------------------------------------
    def _run(self) -> None:
        try:
            consumer = self.consumer_factory(self.config)
            try:
                self._consume(consumer)
            finally:
                consumer.close()
        except BaseException as exc:
            self._fail(exc)

    def _consume(self, consumer: Consumer) -> None:
        consumer.subscribe(
            self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        log.info("%s: subscribed to %s", self.name, self.topics)
        handler = self.handler
        while not self._stop_requested.is_set():
            messages = consumer.consume(self.batch_size, self.batch_wait_s)
            good = [message for message in messages if message.error() is None]
            if len(good) < len(messages):
                self._check_errors(messages)
            if good:
                handler.batch(consumer, good)
            handler.idle(consumer)
        handler.stopping(consumer)

    def _check_errors(self, messages: list[Message]) -> None:
        for message in messages:
            error = message.error()
            if error is None or error.code() == KafkaError._PARTITION_EOF:
                continue
            if error.fatal():
                raise KafkaException(error)
            log.warning("%s: consumer error: %s", self.name, error)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.handler.assigned(consumer, partitions)
        if self.cooperative:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.handler.revoked(consumer, partitions)
        self._unassign(consumer, partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.handler.lost(consumer, partitions)
        self._unassign(consumer, partitions)

    def _unassign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.cooperative:
            consumer.incremental_unassign(partitions)
        else:
            consumer.unassign()

    def _fail(self, exc: BaseException) -> None:
        log.error("%s: consumer thread failed: %r", self.name, exc, exc_info=exc)
        self.failure = exc
        loop = self._loop
        if loop is not None and not loop.is_closed():
            asyncio.run_coroutine_threadsafe(self.crash(exc), loop)
