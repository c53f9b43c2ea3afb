"""The one consumer service every stage runs on: a confluent-kafka consumer thread owned by a Faust service.

A stage implements :class:`BatchHandler` and owns its own state; this service owns everything else:

* the thread and its consumer (from the stage's librdkafka configuration); stall and busy watches;
* the subscription — topic names, or one ``^regex`` (librdkafka matches new topics as they appear);
* partition changes, delivered to the handler **in order, on the consumer thread**, before the
  consumer starts (``assigned``) or after it stopped (``revoked``/``lost``) reading them. The handler
  may set ``TopicPartition.offset`` in ``assigned`` to choose where reading starts. With the
  ``cooperative-sticky`` strategy only the partitions that move are passed (incremental);
* batches of good messages (``batch``), then ``idle`` after every poll (time-based work: flush on age);
* stop: ``stopping`` on the consumer thread, then the consumer closes (which revokes); a stage still
  busy after ``stop_timeout_s`` is left behind so the process can exit (its work is read again);
* failure: an exception from the handler or the consumer ends the consumer. A *restartable* service
  (``restart_on_failure``) tells the handler its partitions are ``lost``, closes the consumer, waits
  (exponential backoff) and starts a new one, reading again from the committed offsets: a broker
  away never kills the worker, and one failing stage never stops the others. :meth:`health` says
  ``degraded`` while it recovers and ``failed`` after ``failure_deadline_s`` without a healthy run
  (still retrying). A service that is not restartable **crashes with the exception** (mode stops the worker).

Why not a Faust agent: its per-event streams (a task and an event object per message) top out at a
few thousand events/s here and cannot subscribe by pattern (``bench/naive_agent.py``, the baseline).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import mode
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from connectors.kafka_logging import RepeatThrottle
from streams.consumer_stall import StallWatch, UnassignedWatch, stalled

log = logging.getLogger(__name__)

CLIENT_ERROR_FRESH_S = 15.0
"""A client error (e.g. all brokers down) keeps the service degraded this long; librdkafka repeats
it on every failed reconnect, so it stays fresh while the broker is away."""

BUSY_DEGRADED_S = 180.0
"""A thread not back at its poll this long is stuck in one call: /health says degraded, not ok."""

LAG_EVERY_S = 5.0
"""How often the consumer thread measures its lag (a position and a cached watermark per partition)."""

ConsumerFactory = Callable[[dict[str, Any]], Consumer]


class BatchHandler:
    """A stage's side of the consumer service, every method on the consumer thread; defaults do nothing."""

    def starting(self) -> None:
        """Before the consumer subscribes (on the consumer thread; again after every restart)."""

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

    def degraded(self) -> str | None:
        """Why the stage is working but impaired, or None (called from the event loop: read only)."""
        return None

    def held_records(self) -> int:
        """Records read but not done with yet (e.g. buffered for a flush): they count in the lag."""
        return 0


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

    HEALTHY_RUN_S = 10.0
    """An attempt running this long without failing ends a streak of failures (health ok again)."""

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
        restart_on_failure: bool = False,
        failure_deadline_s: float = 600.0,
        restart_backoff_s: tuple[float, float] = (1.0, 30.0),
        stall_s: float | None = None,
        busy_s: float = BUSY_DEGRADED_S,
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
        self.restart_on_failure = restart_on_failure
        self.failure_deadline_s = failure_deadline_s
        self.restart_backoff_s = restart_backoff_s
        self.stall_s = stall_s if restart_on_failure else None
        self._unassigned = UnassignedWatch(self.stall_s or float("inf"))
        """Starving this long with records waiting restarts the consumer (only where restarts are)."""
        self.busy_s = busy_s
        self._polled_at: float | None = None  # the last return to the poll loop; None: no consumer
        self.restarts = 0
        self._failing_since: float | None = None
        self._backoff = restart_backoff_s[0]
        self._running_since = 0.0
        self._after_failure = False
        self._client_error: tuple[float, str] | None = None
        self._error_throttle = RepeatThrottle()
        self.config.setdefault("error_cb", self._on_client_error)
        self.lag = 0
        """Records in the assigned partitions not read yet, plus those the handler holds (measured
        every ``LAG_EVERY_S``)."""
        self._lag_measured_at = 0.0

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

    def health(self) -> tuple[str, str | None]:
        """``ok``, ``degraded`` (recovering, or the handler says so) or ``failed``, with the reason."""
        failing_since, failure = self._failing_since, self.failure
        if failure is not None and (failing_since is None or not self.restart_on_failure):
            return "failed", f"{self.name}: {failure!r}"
        if failing_since is not None and failure is not None:
            waited = time.monotonic() - failing_since
            state = "failed" if waited > self.failure_deadline_s else "degraded"
            return state, f"{self.name}: restarted {self.restarts}x in {waited:.0f}s, last: {failure}"
        reason = self.handler.degraded() or self._busy_reason()
        client_error = self._client_error
        if (
            reason is None
            and client_error is not None
            and time.monotonic() - client_error[0] < CLIENT_ERROR_FRESH_S
        ):
            reason = client_error[1]
        return ("degraded", f"{self.name}: {reason}") if reason else ("ok", None)

    def _busy_reason(self) -> str | None:
        polled_at = self._polled_at
        if polled_at is None:
            return None
        if (busy := time.monotonic() - polled_at) < self.busy_s:
            return None
        return f"the consumer thread has not polled for {busy:.0f}s: stuck in one call (SIGUSR1: stacks)"

    def _on_client_error(self, error: KafkaError) -> None:
        """librdkafka's own errors (all brokers down, transport failures); it retries by itself."""
        self._client_error = (time.monotonic(), str(error))
        # librdkafka repeats a transport error on every reconnect (every few ms with the broker
        # away); /health carries the fresh one, the log one line per kind and minute.
        left_out = self._error_throttle.admit(error.code())
        if left_out is not None:
            log.warning(
                "%s: kafka client: %s%s", self.name, error.str(), self._error_throttle.suffix(left_out)
            )

    # --- the consumer thread ------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                self._run_once()
                return
            except BaseException as exc:
                if not self.restart_on_failure:
                    self._fail(exc)
                    return
                if self._stop_requested.wait(self._note_failure(exc)):
                    return

    def _run_once(self) -> None:
        # Set before anything can fail: an attempt failing in starting() (the broker away) belongs to
        # the current streak of failures, not to a new one (which would reset the backoff and deadline).
        self._running_since = self._polled_at = time.monotonic()
        self.handler.starting()
        consumer = self.consumer_factory(self.config)
        self._after_failure = False
        try:
            self._consume(consumer)
        except BaseException:
            # Nothing more may be committed: the partitions are lost to this attempt, not revoked.
            self._after_failure = True
            self._tell_lost(consumer)
            raise
        finally:
            self._polled_at = None
            consumer.close()

    def _tell_lost(self, consumer: Consumer) -> None:
        try:
            partitions = consumer.assignment()
        except Exception:  # the consumer itself may be what failed
            partitions = []
        try:
            self.handler.lost(consumer, partitions)
        except Exception:
            log.exception("%s: dropping the lost partitions' work failed", self.name)

    def _note_failure(self, exc: BaseException) -> float:
        """Record a failure of a restartable service; how long to wait before the next attempt."""
        now = time.monotonic()
        first, longest = self.restart_backoff_s
        if self._failing_since is None or now - self._running_since > max(
            self.HEALTHY_RUN_S, 2 * self._backoff
        ):
            self._failing_since = now  # a new streak: the last attempt ran healthily for a while
            self._backoff = first
        wait = self._backoff
        self._backoff = min(longest, self._backoff * 2)
        self.failure = exc
        self.restarts += 1
        log.warning("%s: failed (%r); restarting in %.1fs", self.name, exc, wait)
        return wait

    def _recovered(self) -> None:
        if self._failing_since is not None and time.monotonic() - self._running_since > self.HEALTHY_RUN_S:
            log.info("%s: recovered after %d restarts", self.name, self.restarts)
            self._failing_since = None
            self.failure = None

    def _consume(self, consumer: Consumer) -> None:
        consumer.subscribe(
            self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        log.info("%s: subscribed to %s", self.name, self.topics)
        handler = self.handler
        watch = StallWatch(self.stall_s) if self.stall_s else None
        self._unassigned.unassigned(time.monotonic())
        while not self._stop_requested.is_set():
            asked_at = self._polled_at = time.monotonic()
            messages = consumer.consume(self.batch_size, self.batch_wait_s)
            good = [message for message in messages if message.error() is None]
            if len(good) < len(messages):
                self._check_errors(messages)
            if watch is not None:
                self._watch_for_stall(consumer, watch, bool(good), time.monotonic() - asked_at)
            if good:
                handler.batch(consumer, good)
            handler.idle(consumer)
            if self._failing_since is not None:
                self._recovered()
            if time.monotonic() - self._lag_measured_at >= LAG_EVERY_S:
                self._measure_lag(consumer)
        handler.stopping(consumer)

    def _watch_for_stall(
        self, consumer: Consumer, watch: StallWatch, delivered: bool, waited_s: float
    ) -> None:
        if delivered:
            watch.delivered()
        elif watch.waited(waited_s) and (stall := stalled(consumer, watch.starved_s)) is not None:
            raise stall
        if (left := self._unassigned.overdue(time.monotonic())) is not None:
            raise left

    def _measure_lag(self, consumer: Consumer) -> None:
        # From the position, not the last offset delivered: transaction markers take offsets that are
        # never delivered. Cached watermarks come with every fetch, so this asks the broker nothing.
        self._lag_measured_at = time.monotonic()
        try:
            behind = 0
            for tp in consumer.position(consumer.assignment()):
                if tp.offset >= 0:
                    _, high = consumer.get_watermark_offsets(tp, cached=True)
                    behind += max(0, (high or 0) - tp.offset)
            self.lag = behind + self.handler.held_records()
        except Exception as exc:  # a gauge must never end the consumer (nor a fake without watermarks)
            log.debug("%s: lag not measured: %s", self.name, exc)

    def _check_errors(self, messages: list[Message]) -> None:
        for message in messages:
            error = message.error()
            if error is None or error.code() == KafkaError._PARTITION_EOF:
                continue
            if error.fatal():
                raise KafkaException(error)
            log.warning("%s: consumer error: %s", self.name, error)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("%s: assigned %d partitions", self.name, len(partitions))
        if partitions:
            self._unassigned.assigned()
        self.handler.assigned(consumer, partitions)
        if self.cooperative:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("%s: %d partitions revoked", self.name, len(partitions))
        if self._after_failure:
            self.handler.lost(consumer, partitions)
        else:
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
        if not (self.cooperative and consumer.assignment()):
            self._unassigned.unassigned(time.monotonic())

    def _fail(self, exc: BaseException) -> None:
        log.error("%s: consumer thread failed: %r", self.name, exc, exc_info=exc)
        self.failure = exc
        loop = self._loop
        if loop is not None and not loop.is_closed():
            asyncio.run_coroutine_threadsafe(self.crash(exc), loop)
