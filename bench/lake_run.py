"""One repetition of the lake measurement: a real ``highway worker --role lake`` over pre-loaded topics.

The worker runs with the run's flush settings (by default Highway's defaults: 100 000 rows, 64 MiB,
60 s). It is timed from its partition assignment (recovery done) until every pre-loaded event is
durable — vouched for by the commit path, visible as the group's committed Kafka offsets, which the
commit path moves only after the files and their manifest/snapshot are written. Once every event
is consumed the worker is sent SIGTERM, whose final flush writes every buffer at once: the same
files the age trigger would write ``lake_flush_age_s`` later, without the waiting — so the figure is
the work rate (decode, buffer, encode, PUT), not the flush interval.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, TopicPartition

from bench.baseline import spawn
from connectors.kafka_admin import KafkaAdmin
from connectors.kafka_config import confluent_config
from core.settings import Settings
from streams.lake_config import lake_group_id


@dataclass(frozen=True)
class LakeRun:
    seconds: float  # assignment → every event durable
    consume_seconds: float  # assignment → every event consumed (buffered or flushed)
    files: int  # Parquet files the worker reported (before the final flush's)


def _state(url: str) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = httpx.get(url, timeout=2.0).json()
        return state
    except (httpx.HTTPError, ValueError):
        return None


def _wait(what: str, check: Any, alive: Any, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        if not alive():
            raise RuntimeError(f"the lake worker exited while waiting for {what}; see its log")
        time.sleep(0.05)
    raise RuntimeError(f"the lake worker did not reach {what} within {timeout_s:.0f}s")


class CommittedCounter:
    """Sum of the lake group's committed offsets over the lane's per-event topics (from offset 0)."""

    def __init__(self, settings: Settings, lane: str) -> None:
        admin = KafkaAdmin(settings)
        topics = admin.list_topics(settings.event_topic_pattern(lane))
        self.partitions = [TopicPartition(t, p) for t in topics for p in admin.end_offsets(t)]
        self.consumer = Consumer(confluent_config(settings, **{"group.id": lake_group_id(settings)}))

    def __call__(self) -> int:
        committed = self.consumer.committed(self.partitions, timeout=10)
        return sum(max(tp.offset, 0) for tp in committed)

    def close(self) -> None:
        self.consumer.close()


def run_lake_worker(
    settings: Settings, lane: str, n_events: int, log: Path, timeout_s: float = 900, already: int = 0
) -> LakeRun:
    """Time one lake worker through the pre-loaded events of ``lane`` (see the module docstring);
    ``already`` of them were made durable by an earlier run of the same lake (its tables exist)."""
    counter = CommittedCounter(settings, lane)
    proc = spawn(settings, ["highway.cli", "worker", "--role", "lake"], log)
    url = f"http://{settings.http_host}:{settings.http_port}/lake"

    def alive() -> bool:
        return proc.poll() is None

    try:
        _wait("its assignment", lambda: (s := _state(url)) and s.get("assigned", 0) > 0, alive, timeout_s)
        started = time.monotonic()
        state = _wait(
            "every event consumed",
            lambda: (s := _state(url)) and s["rows"] + s["buffered_rows"] >= n_events and s,
            alive,
            timeout_s,
        )
        consumed = time.monotonic()
        os.killpg(proc.pid, signal.SIGTERM)  # the final flush writes every buffer
        _wait("every event durable", lambda: counter() >= already + n_events, lambda: True, timeout_s)
        durable = time.monotonic()
    finally:
        counter.close()
        if proc.poll() is None:
            try:
                proc.wait(60)
            except Exception:
                os.killpg(proc.pid, signal.SIGKILL)
    return LakeRun(durable - started, consumed - started, int(state["files"]))
