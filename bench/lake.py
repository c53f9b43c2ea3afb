"""`highway bench lake`: the lake next to the raw passthrough, and what its output is worth.

For each event-type count (default 250 and 20), on a fresh lane, with the run's flush settings
(Highway's defaults unless configured otherwise):

1. simulator events are produced to their per-event topics (the router is not under test) and, byte
   for byte the same, to one source topic; gzip JSON of the same events is written, one file per type;
2. ``--repeat`` interleaved repetitions (the order rotates) of **passthrough** — raw confluent-kafka
   consume → produce of the source topic (:func:`bench.baseline.passthrough_rate`) — and **lake** — a
   real ``highway worker --role lake`` with its own group and lake prefix (``bench.lake_run``);
3. on the last repetition's lake: **files per table-hour** (and again after the lake's compaction
   when this build has one), **Parquet bytes** against the gzip JSON, and **one DuckDB aggregation**
   over the Parquet files against the same query over the gzip JSON (``bench.lake_figures``).

Then **produce → queryable** latency on a router + lake worker (``bench.lake_latency``). Every figure
is printed with what bounds it.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console

from bench.baseline import SettingsFor, bench_settings, passthrough_rate
from bench.lake_figures import (
    compaction,
    download,
    files_per_table_hour,
    lake_files,
    query_comparison,
    write_json_gzip,
)
from bench.lake_latency import measure_latency
from bench.lake_report import render
from bench.lake_run import run_lake_worker
from bench.lake_worth import measure_worth
from bench.stats import ratio, rotated, spread
from connectors.kafka_admin import KafkaAdmin
from connectors.lake_fs import LakeStore
from connectors.local.process import free_ports
from connectors.producer import EventProducer
from core.envvars import with_overrides
from core.routing.naming import topic_name_for
from core.settings import Settings
from core.sim import MatchDaySimulator, SimConfig

console = Console()


def _produce(
    settings: Settings, lane: str, n_events: int, event_types: int, seed: int = 1, source: str | None = None
) -> tuple[str, dict[str, list[bytes]]]:
    """Simulator events to per-event topics and to one source topic (the lane's all-events topic
    unless named); returns the source and the encoded events by table (for the gzip JSON baseline)."""
    config = SimConfig(
        start_ms=int(time.time() * 1000) - 3_600_000,
        seed=seed,
        users=min(50_000, max(100, n_events // 10)),
        events=n_events,
        event_types=event_types,
        lane=lane,
    )
    source = source or settings.all_events_topic(lane)
    admin = KafkaAdmin(settings)
    admin.ensure_topics([source])
    by_table: dict[str, list[bytes]] = {}
    known: set[str] = set()
    with EventProducer(settings) as producer:
        for batch in MatchDaySimulator(config).batches(10_000):
            tables = [topic_name_for(event["event_name"]) for event in batch]
            topics = [settings.event_topic(lane, table) for table in tables]
            admin.ensure_topics(set(topics) - known)
            known.update(topics)
            for event, table, topic in zip(batch, tables, topics, strict=True):
                value, key = orjson.dumps(event), str(event["user_id"]).encode()
                by_table.setdefault(table, []).append(value)
                producer.produce_raw(topic, value, key)
                producer.produce_raw(source, value, key)
    return source, by_table


def put_rate(settings: Settings, lane: str, objects: int = 400, size: int = 16 * 1024) -> float:
    """Objects/s for ``objects`` PUTs of ``size`` bytes through the lake's store, 16 at a time: the
    S3 API's own ceiling for small writes (a flush costs one PUT per file plus one per manifest)."""
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


def _interleaved(
    settings: Settings,
    lane: str,
    source: str,
    n_events: int,
    lake_for: Callable[[int], Settings],
    repeat: int,
    logs: Path,
    already: int = 0,
) -> tuple[dict[str, list[float]], list[Settings]]:
    """``repeat`` interleaved passthrough and lake runs (order rotated); the rates and the settings
    of each repetition's lake (``lake_for(rep)``)."""
    rates: dict[str, list[float]] = {"passthrough": [], "lake": [], "lake_consume": [], "flush_seconds": []}
    lakes: list[Settings] = []
    for rep in range(repeat):
        for step in rotated(["passthrough", "lake"], rep):
            console.print(f"  [{rep + 1}/{repeat}] {step} …")
            if step == "passthrough":
                rates["passthrough"].append(passthrough_rate(settings, source, n_events).rate)
                continue
            lakes.append(lake_for(rep))
            run = run_lake_worker(lakes[-1], lane, n_events, Path(f"{logs}-r{rep}.log"), already=already)
            rates["lake"].append(n_events / run.seconds)
            rates["lake_consume"].append(n_events / run.consume_seconds)
            rates["flush_seconds"].append(run.seconds - run.consume_seconds)
    return rates, lakes


def _repetitions(
    settings: Settings, lane: str, source: str, n_events: int, repeat: int, work: Path
) -> tuple[dict[str, list[float]], list[Settings]]:
    """Interleaved passthrough and cold lake runs, each lake with its own group, prefix and catalog."""

    def lake_for(rep: int) -> Settings:
        return with_overrides(
            settings,
            app_id=f"{settings.app_id}-r{rep}",
            http_port=free_ports(1)[0],
            lake_uri=f"{settings.lake_uri}/{lane}-r{rep}",
            # Its own Iceberg catalog too: in a shared one the next repetition found the tables
            # (same names) with every offset committed, wrote nothing and waited forever.
            lake_iceberg_catalog_path=work / f"iceberg-catalog-r{rep}.db",
        )

    return _interleaved(settings, lane, source, n_events, lake_for, repeat, work / "lake")


def _backlog(
    reps: list[Settings], lane: str, cold_events: int, n_events: int, event_types: int, work: Path
) -> dict[str, Any]:
    """A running lake catching up a backlog: ``n_events`` more events produced after the cold runs,
    then per repetition (interleaved with the passthrough over a source of the same events) the lake
    of that cold run restarted on them — its tables exist, its offsets committed. The figure the
    issue's goal is about: what a lake that is already running sustains, commits per table included,
    with the default flush settings (the memory cap flushes the biggest buffers first)."""
    settings = reps[0]
    console.print(f"  backlog: producing {n_events:,} more events …")
    source, by_table = _produce(
        settings, lane, n_events, event_types, seed=2, source=f"{settings.all_events_topic(lane)}.backlog"
    )
    rates, _ = _interleaved(
        settings, lane, source, n_events, reps.__getitem__, len(reps), work / "lake-backlog", cold_events
    )
    versus = spread([ratio(lake, pt) for lake, pt in zip(rates["lake"], rates["passthrough"], strict=True)])
    return {
        "events": n_events,
        "tables": len(by_table),
        "rates": {name: s.as_dict(1) for name, values in rates.items() if (s := spread(values))},
        "lake_vs_passthrough": versus.as_dict(3) if versus else None,
    }


def _lake_output(settings: Settings, lane: str, json_root: Path, repeat: int, work: Path) -> dict[str, Any]:
    """Files per table-hour (before/after compaction), bytes and the DuckDB comparison."""
    files = lake_files(settings, lane)
    figures: dict[str, Any] = {"files": files_per_table_hour(files), "after_compaction": None}
    compact = compaction(settings, lane)
    if compact is not None:
        console.print("  compaction …")
        compact()
        files = lake_files(settings, lane)
        figures["after_compaction"] = files_per_table_hour(files)
    console.print("  DuckDB: Parquet vs gzip JSON …")
    figures["query"] = query_comparison(download(settings, files, work / "parquet"), json_root, repeat)
    return figures


def measure_types(
    base: Settings,
    n_events: int,
    event_types: int,
    partitions: int,
    repeat: int,
    work: Path,
    backlog_events: int = 0,
) -> dict[str, Any]:
    settings = bench_settings(base, f"bench{event_types}t", work, topic_partitions=partitions)
    lane = settings.lanes[0]
    admin = KafkaAdmin(settings)
    lane_work = work / lane
    try:
        console.print(f"{event_types} types: producing {n_events} simulator events …")
        source, by_table = _produce(settings, lane, n_events, event_types)
        gz_bytes = write_json_gzip(by_table, lane_work / "json")
        rates, reps = _repetitions(settings, lane, source, n_events, repeat, lane_work)
        output = _lake_output(reps[-1], lane, lane_work / "json", repeat, lane_work)
        backlog = (
            _backlog(reps, lane, n_events, backlog_events, event_types, lane_work) if backlog_events else None
        )
    finally:
        admin.delete_topics([t for t in admin.list_topics() if t.startswith(f"{lane}.")])
    summary = {name: spread(values) for name, values in rates.items()}
    versus = spread([ratio(lake, pt) for lake, pt in zip(rates["lake"], rates["passthrough"], strict=True)])
    parquet_bytes = (output["after_compaction"] or output["files"])["bytes"]
    return {
        "event_types": event_types,
        "tables": len(by_table),
        "rates": {name: s.as_dict(1) for name, s in summary.items() if s},
        "lake_vs_passthrough": versus.as_dict(3) if versus else None,
        "gzip_json_bytes": gz_bytes,
        "parquet_vs_gzip_json": round(parquet_bytes / gz_bytes, 3) if gz_bytes else None,
        "backlog": backlog,
        **output,
    }


def run_lake_bench(
    base: Settings,
    n_events: int,
    type_counts: list[int],
    partitions: int,
    repeat: int,
    probes: int,
    latency_flush_age_s: float,
    work: Path,
    worth: tuple[int, int, int] = (0, 20, 5_000),
    backlog_events: int = 0,
) -> dict[str, Any]:
    settings = bench_settings(base, "benchput", work)
    console.print("S3 PUT rate (16 KiB objects, 16 threads) …")
    puts = put_rate(settings, settings.lanes[0])
    runs = [
        measure_types(base, n_events, types, partitions, repeat, work, backlog_events)
        for types in type_counts
    ]
    latency = None
    if probes:
        console.print(f"produce → queryable: {probes} probes (flush age {latency_flush_age_s:g} s) …")
        latency = measure_latency(base, work, probes, latency_flush_age_s)
    worth_events, worth_types, worth_flush_rows = worth
    worth_figures = (
        measure_worth(base, worth_events, worth_types, partitions, worth_flush_rows, repeat, work, _produce)
        if worth_events
        else None
    )
    return {
        "events": n_events,
        "partitions": partitions,
        "repeat": repeat,
        "flush": {
            "lake_flush_rows": base.lake_flush_rows,
            "lake_flush_bytes": base.lake_flush_bytes,
            "lake_flush_age_s": base.lake_flush_age_s,
        },
        "lake_format": base.lake_format,
        "compression": base.lake_compression,
        "s3_puts_per_s": round(puts, 1),
        "types": runs,
        "latency": latency,
        "worth": worth_figures,
    }


def register(bench_app: typer.Typer, settings_for: SettingsFor) -> None:
    @bench_app.command("lake")
    def lake(
        ctx: typer.Context,
        events: Annotated[int, typer.Option("--events", "-n", help="events per type count")] = 60_000,
        event_types: Annotated[str, typer.Option("--event-types", help="type counts: 250,20")] = "250,20",
        partitions: Annotated[int, typer.Option(help="partitions per per-event topic")] = 2,
        repeat: Annotated[int, typer.Option(help="interleaved repetitions", min=1)] = 3,
        probes: Annotated[int, typer.Option(min=0, help="produce→queryable probes; 0 skips")] = 3,
        latency_flush_age: Annotated[
            float, typer.Option("--latency-flush-age", help="lake_flush_age_s of the latency worker")
        ] = 10.0,
        json_path: Annotated[Path | None, typer.Option("--json", help="also write the figures here")] = None,
        worth_events: Annotated[
            int, typer.Option("--worth-events", help="events of the compacted bytes/query run; 0 skips")
        ] = 600_000,
        worth_types: Annotated[int, typer.Option("--worth-types", help="event types of that run")] = 20,
        worth_flush_rows: Annotated[
            int, typer.Option("--worth-flush-rows", help="lake_flush_rows of that run (small files)")
        ] = 5_000,
        backlog_events: Annotated[
            int,
            typer.Option(
                "--backlog-events", help="events of the running-lake backlog per type count; 0 skips"
            ),
        ] = 1_000_000,
    ) -> None:
        """Lake events/s vs raw passthrough, files per table-hour, Parquet vs gzip JSON bytes and
        query time, produce→queryable latency."""
        settings = settings_for(ctx)
        counts = [int(value) for value in event_types.split(",") if value.strip()]
        with tempfile.TemporaryDirectory(prefix="highway-bench-lake-") as work:
            result = run_lake_bench(
                settings,
                events,
                counts,
                partitions,
                repeat,
                probes,
                latency_flush_age,
                Path(work),
                (worth_events, worth_types, worth_flush_rows),
                backlog_events,
            )
        Console(width=max(console.width, 180)).print(render(result))
        if json_path is not None:
            json_path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
