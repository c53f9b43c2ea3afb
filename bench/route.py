"""`highway bench route`: the router in steady state and in a burst of new types, next to same-run baselines.

Measurements (each on a fresh lane, loaded with the same simulated events; see ``--help``):

* **single-topic passthrough** — :func:`bench.baseline.passthrough_rate`, Python's ceiling here;
* **matched fan-out passthrough** — :func:`bench.fanout.matched_fanout`, the router's own output
  pattern, producer configuration and partition layout done raw (per delivery mode);
* **router steady state** — every event type's topic exists beforehand (:mod:`bench.router_run`);
* **router burst** — the same types all new: seconds from the first event produced until every
  event is routed (per delivery mode; ``--burst-events`` of them);
* **naive faust agent** — :mod:`bench.naive_agent`, ``await topic.send`` per event.

A repetition runs each once; ``--repeat`` repetitions rotate the order. Between measurements the
bench waits until the broker has deleted the previous lane's topics, plus a settle pause.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console

from bench.baseline import SettingsFor, bench_settings, output_counter, passthrough_rate, spawn, time_output
from bench.cpu import CpuWindow, broker_pid
from bench.events import BenchEvents, drop_lane, load, precreate_event_topics, simulate
from bench.fanout import matched_fanout
from bench.route_report import MODES, Measured, bound_lines, plan, render, summarize
from bench.router_run import run_router, stop_process
from bench.stats import rotated
from connectors.kafka_admin import KafkaAdmin
from core.settings import Settings

console = Console()


class RouteBench:
    """One bench run: the simulated events, the options, and one method per kind of measurement."""

    def __init__(
        self,
        base: Settings,
        events: BenchEvents,
        burst: BenchEvents,
        naive: BenchEvents,
        work_dir: Path,
        processes: int,
    ) -> None:
        self.base = base
        self.events = events
        self.burst = burst
        self.naive_events = naive
        self.work_dir = work_dir
        self.processes = processes
        self.broker = broker_pid(base.kafka_bootstrap)

    def measure(self, key: str) -> Measured:
        kind, _, mode = key.partition(":")
        settings = bench_settings(self.base, "bench", self.work_dir, router_delivery=mode or "at_least_once")
        lane = settings.lanes[0]
        try:
            runner: Callable[[Settings, str, str], Measured] = getattr(self, f"_{kind}")
            return runner(settings, lane, key)
        finally:
            drop_lane(settings, lane)

    def _loaded(self, settings: Settings, lane: str, events: BenchEvents) -> str:
        source = settings.all_events_topic(lane)
        KafkaAdmin(settings).ensure_topics([source])
        load(settings, source, events)
        return source

    def _passthrough(self, settings: Settings, lane: str, key: str) -> Measured:
        source = self._loaded(settings, lane, self.events)
        window = CpuWindow({"bench": os.getpid()}, self.broker)
        result = passthrough_rate(settings, source, len(self.events), on_start=window.start)
        return Measured(key, result.events, result.seconds, window.stop())

    def _fanout(self, settings: Settings, lane: str, key: str) -> Measured:
        self._loaded(settings, lane, self.events)
        KafkaAdmin(settings).ensure_topics([settings.common_topic(lane)])
        precreate_event_topics(settings, lane, self.events)
        layout = self.events.topics_by_offset(settings, lane)
        window = CpuWindow({"bench": os.getpid()}, self.broker)
        result = matched_fanout(settings, lane, layout, len(self.events), on_start=window.start)
        return Measured(key, result.events, result.seconds, window.stop(), {"commits": result.commits})

    def _router(self, settings: Settings, lane: str, key: str, events: BenchEvents, steady: bool) -> Measured:
        run = run_router(settings, lane, events, self.processes, steady, self.work_dir / lane)
        return Measured(key, run.events, run.seconds, run.cpu, {"inject_s": run.inject_s})

    def _steady(self, settings: Settings, lane: str, key: str) -> Measured:
        return self._router(settings, lane, key, self.events, steady=True)

    def _burst(self, settings: Settings, lane: str, key: str) -> Measured:
        return self._router(settings, lane, key, self.burst, steady=False)

    def _naive(self, settings: Settings, lane: str, key: str) -> Measured:
        source = self._loaded(settings, lane, self.naive_events)
        target = f"{source}.naive"
        KafkaAdmin(settings).ensure_topics([target])
        proc = spawn(settings, ["bench.naive_agent", source], self.work_dir / lane / "naive.log")
        window = CpuWindow({"naive": proc.pid}, self.broker)
        try:
            result = time_output(
                "naive",
                output_counter(settings, target),
                len(self.naive_events),
                lambda: proc.poll() is None,
                on_start=window.start,
            )
            cpu = window.stop()
        finally:
            stop_process(proc)
        return Measured(key, result.events, result.seconds, cpu)


def run_route_bench(
    base: Settings,
    n_events: int,
    event_types: int,
    work_dir: Path,
    *,
    modes: tuple[str, ...] = MODES,
    repeat: int = 3,
    processes: int = 1,
    burst_events: int | None = None,
    naive_events: int = 20_000,
) -> dict[str, Any]:
    """Run ``repeat`` rotated repetitions of every measurement; return the summary and every run."""
    console.print(f"simulating {n_events:,} events over {event_types} types …")
    events = simulate(base, n_events, event_types)
    burst = events.head(burst_events or min(n_events, 25_000))
    bench = RouteBench(base, events, burst, events.head(min(naive_events, n_events)), work_dir, processes)
    reps: list[dict[str, Measured]] = []
    for rep in range(repeat):
        order = rotated(plan(modes), rep)
        measured: dict[str, Measured] = {}
        for key in order:
            console.print(f"[{rep + 1}/{repeat}] {key} …")
            measured[key] = bench.measure(key)
            console.print(f"        {measured[key].rate:,.0f} ev/s, {measured[key].seconds:.2f} s")
        reps.append(measured)
    summary = summarize(reps, modes, processes, len(burst.event_names))
    return {
        "events": n_events,
        "event_types": event_types,
        "types_present": len(events.event_names),
        "burst_events": len(burst),
        "burst_types": len(burst.event_names),
        "naive_events": len(bench.naive_events),
        "processes": processes,
        "repeat": repeat,
        "modes": list(modes),
        "topic_partitions": base.topic_partitions,
        "topic_event_partitions": base.topic_event_partitions,
        "router_batch_size": base.router_batch_size,
        "router_commit_interval_s": base.router_commit_interval_s,
        "cpus": os.cpu_count(),
        **summary,
        "runs": [
            {
                key: {
                    "events": m.events,
                    "seconds": round(m.seconds, 3),
                    "rate": round(m.rate, 1),
                    "cpu": m.cpu.as_dict() if m.cpu else None,
                    **m.extra,
                }
                for key, m in rep.items()
            }
            for rep in reps
        ],
    }


def print_report(result: dict[str, Any]) -> None:
    title = (
        f"highway bench route — {result['events']:,} events, {result['types_present']} types "
        f"(burst {result['burst_events']:,} events, {result['burst_types']} types), "
        f"{result['repeat']} repetitions, {result['topic_event_partitions']} partition(s) per event topic"
    )
    # Piped or captured output would be cut to 80 columns, and the table is wider.
    out = console if console.is_terminal else Console(width=180)
    out.print(render(result, title))
    for line in bound_lines(result, result["cpus"] or 1):
        out.print(line, highlight=False, soft_wrap=True)


def register(bench_app: typer.Typer, settings_for: SettingsFor) -> None:
    @bench_app.command("route")
    def route(
        ctx: typer.Context,
        events: Annotated[
            int, typer.Option("--events", "-n", help="events per steady-state measurement")
        ] = 100_000,
        event_types: Annotated[
            int, typer.Option("--types", "--event-types", help="distinct event names")
        ] = 250,
        delivery: Annotated[str, typer.Option(help="exactly_once, at_least_once or both")] = "both",
        processes: Annotated[int, typer.Option(help="router processes in one consumer group", min=1)] = 1,
        repeat: Annotated[int, typer.Option(help="interleaved repetitions", min=1)] = 3,
        burst_events: Annotated[
            int | None, typer.Option(help="events in a burst of new types [default: min(events, 25000)]")
        ] = None,
        naive_events: Annotated[int, typer.Option(help="events for the (slow) naive agent")] = 20_000,
        json_path: Annotated[Path | None, typer.Option("--json", help="also write the figures here")] = None,
    ) -> None:
        """Router steady state and burst vs the matched fan-out passthrough, the single-topic passthrough
        and a naive faust agent; median and range over rotated repetitions."""
        modes = MODES if delivery == "both" else (delivery,)
        if any(mode not in MODES for mode in modes):
            raise typer.BadParameter(
                f"--delivery: choose exactly_once, at_least_once or both, not {delivery!r}"
            )
        settings = settings_for(ctx)
        with tempfile.TemporaryDirectory(prefix="highway-bench-route-") as work:
            result = run_route_bench(
                settings,
                events,
                event_types,
                Path(work),
                modes=modes,
                repeat=repeat,
                processes=processes,
                burst_events=burst_events,
                naive_events=naive_events,
            )
        print_report(result)
        if json_path is not None:
            json_path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
