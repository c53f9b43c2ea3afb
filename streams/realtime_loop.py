"""The realtime stage's confluent-kafka engine: one consumer thread for all lanes' common topics.

Faust's per-event stream machinery bounds an agent to a few thousand events/s on a small machine;
this engine consumes whole batches with confluent-kafka and hands them to the same
:class:`streams.realtime.Realtime` state, HTTP pages and metrics.

Positions come from the checkpoints, not from committed offsets (the engine never commits): when a
partition is assigned, it starts at ``resume_offset`` of the partition's newest checkpoint in the
concurrency topic (from the beginning without one) with the checkpoint's watermark state, so every
open window is rebuilt from its first event — after a kill -9 as after a rebalance. A partition that
comes back to a worker that still holds its state continues at that state's position (any other
worker that applied the same offsets meanwhile computed the same partials: replay is
deterministic). Delivery to the concurrency topic is therefore at-least-once with idempotent keys.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from faust.types import TP

from connectors.kafka_config import confluent_config
from core.realtime.windows import PartitionWindows
from streams.realtime import BATCH_MAX, BATCH_WITHIN_S, Realtime

log = logging.getLogger(__name__)


class RealtimeLoop:
    def __init__(self, rt: Realtime) -> None:
        self.rt = rt
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="realtime-loop", daemon=True)
        self._parked: dict[TP, PartitionWindows] = {}

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:
            log.exception("realtime loop stopped")
            self.error = exc

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        rt = self.rt
        for tp in partitions:
            key = TP(str(tp.topic), int(tp.partition))
            lane = rt.lane_of[key.topic]
            state = self._parked.pop(key, None) or rt.restore(key, lane)
            if lane not in rt.partitions:
                metadata = consumer.list_topics(key.topic, timeout=10).topics[key.topic]
                rt.partitions[lane] = len(metadata.partitions)
            tp.offset = state.next_offset if state.next_offset > 0 else OFFSET_BEGINNING
            with rt.lock:
                rt.states[key] = state
        consumer.assign(partitions)
        log.info("realtime loop assigned %s", [(p.topic, p.partition, p.offset) for p in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        rt = self.rt
        if rt.publisher is not None:
            rt.publisher.flush()
        with rt.lock:
            for tp in partitions:
                key = TP(str(tp.topic), int(tp.partition))
                state = rt.states.pop(key, None)
                if state is not None:
                    self._parked[key] = state
        consumer.unassign()

    def _loop(self) -> None:
        rt = self.rt
        settings = rt.settings
        consumer = Consumer(
            confluent_config(
                settings,
                **{
                    "group.id": f"{settings.app_id}-realtime-loop",
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "session.timeout.ms": 10_000,
                    "heartbeat.interval.ms": 1_000,
                    "fetch.wait.max.ms": 20,
                },
            )
        )
        consumer.subscribe(
            list(rt.lane_of), on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )
        try:
            while not self._stop.is_set():
                messages = consumer.consume(BATCH_MAX, BATCH_WITHIN_S)
                by_tp: dict[TP, list[tuple[int, bytes | None]]] = defaultdict(list)
                for message in messages:
                    if message.error() is None:
                        key = TP(str(message.topic()), int(message.partition() or 0))
                        by_tp[key].append((int(message.offset() or 0), message.value()))
                for key, batch in by_tp.items():
                    state = rt.states.get(key)
                    if state is None:
                        continue  # revoked meanwhile
                    _, high = consumer.get_watermark_offsets(
                        TopicPartition(key.topic, key.partition), cached=True
                    )
                    rt.high[key] = high or 0
                    rt.apply(rt.lane_of[key.topic], state, batch)
        finally:
            if rt.publisher is not None:
                rt.publisher.flush()
            consumer.close()
