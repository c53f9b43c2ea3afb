"""Shared benchmark pieces: pre-loading simulator events, and the raw confluent-kafka baseline.

:func:`passthrough_rate` is the ceiling every stage is compared with: one confluent-kafka consumer
reading a topic in batches and one idempotent acks=all producer writing every record unchanged to
another topic, in one Python thread — no parsing, no framework. It is timed from the first record
consumed until the last one is acknowledged.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import typer
from confluent_kafka import Consumer, KafkaError, Message, Producer

from connectors.kafka_admin import KafkaAdmin
from connectors.kafka_config import confluent_config, producer_config
from connectors.simulator_feed import ProduceSummary, produce_simulated_traffic
from core.envvars import child_environment
from core.errors import TransientError
from core.settings import Settings
from core.sim import SimConfig

SettingsFor = Callable[[typer.Context], Settings]
"""How a bench command gets the run's settings from its CLI context (given by the command layer)."""


@dataclass(frozen=True)
class BaselineResult:
    """How many events went through in how many seconds."""

    name: str
    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def bench_settings(base: Settings, lane_prefix: str, work_dir: Path, **overrides: object) -> Settings:
    """Settings for one bench run: a fresh lane and app id, a free HTTP port, state under ``work_dir``."""
    from connectors.local.process import free_ports
    from core.envvars import with_overrides

    lane = f"{lane_prefix}{uuid.uuid4().hex[:8]}"
    return with_overrides(
        base,
        lanes=[lane],
        app_id=f"highway-bench-{lane}",
        http_port=free_ports(1)[0],
        state_dir=work_dir / lane,
        **overrides,
    )


def preload_events(
    settings: Settings,
    lane: str,
    n_events: int,
    event_types: int = 250,
    seed: int = 1,
    truth_path: Path | None = None,
) -> ProduceSummary:
    """Put ``n_events`` simulator events into the lane's all-events topic (timestamps in the past)."""
    config = bench_sim_config(n_events, event_types, seed, lane)
    return produce_simulated_traffic(settings, config, lane, truth_path=truth_path)


def bench_sim_config(n_events: int, event_types: int, seed: int, lane: str) -> SimConfig:
    """The benches' simulated traffic: ``n_events`` over ``event_types`` names, an hour in the past
    (old enough to be history, young enough for the router's ``router_max_event_age_s``)."""
    span_ms = max(60_000, n_events // 2)  # the simulator clock runs ≤ ~2 events/ms even in a surge
    return SimConfig(
        start_ms=int(time.time() * 1000) - span_ms - 3_600_000,
        seed=seed,
        users=min(50_000, max(100, n_events // 10)),
        events=n_events,
        event_types=event_types,
        lane=lane,
    )


def passthrough_rate(
    settings: Settings,
    source_topic: str,
    n_events: int,
    target_topic: str | None = None,
    timeout_s: float = 600,
    on_start: Callable[[], None] | None = None,
) -> BaselineResult:
    """Raw confluent-kafka consume → produce of ``n_events`` records of ``source_topic`` (from the start).

    ``on_start`` is called when the first record is consumed, the start of the timed window.
    """
    target = target_topic or f"{source_topic}.passthrough-{uuid.uuid4().hex[:6]}"
    KafkaAdmin(settings).ensure_topics([target])
    consumer = _passthrough_consumer(settings)
    copier = _Copier(settings, target)
    consumer.subscribe([source_topic])
    try:
        seen, started = _copy_all(consumer, copier, source_topic, n_events, timeout_s, on_start)
        copier.flush()
    finally:
        consumer.close()
    if copier.failures:
        raise TransientError(
            f"passthrough: {len(copier.failures)} deliveries failed, first: {copier.failures[0]}"
        )
    return BaselineResult("passthrough (confluent-kafka)", seen, time.monotonic() - started)


def _passthrough_consumer(settings: Settings) -> Consumer:
    return Consumer(
        confluent_config(
            settings,
            **{
                "group.id": f"highway-bench-passthrough-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "fetch.max.bytes": 52_428_800,
            },
        )
    )


class _Copier:
    """Produces consumed records unchanged to the target; only failures get a delivery report."""

    def __init__(self, settings: Settings, target: str) -> None:
        self.producer = Producer(
            producer_config(settings, **{"delivery.report.only.error": True, "on_delivery": self._on_error})
        )
        self.target = target
        self.failures: list[str] = []

    def copy(self, message: Message) -> None:
        while True:
            try:
                self.producer.produce(
                    self.target, message.value(), message.key(), timestamp=message.timestamp()[1]
                )
                return
            except BufferError:
                self.producer.poll(0.01)

    def flush(self) -> None:
        while self.producer.flush(1.0):
            pass

    def _on_error(self, err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            self.failures.append(str(err))


def _copy_all(
    consumer: Consumer,
    copier: _Copier,
    source_topic: str,
    n_events: int,
    timeout_s: float,
    on_start: Callable[[], None] | None,
) -> tuple[int, float]:
    """Copy ``n_events`` records; returns how many and the monotonic time the first one was consumed."""
    seen = 0
    started: float | None = None
    deadline = time.monotonic() + timeout_s
    while seen < n_events:
        if time.monotonic() > deadline:
            raise TransientError(f"passthrough read only {seen} of {n_events} events of {source_topic}")
        for message in consumer.consume(num_messages=10_000, timeout=0.5):
            if message.error() is not None:
                continue
            if started is None:
                started = time.monotonic()
                if on_start is not None:
                    on_start()
            copier.copy(message)
            seen += 1
        copier.producer.poll(0)
    assert started is not None
    return seen, started


def time_output(
    name: str,
    count: Callable[[], int],
    n_events: int,
    alive: Callable[[], bool],
    timeout_s: float = 900,
    on_start: Callable[[], None] | None = None,
) -> BaselineResult:
    """Time a stage from outside: from its first output record until ``count()`` reaches ``n_events``."""
    deadline = time.monotonic() + timeout_s
    started: float | None = None
    done = 0
    while time.monotonic() < deadline:
        done = count()
        now = time.monotonic()
        if started is None and done > 0:
            started = now
            if on_start is not None:
                on_start()
        if done >= n_events and started is not None:
            return BaselineResult(name, done, now - started)
        if not alive():
            raise TransientError(f"{name}: the process exited after {done} of {n_events} events")
        time.sleep(0.05)
    raise TransientError(f"{name}: {done} of {n_events} events within {timeout_s:.0f}s")


def output_counter(settings: Settings, topic: str) -> Callable[[], int]:
    """Records written to ``topic`` from now on and committed (sum of last stable offsets; 0 before it
    exists): a transaction's records count once it commits, never while open or after an abort."""
    admin = KafkaAdmin(settings)

    def total() -> int:
        try:
            return sum(admin.end_offsets(topic, stable=True).values())
        except TransientError:
            return 0

    already = total()
    return lambda: total() - already


def spawn(settings: Settings, args: list[str], log_file: Path) -> subprocess.Popen[bytes]:
    """A Python subprocess (``python -m …``) configured with exactly ``settings``."""
    env = child_environment(settings, os.environ)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_until_healthy(proc: subprocess.Popen[bytes], url: str, what: str, timeout_s: float = 120) -> None:
    """Wait for a spawned worker's ``/health`` to answer 200; raise when it exits or the time is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not become healthy")
