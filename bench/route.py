"""`highway bench route`: router events/s next to the raw confluent-kafka passthrough and a naive agent.

One run on one broker, on the same pre-loaded simulator events (a fresh lane per run):

1. **passthrough** — :func:`bench.baseline.passthrough_rate`, the ceiling for Python here;
2. **router** — the real ``highway worker --role router`` in a subprocess, timed from its first
   common-topic record until the common topic holds every event (each event is also routed to its
   per-event topic in the same acknowledged batch: two output records per input);
3. **naive** — ``bench.naive_agent``: a faust agent forwarding each event with ``await topic.send``.

Stages 2 and 3 are timed from outside by polling their output's high watermarks (start-up and group
join are excluded). The bench deletes its lane's topics afterwards unless ``--keep``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from bench.baseline import (
    BaselineResult,
    SettingsFor,
    bench_settings,
    output_counter,
    passthrough_rate,
    preload_events,
    spawn,
    time_output,
)
from connectors.kafka_admin import KafkaAdmin
from core.settings import Settings

console = Console()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _timed_process(
    settings: Settings, name: str, args: list[str], output_topic: str, n_events: int, log: Path
) -> BaselineResult:
    proc = spawn(settings, args, log)
    try:
        return time_output(
            name, output_counter(settings, output_topic), n_events, lambda: proc.poll() is None
        )
    finally:
        _stop(proc)


def run_route_bench(
    base: Settings, n_events: int, event_types: int, work_dir: Path, keep: bool = False
) -> dict[str, Any]:
    """Run the three measurements on a fresh lane; return the figures (rates in events/s)."""
    settings = bench_settings(base, "bench", work_dir)
    lane = settings.lanes[0]
    source = settings.all_events_topic(lane)
    admin = KafkaAdmin(settings)
    try:
        console.print(f"pre-loading {n_events} simulator events ({event_types} types) into {source} …")
        preload_events(settings, lane, n_events, event_types)
        console.print("passthrough (raw confluent-kafka) …")
        passthrough = passthrough_rate(settings, source, n_events)
        console.print(
            f"fan-out passthrough (raw confluent-kafka, two records per event, {event_types} topics) …"
        )
        fan_out = passthrough_rate(settings, source, n_events, fan_out_topics=event_types)
        console.print("router (highway worker --role router) …")
        router = _timed_process(
            settings,
            "router",
            ["highway.cli", "worker", "--role", "router"],
            settings.common_topic(lane),
            n_events,
            work_dir / lane / "router.log",
        )
        console.print("naive faust agent (await topic.send per event) …")
        admin.ensure_topics([f"{source}.naive"])
        naive = _timed_process(
            settings,
            "naive faust agent",
            ["bench.naive_agent", source],
            f"{source}.naive",
            n_events,
            work_dir / lane / "naive.log",
        )
    finally:
        if not keep:
            topics = [t for t in admin.list_topics() if t.startswith(f"{lane}.")]
            if topics:
                admin.delete_topics(topics)
    return {
        "events": n_events,
        "event_types": event_types,
        "partitions": settings.topic_partitions,
        "router_batch_size": settings.router_batch_size,
        "cpus": os.cpu_count(),
        "rates": {r.name: round(r.rate, 1) for r in (router, passthrough, fan_out, naive)},
        "seconds": {r.name: round(r.seconds, 3) for r in (router, passthrough, fan_out, naive)},
        "router_vs_passthrough": round(router.rate / passthrough.rate, 3) if passthrough.rate else None,
        "router_vs_naive": round(router.rate / naive.rate, 3) if naive.rate else None,
        "router_vs_fan_out": round(router.rate / fan_out.rate, 3) if fan_out.rate else None,
    }


def _render(result: dict[str, Any]) -> Table:
    table = Table(title=f"highway bench route — {result['events']} events, {result['event_types']} types")
    table.add_column("stage")
    table.add_column("events/s", justify="right")
    table.add_column("seconds", justify="right")
    for name, rate in result["rates"].items():
        table.add_row(name, f"{rate:,.0f}", f"{result['seconds'][name]:.2f}")
    table.add_row("router / passthrough", f"{result['router_vs_passthrough']}x", "", style="bold")
    table.add_row("router / naive", f"{result['router_vs_naive']}x", "", style="bold")
    table.add_row("router / fan-out passthrough", f"{result['router_vs_fan_out']}x", "")
    return table


def register(bench_app: typer.Typer, settings_for: SettingsFor) -> None:
    @bench_app.command("route")
    def route(
        ctx: typer.Context,
        events: Annotated[int, typer.Option("--events", "-n", help="events to pre-load")] = 100_000,
        event_types: Annotated[int, typer.Option("--event-types", help="distinct event names")] = 250,
        json_path: Annotated[Path | None, typer.Option("--json", help="also write the figures here")] = None,
        keep: Annotated[bool, typer.Option(help="keep the bench lane's topics")] = False,
    ) -> None:
        """Router events/s vs raw confluent-kafka passthrough vs a naive faust agent."""
        settings = settings_for(ctx)
        with tempfile.TemporaryDirectory(prefix="highway-bench-route-") as work:
            result = run_route_bench(settings, events, event_types, Path(work), keep)
        console.print(_render(result))
        if json_path is not None:
            json_path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
