"""`highway bench lake`: lake events/s next to the raw passthrough, Parquet vs gzip JSON, latency.

One run on one broker and one S3 endpoint, on the same simulator events (a fresh lane per run):

1. the events are produced to their per-event topics (the router is not under test) and, byte for
   byte the same, to one source topic for :func:`bench.baseline.passthrough_rate`;
2. **passthrough** — raw confluent-kafka consume → produce of the source topic: the ceiling;
3. **lake** — the real ``highway worker --role lake`` in a subprocess, timed from its partition
   assignment until its ``/lake`` page reports every event flushed (files and manifests durable);
4. **size** — bytes of the lane's Parquet files against gzip (level 6) of the same JSON events;
5. **latency** — with the worker idle, single probe events are produced and timed until the
   partition's manifest vouches for them (i.e. the Parquet file holding them is readable). It is
   bounded below by ``lake_flush_age_s`` (``--flush-age``), reported with the figures.
"""

from __future__ import annotations

import gzip
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

import httpx
import orjson
import typer
from confluent_kafka import Producer
from rich.console import Console
from rich.table import Table

from bench.baseline import SettingsFor, bench_settings, passthrough_rate, spawn
from connectors.iceberg_lake import IcebergLake
from connectors.kafka_admin import KafkaAdmin
from connectors.kafka_config import producer_config
from connectors.lake_fs import LakeStore
from connectors.lake_reader import committed_next_offset
from connectors.producer import EventProducer
from core.routing.naming import topic_name_for
from core.settings import Settings
from core.sim import MatchDaySimulator, SimConfig

console = Console()


def _produce(settings: Settings, lane: str, n_events: int, event_types: int) -> tuple[str, int]:
    """Simulator events to per-event topics and to one source topic; returns (source, gzip bytes)."""
    config = SimConfig(
        start_ms=int(time.time() * 1000) - 3_600_000,
        seed=1,
        users=min(50_000, max(100, n_events // 10)),
        events=n_events,
        event_types=event_types,
        lane=lane,
    )
    source = settings.all_events_topic(lane)
    admin = KafkaAdmin(settings)
    admin.ensure_topics([source])
    gz_bytes = 0
    known: set[str] = set()
    with EventProducer(settings) as producer:
        for batch in MatchDaySimulator(config).batches(10_000):
            encoded = [orjson.dumps(event) for event in batch]
            gz_bytes += len(gzip.compress(b"\n".join(encoded) + b"\n", 6))
            topics = [settings.event_topic(lane, topic_name_for(event["event_name"])) for event in batch]
            admin.ensure_topics(set(topics) - known)
            known.update(topics)
            for event, topic, value in zip(batch, topics, encoded, strict=True):
                key = str(event["user_id"]).encode()
                producer.produce_raw(topic, value, key)
                producer.produce_raw(source, value, key)
    return source, gz_bytes


def _lake_state(url: str) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = httpx.get(url, timeout=2.0).json()
        return state
    except (httpx.HTTPError, ValueError):
        return None


def _time_lake(url: str, n_events: int, alive: Any, timeout_s: float = 1800) -> tuple[float, dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    started: float | None = None
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("the lake worker exited; see its log")
        state = _lake_state(url)
        if state is not None:
            if started is None and state.get("assigned", 0) > 0:
                started = time.monotonic()
            if started is not None and state["rows"] >= n_events and state["buffered_rows"] == 0:
                return time.monotonic() - started, state
        time.sleep(0.05)
    raise RuntimeError(f"the lake did not take {n_events} events within {timeout_s:.0f}s")


def _latencies(settings: Settings, lane: str, probes: int) -> list[float]:
    """Produce one probe at a time; seconds until its partition's manifest covers its offset."""
    table = "bench_latency_probe"
    lake = IcebergLake(settings, {}) if settings.lake_format == "iceberg" else None
    topic = settings.event_topic(lane, table)
    KafkaAdmin(settings).ensure_topics([topic])
    producer = Producer(producer_config(settings))
    results: list[float] = []
    delivered: list[tuple[int, int]] = []

    def on_delivery(err: Any, msg: Any) -> None:
        delivered.append((int(msg.partition()), int(msg.offset())))

    for index in range(probes):
        event: dict[str, Any] = {"event_name": "bench_latency_probe", "event_id": f"probe-{index}"}
        event.update(user_id="bench", server_ts=int(time.time() * 1000), properties={"i": index})
        started = time.monotonic()
        producer.produce(topic, orjson.dumps(event), on_delivery=on_delivery)
        producer.flush(30)
        partition, offset = delivered[-1]
        while (committed_next_offset(settings, lake, lane, table, topic, partition) or 0) <= offset:
            time.sleep(0.05)
        results.append(time.monotonic() - started)
    return results


def put_rate(settings: Settings, lane: str, objects: int = 400, size: int = 16 * 1024) -> float:
    """Objects/s for ``objects`` PUTs of ``size`` bytes through the lake's store, 16 at a time.

    The S3 API's own ceiling for small writes; a flush costs one PUT per file plus one per manifest.
    """
    store = LakeStore(settings)
    payload = os.urandom(size)
    keys = [f"{lane}/_bench_put/{index:05d}.bin" for index in range(objects)]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda key: store.put(key, payload), keys))
    seconds = time.monotonic() - started
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(store.delete, keys))
    return objects / seconds


def _run_lake_worker(
    settings: Settings, lane: str, n_events: int, probes: int, work: Path
) -> tuple[float, dict[str, Any], list[float]]:
    """Time a real lake worker through the pre-loaded events, then probe its latency while idle."""
    proc = spawn(settings, ["highway.cli", "worker", "--role", "lake"], work / lane / "lake.log")
    try:
        url = f"http://{settings.http_host}:{settings.http_port}/lake"
        seconds, state = _time_lake(url, n_events, lambda: proc.poll() is None)
        console.print(f"latency: {probes} probes …")
        latencies = _latencies(settings, lane, probes)
    finally:
        proc.terminate()
        proc.wait(60)
    return seconds, state, latencies


def run_lake_bench(
    base: Settings,
    n_events: int,
    event_types: int,
    partitions: int,
    flush_age_s: float,
    probes: int,
    work: Path,
) -> dict[str, Any]:
    settings = bench_settings(base, "bench", work, topic_partitions=partitions, lake_flush_age_s=flush_age_s)
    lane = settings.lanes[0]
    admin = KafkaAdmin(settings)
    try:
        console.print(f"producing {n_events} simulator events ({event_types} types) to per-event topics …")
        source, gz_bytes = _produce(settings, lane, n_events, event_types)
        console.print("passthrough (raw confluent-kafka) …")
        passthrough = passthrough_rate(settings, source, n_events)
        console.print("S3 PUT rate (16 KiB objects, 16 threads) …")
        puts_per_s = put_rate(settings, lane)
        console.print("lake (highway worker --role lake) …")
        seconds, state, latencies = _run_lake_worker(settings, lane, n_events, probes, work)
        store = LakeStore(settings)
        parquet_bytes = store.total_bytes(f"{lane}/", ".parquet")
    finally:
        topics = [t for t in admin.list_topics() if t.startswith(f"{lane}.")]
        if topics:
            admin.delete_topics(topics)
    lake_rate = n_events / seconds if seconds else 0.0
    return {
        "events": n_events,
        "event_types": event_types,
        "partitions": partitions,
        "lake_flush_age_s": flush_age_s,
        "lake_flush_rows": settings.lake_flush_rows,
        "compression": settings.lake_compression,
        "lake_format": settings.lake_format,
        "rates": {"passthrough (confluent-kafka)": round(passthrough.rate, 1), "lake": round(lake_rate, 1)},
        "seconds": {
            "passthrough (confluent-kafka)": round(passthrough.seconds, 3),
            "lake": round(seconds, 3),
        },
        "lake_vs_passthrough": round(lake_rate / passthrough.rate, 3) if passthrough.rate else None,
        "lake_files": state["files"],
        "s3_puts_per_s": round(puts_per_s, 1),
        "lake_puts_per_s": round(2 * state["files"] / seconds, 1) if seconds else None,
        "parquet_bytes": parquet_bytes,
        "gzip_json_bytes": gz_bytes,
        "parquet_vs_gzip_json": round(parquet_bytes / gz_bytes, 3) if gz_bytes else None,
        "latency_s": {
            "p50": round(statistics.median(latencies), 3),
            "max": round(max(latencies), 3),
            "samples": [round(value, 3) for value in latencies],
        },
    }


def _render(result: dict[str, Any]) -> Table:
    table = Table(
        title=f"highway bench lake — {result['events']} events, {result['event_types']} types, "
        f"{result['partitions']} partitions/topic"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, rate in result["rates"].items():
        table.add_row(f"{name} events/s", f"{rate:,.0f}  ({result['seconds'][name]:.1f} s)")
    table.add_row("lake / passthrough", f"{result['lake_vs_passthrough']}x", style="bold")
    table.add_row("S3 PUTs/s: raw (16 KiB, 16 threads)", f"{result['s3_puts_per_s']:,.0f}")
    table.add_row("S3 PUTs/s: lake (files + manifests)", f"{result['lake_puts_per_s']:,.0f}")
    table.add_row("Parquet bytes", f"{result['parquet_bytes']:,}  ({result['lake_files']} files)")
    table.add_row("gzip JSON bytes", f"{result['gzip_json_bytes']:,}")
    table.add_row(
        f"Parquet ({result['compression']}) / gzip JSON", f"{result['parquet_vs_gzip_json']}x", style="bold"
    )
    latency = result["latency_s"]
    table.add_row(
        f"produce→readable (flush age {result['lake_flush_age_s']} s)",
        f"p50 {latency['p50']:.2f} s, max {latency['max']:.2f} s",
    )
    return table


def register(bench_app: typer.Typer, settings_for: SettingsFor) -> None:
    @bench_app.command("lake")
    def lake(
        ctx: typer.Context,
        events: Annotated[int, typer.Option("--events", "-n", help="events to pre-load")] = 100_000,
        event_types: Annotated[int, typer.Option("--event-types", help="distinct event names")] = 250,
        partitions: Annotated[int, typer.Option(help="partitions per per-event topic")] = 2,
        flush_age: Annotated[float, typer.Option("--flush-age", help="lake_flush_age_s for the run")] = 5.0,
        probes: Annotated[int, typer.Option(help="latency probes")] = 5,
        json_path: Annotated[Path | None, typer.Option("--json", help="also write the figures here")] = None,
    ) -> None:
        """Lake events/s vs raw passthrough, Parquet vs gzip JSON bytes, produce→readable latency."""
        settings = settings_for(ctx)
        with tempfile.TemporaryDirectory(prefix="highway-bench-lake-") as work:
            result = run_lake_bench(settings, events, event_types, partitions, flush_age, probes, Path(work))
        console.print(_render(result))
        if json_path is not None:
            json_path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
