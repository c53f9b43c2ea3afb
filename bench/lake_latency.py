"""Produce → queryable: how long until an event produced to Kafka is seen by a query over the lake.

A ``highway worker --role router,lake`` runs on a fresh lane whose probe topics exist before it
starts (a new event type's topic creation and the lake's rescan are not measured). Each probe is
one event produced to the per-event topic (the lake alone) and one to the all-events topic (router,
then lake), at the same moment; each is timed until a DuckDB query over the lake's rows returns it.
The figure is bounded below by ``lake_flush_age_s``: a lone event waits in its buffer for the age
trigger (the issue's goal: at most that interval + 10 s).
"""

from __future__ import annotations

import importlib
import os
import signal
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import duckdb
import httpx
import orjson
import pyarrow as pa

from bench.baseline import bench_settings, spawn
from connectors.kafka_admin import KafkaAdmin
from connectors.lake_fs import LakeStore
from connectors.producer import EventProducer
from core.routing.naming import topic_name_for
from core.settings import Settings
from core.sim import MatchDaySimulator, SimConfig

DIRECT, ROUTED = "bench_probe_direct", "bench_probe_routed"


def _lake_event_ids(settings: Settings, lane: str) -> pa.Table:
    """The ``event_id`` of every row of the lane, through the format-aware reader when this build
    has one (Iceberg snapshots), else the Hive-layout files."""
    try:
        reader = importlib.import_module("connectors.lake_reader")
    except ImportError:
        return LakeStore(settings).read_columns(f"{lane}/", ["event_id"])
    table: pa.Table = reader.lake_columns(settings, lane, ["event_id"])
    return table


def _seen(settings: Settings, lane: str, ids: list[str]) -> set[str]:
    rows = _lake_event_ids(settings, lane)
    connection = duckdb.connect()
    connection.register("lake", rows)
    found = connection.execute("SELECT event_id FROM lake WHERE list_contains(?, event_id)", [ids]).fetchall()
    connection.close()
    return {row[0] for row in found}


def _probe(settings: Settings, lane: str, template: dict[str, Any]) -> dict[str, float]:
    now = int(time.time() * 1000)
    probes = {
        ROUTED: (settings.all_events_topic(lane), str(uuid.uuid4())),  # the router wants a UUID
        DIRECT: (settings.event_topic(lane, topic_name_for(DIRECT)), str(uuid.uuid4())),
    }
    started = time.monotonic()
    with EventProducer(settings) as producer:
        for name, (topic, event_id) in probes.items():
            event = {**template, "event_name": name, "event_id": event_id, "server_ts": now}
            producer.produce_raw(topic, orjson.dumps(event), b"bench")
    waiting = {event_id: name for name, (_, event_id) in probes.items()}
    result: dict[str, float] = {}
    deadline = started + 300
    while waiting and time.monotonic() < deadline:
        for event_id in _seen(settings, lane, list(waiting)):
            result[waiting.pop(event_id)] = time.monotonic() - started
        time.sleep(0.1)
    if waiting:
        raise RuntimeError(f"probes {sorted(waiting)} not queryable within 300s")
    return result


def measure_latency(base: Settings, work: Path, probes: int, flush_age_s: float) -> dict[str, Any]:
    settings = bench_settings(base, "lat", work, topic_partitions=1, lake_flush_age_s=flush_age_s)
    lane = settings.lanes[0]
    admin = KafkaAdmin(settings)
    probe_topics = [settings.event_topic(lane, topic_name_for(name)) for name in (DIRECT, ROUTED)]
    topics = [settings.all_events_topic(lane), *probe_topics]
    admin.ensure_topics(topics)
    config = SimConfig(start_ms=int(time.time() * 1000), seed=3, users=10, events=1, lane=lane)
    template = next(iter(MatchDaySimulator(config).batches(1)))[0]
    proc = spawn(settings, ["highway.cli", "worker", "--role", "router,lake"], work / lane / "worker.log")
    samples: dict[str, list[float]] = {DIRECT: [], ROUTED: []}
    try:
        url = f"http://{settings.http_host}:{settings.http_port}"
        deadline = time.monotonic() + 120
        while not _ready(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the latency worker did not become ready; see {work / lane}")
            time.sleep(0.2)
        for _ in range(probes):
            for name, seconds in _probe(settings, lane, template).items():
                samples[name].append(seconds)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)
        admin.delete_topics([t for t in admin.list_topics() if t.startswith(f"{lane}.")])
    return {
        "flush_age_s": flush_age_s,
        **{
            name: {"p50": round(statistics.median(values), 2), "max": round(max(values), 2), "n": len(values)}
            for name, values in samples.items()
        },
    }


def _ready(url: str) -> bool:
    try:
        health = httpx.get(f"{url}/health", timeout=2.0).json()
        lake = httpx.get(f"{url}/lake", timeout=2.0).json()
    except (httpx.HTTPError, ValueError):
        return False
    return bool(health.get("status") == "ok" and lake.get("assigned", 0) >= 2)
