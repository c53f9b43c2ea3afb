"""The simulator's edge into Kafka: simulated match-day traffic into a lane's all-events topic.

Shared by ``highway produce``, ``highway demo``, the benches and the tests; writes the ground-truth
file only after every event was acknowledged (``EventProducer.flush``).
``send_simulated_traffic_via_collector`` sends the same traffic through a collector (``highway produce
--via-collector``) with the Python client instead, and writes the truth only once the collector
accepted every event.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from connectors.collector_client import CollectorClient
from connectors.kafka_admin import KafkaAdmin
from connectors.producer import EventProducer
from core.errors import TerminalError
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


def _due(started: float, simulated_ms: int, speed: float) -> float:
    """When (monotonic) an event ``simulated_ms`` into the run is due, ``speed`` simulated s per wall s."""
    if speed <= 0:
        raise ValueError(f"speed must be > 0, not {speed}")
    return started + simulated_ms / 1000 / speed


def produce_simulated_traffic(
    settings: Settings,
    config: SimConfig,
    lane: str,
    rate: float = 0.0,
    truth_path: Path | None = None,
    batch_size: int = 10_000,
    on_batch: Callable[[EventProducer], None] | None = None,
    speed: float = 1.0,
    stop: threading.Event | None = None,
) -> ProduceSummary:
    """Simulate ``config`` into the lane's all-events topic; write the truth after a clean flush.

    With ``rate > 0`` sending is paced so that simulated time runs ``speed`` times as fast as wall time.
    Once ``stop`` is set no further batch is sent; the truth then holds exactly what was sent.
    """
    topic = settings.all_events_topic(lane)
    KafkaAdmin(settings).ensure_topics([topic])
    truth = TruthBuilder(lane, window_s=settings.realtime_window_s, options=_options(config, rate))
    simulator = MatchDaySimulator(config)
    if rate > 0:
        batch_size = max(1, min(batch_size, int(rate // 20) or 1))  # ~20 paced sends per second
    stopped = stop.is_set if stop is not None else lambda: False
    started = time.monotonic()
    with EventProducer(settings) as producer:
        for batch in simulator.batches(batch_size):
            if rate > 0:
                due = _due(started, batch[0]["server_ts"] - config.start_ms, speed)
                while (wait := due - time.monotonic()) > 0 and not stopped():
                    producer.poll(min(wait, 0.1))
            if stopped():
                truth.options["stopped_early"] = True
                break
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


def send_simulated_traffic_via_collector(
    client: CollectorClient,
    config: SimConfig,
    window_s: int,
    rate: float = 0.0,
    truth_path: Path | None = None,
    batch_size: int = 10_000,
    on_batch: Callable[[CollectorClient, int], None] | None = None,
) -> ProduceSummary:
    """Simulate ``config`` through a collector; raise if any event was not accepted.

    The collector stamps its own ``server_ts``: the truth's counts and event ids hold, its windows
    follow the simulator's clock (they match the collector's only when ``rate`` paces in real time).
    """
    truth = TruthBuilder(config.lane, window_s=window_s, options=_options(config, rate))
    simulator = MatchDaySimulator(config)
    if rate > 0:
        batch_size = max(1, min(batch_size, int(rate // 20) or 1))
    started = time.monotonic()
    sent = 0
    for batch in simulator.batches(batch_size):
        if rate > 0:
            due = _due(started, batch[0]["server_ts"] - config.start_ms, 1.0)
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)  # pacing simulated time to wall time, not waiting on a condition
        client.send(batch)
        truth.add(batch)
        sent += len(batch)
        if on_batch is not None:
            on_batch(client, sent)
        if client.failures:
            break  # the collector refuses or is away: stop simulating, report what was not delivered
    client.flush()  # raises CollectorError naming the undelivered batches
    elapsed = time.monotonic() - started
    if client.rejected:
        first = client.rejected[0]
        raise TerminalError(
            f"the collector rejected {len(client.rejected)} simulated events "
            f"(first: {first.event_id} at {first.field!r}: {first.error}); no truth written"
        )
    if truth_path is not None:
        truth.write(truth_path)
    return ProduceSummary(
        topic=f"{client.endpoint} (lane {config.lane})",
        events=sent,
        delivered=client.accepted,
        failed=sent - client.accepted,
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
