"""`highway bench collect`: collector events/s and latency over loopback HTTP, next to the raw producer.

One run on one broker:

1. **throughput**, ``--repeat`` times (interleaved, order rotated): the raw producer rate
   (:class:`~connectors.producer.EventProducer`, events of the same shape, to the same lane's
   all-events topic, produce + flush timed in this process) and the collector rate: a fresh
   ``highway worker --role collector`` driven by a load-generator process of its own
   (:mod:`bench.collect_load`: aiohttp, ``--concurrency`` connections, batches of ``--batch``
   events, answered 200 only after Kafka's acks). Median and range of each, p50/p99 request latency,
   and the CPU of the collector and of the generator over the timed window — what bounds the figure;
2. **latency at half load**: an open-loop run at half the median collector rate for
   ``--latency-s`` seconds; p50/p99 from the moment each request was due (goal: p99 ≤ 50 ms).
"""

from __future__ import annotations

import multiprocessing
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from bench.baseline import SettingsFor, bench_settings, spawn, wait_until_healthy
from bench.collect_load import run_load
from bench.stats import percentile, rotated, spread
from connectors.kafka_admin import KafkaAdmin
from connectors.producer import EventProducer
from core.collect.keys import hash_key
from core.envvars import with_overrides
from core.settings import Settings

console = Console()
SATURATED = 0.85  # cores: a process this busy is the bound
GOAL_EVENTS_S = 20_000  # issue 13: per collector process, batches of 50; p99 <= 50 ms at half of it


def _events(count: int) -> list[dict[str, Any]]:
    now = int(time.time() * 1000)
    return [
        {
            "event_name": f"ev{i % 40}",
            "event_id": uuid.uuid4().hex,
            "user_id": f"u{i % 50_000}",
            "session_id": f"s{i % 997}",
            "platform": ("android", "ios", "web")[i % 3],
            "app_version": "5.1.0",
            "device_id": f"d{i % 997}",
            "client_ts": now,
            "server_ts": now,
            "properties": {"screen": "home", "position": i % 50, "price": 9.99},
        }
        for i in range(count)
    ]


def producer_rate(settings: Settings, events: int) -> float:
    """Events/s of the library producer alone: produce and flush ``events`` to the lane's topic."""
    topic = settings.all_events_topic(settings.lanes[0])
    batch = _events(events)
    with EventProducer(settings) as producer:
        started = time.perf_counter()
        producer.produce_events(topic, batch)
        producer.flush()
        return events / (time.perf_counter() - started)


class CollectorProcess:
    def __init__(self, settings: Settings, key: str, log: Path) -> None:
        self.settings = settings
        self.key = key
        self.proc = spawn(settings, ["highway.cli", "worker", "--role", "collector"], log)
        self.url = f"http://{settings.http_host}:{settings.http_port}"

    def wait_healthy(self, timeout_s: float = 120) -> None:
        wait_until_healthy(self.proc, self.url, "collector", timeout_s)

    def load(self, **spec: Any) -> dict[str, Any]:
        """Run the generator in a process of its own (spawned: no state shared with this one)."""
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        spec = {"url": f"{self.url}/v1/events", "key": self.key, "pid": self.proc.pid, **spec}
        generator = context.Process(target=run_load, args=(spec, results))
        generator.start()
        result: dict[str, Any] = results.get(timeout=600)
        generator.join(30)
        return result

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except Exception:
            self.proc.kill()
            self.proc.wait(10)


def bound(result: dict[str, Any]) -> str:
    seconds = result["seconds"] or 1.0
    collector = (result["collector_cpu_s"] or 0.0) / seconds
    generator = result["generator_cpu_s"] / seconds
    machine = result.get("machine_share")
    figures = f"collector {collector:.2f} cores, generator {generator:.2f} cores"
    if machine is not None:
        figures += f", machine {machine:.0%} busy"
    if collector >= SATURATED:
        return f"collector CPU ({figures})"
    if generator >= SATURATED:
        return f"load generator CPU ({figures})"
    if machine is not None and machine >= SATURATED:
        return f"machine CPU, all cores busy with other work too ({figures})"
    return f"neither process saturated: waiting on broker acks ({figures})"


def run_collect_bench(
    base: Settings, events: int, batch: int, concurrency: int, repeat: int, latency_s: float, work: Path
) -> dict[str, Any]:
    key = "bench-" + uuid.uuid4().hex
    settings = bench_settings(base, "collect", work)
    lane = settings.lanes[0]
    settings = with_overrides(settings, collector_api_keys={lane: [hash_key(key)]})
    KafkaAdmin(settings).ensure_topics([settings.all_events_topic(lane)])
    collector = CollectorProcess(settings, key, work / f"collector-{lane}.log")
    runs: dict[str, list[Any]] = {"producer": [], "collector": []}
    try:
        collector.wait_healthy()
        for r in range(repeat):
            for name in rotated(["producer", "collector"], r):
                if name == "producer":
                    runs["producer"].append(producer_rate(settings, events))
                else:
                    result = collector.load(
                        batch=batch, requests=max(1, events // batch), concurrency=concurrency
                    )
                    runs["collector"].append(result)
        rates = [r["events"] / r["seconds"] for r in runs["collector"]]
        measured = spread(rates)
        paced = {
            f"half of measured max ({(measured.median if measured else 0) / 2:,.0f}/s)": (
                measured.median / 2 if measured else 0
            ),
            f"half of the {GOAL_EVENTS_S:,}/s goal": GOAL_EVENTS_S / 2,
        }
        latency = {
            label: collector.load(batch=batch, rate=max(1.0, rate / batch), seconds=latency_s)
            for label, rate in paced.items()
        }
    finally:
        collector.stop()
    return {"runs": runs, "rates": rates, "latency": latency, "batch": batch}


def _ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q) * 1000:.1f} ms" if values else "-"


def render(result: dict[str, Any]) -> Table:
    table = Table(title=f"highway bench collect (batches of {result['batch']})")
    for column in ("measurement", "events/s median (range)", "p50", "p99"):
        table.add_column(column)
    producer = spread(result["runs"]["producer"])
    table.add_row("raw producer", producer.format() if producer else "-", "", "")
    collector_rates = spread(result["rates"])
    latencies = [x for run in result["runs"]["collector"] for x in run["latencies"]]
    table.add_row(
        "collector, max",
        collector_rates.format() if collector_rates else "-",
        _ms(latencies, 0.5),
        _ms(latencies, 0.99),
    )
    for label, run in result["latency"].items():
        table.add_row(
            f"collector at {label}",
            f"{run['events'] / (run['seconds'] or 1):,.0f}",
            _ms(run["due_latencies"], 0.5),
            _ms(run["due_latencies"], 0.99),
        )
    return table


def notes(result: dict[str, Any]) -> list[str]:
    """What each figure means and what bounded it."""
    lines = []
    for n, run in enumerate(result["runs"]["collector"], 1):
        rate = run["events"] / (run["seconds"] or 1)
        lines.append(
            f"collector run {n}: {rate:,.0f} events/s, answers {run['statuses']}; bound: {bound(run)}"
        )
    for label, run in result["latency"].items():
        lines.append(
            f"at {label}: open loop, latency from each request's due time (p99 from send "
            f"{_ms(run['latencies'], 0.99)}), answers {run['statuses']}; bound: {bound(run)}"
        )
    lines.append(f"goal: >= {GOAL_EVENTS_S:,} events/s per collector process; p99 <= 50 ms at half of that")
    return lines


def register(bench_app: typer.Typer, settings_for: SettingsFor) -> None:
    @bench_app.command("collect")
    def collect(
        ctx: typer.Context,
        events: Annotated[int, typer.Option("--events", "-n", help="events per throughput run")] = 200_000,
        batch: Annotated[int, typer.Option(min=1, help="events per request")] = 50,
        concurrency: Annotated[int, typer.Option(min=1, help="connections of the load generator")] = 64,
        repeat: Annotated[int, typer.Option(min=1, help="interleaved throughput repetitions")] = 3,
        latency_s: Annotated[float, typer.Option(help="seconds of the half-load latency run")] = 20.0,
        json_path: Annotated[Path | None, typer.Option("--json", help="also write the figures here")] = None,
    ) -> None:
        """Collector events/s and p50/p99 over loopback HTTP next to the raw producer rate."""
        settings = settings_for(ctx)
        work = settings.state_dir / "bench" / "collect"
        console.print(f"collector logs: {work}")
        result = run_collect_bench(settings, events, batch, concurrency, repeat, latency_s, work)
        console.print(render(result))
        for line in notes(result):
            console.print(line)
        if json_path is not None:
            json_path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
