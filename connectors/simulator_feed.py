"""The simulator's edge into Kafka: simulated match-day traffic into a lane's all-events topic.

Shared by ``highway produce``, ``highway demo``, the benches and the tests; writes the ground-truth
file only after every event was acknowledged (``EventProducer.flush``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from connectors.kafka_admin import KafkaAdmin
from connectors.producer import EventProducer
from core.settings import Settings
from core.sim import MatchDaySimulator, SimConfig, TruthBuilder


@dataclass(frozen=True)
class ProduceSummary:
    topic: str
    events: int
    delivered: int
    failed: int
    seconds: float
    simulated_seconds: float
    truth_path: Path | None

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def produce_simulated_traffic(
    settings: Settings,
    config: SimConfig,
    lane: str,
    rate: float = 0.0,
    truth_path: Path | None = None,
    batch_size: int = 10_000,
    on_batch: Callable[[EventProducer], None] | None = None,
) -> ProduceSummary:
    """Simulate ``config`` into the lane's all-events topic; write the truth after a clean flush."""
    topic = settings.all_events_topic(lane)
    KafkaAdmin(settings).ensure_topics([topic])
    truth = TruthBuilder(lane, window_s=settings.realtime_window_s, options=_options(config, rate))
    simulator = MatchDaySimulator(config)
    if rate > 0:
        batch_size = max(1, min(batch_size, int(rate // 20) or 1))  # ~20 paced sends per second
    started = time.monotonic()
    with EventProducer(settings) as producer:
        for batch in simulator.batches(batch_size):
            if rate > 0:
                due = started + (batch[0]["server_ts"] - config.start_ms) / 1000
                while (wait := due - time.monotonic()) > 0:
                    producer.poll(min(wait, 0.1))
            producer.produce_events(topic, batch)
            truth.add(batch)
            if on_batch is not None:
                on_batch(producer)
        producer.flush()
    elapsed = time.monotonic() - started
    if truth_path is not None:
        truth.write(truth_path)
    return ProduceSummary(
        topic=topic,
        events=producer.produced,
        delivered=producer.delivered,
        failed=producer.failed,
        seconds=elapsed,
        simulated_seconds=(simulator.clock_ms - config.start_ms) / 1000,
        truth_path=truth_path,
    )


def _options(config: SimConfig, rate: float) -> dict[str, object]:
    return {
        "seed": config.seed,
        "users": config.users,
        "event_types": config.event_types,
        "events": config.events,
        "duration_s": config.duration_s,
        "base_rate": config.base_rate,
        "rate": rate,
        "start_ms": config.start_ms,
        "surge_at_s": config.surge_start_s,
        "surge_factor": config.surge_factor,
    }
