"""`highway produce`: simulated match-day traffic into ``<lane>.events.all``, with a ground-truth file.

The simulated clock starts at ``--start`` (default: now; with ``--rate 0``, the run's simulated span
before now, so that no event's ``server_ts`` lies in the future, which the router would dead-letter
past ``router_future_tolerance_s``) and ticks at ``--rate`` events per simulated second before the
surge (``--clock-rate`` when ``--rate 0``). With ``--rate > 0`` sending is paced so
that simulated time follows wall time (``--speed`` times as fast: a match day replayed in minutes,
in event-time order); ``--rate 0`` sends as fast as possible. The run ends after
``--events`` events or ``--duration`` simulated seconds, whichever comes first.

:func:`connectors.simulator_feed.produce_simulated_traffic` is the loop itself, shared with ``highway demo``,
the benches and the tests. With ``--via-collector URL --key KEY`` the events go through a collector's
``POST /v1/events`` with the Python client (:mod:`connectors.collector_client`) instead of straight to
Kafka (docs/collector-clients.md).
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from connectors.collector_client import CollectorClient
from connectors.collector_retry import RetryPolicy
from connectors.producer import EventProducer
from connectors.simulator_feed import (
    ProduceSummary,
    produce_simulated_traffic,
    send_simulated_traffic_via_collector,
)
from core.errors import HighwayError
from core.settings import Settings
from core.sim import SimConfig
from highway.cli.common import console, fail, state


def _parse_start(value: str | None) -> int:
    if value is None or value == "now":
        return int(time.time() * 1000)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is not ISO-8601 (e.g. 2026-01-01T00:00:00Z) or 'now'") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


# The collector options, named here so that produce() stays one screen long.
ViaCollector = Annotated[
    str | None,
    typer.Option("--via-collector", help="send through this collector (http://host:port) instead of Kafka"),
]
CollectorKey = Annotated[str | None, typer.Option(help="the lane's collector API key (with --via-collector)")]
CollectorBatch = Annotated[
    int, typer.Option("--collector-batch", help="events per collector request (with --via-collector)")
]
Speed = Annotated[
    float, typer.Option(min=0.001, help="with --rate: simulated s per wall s (not --via-collector)")
]
CollectorTimeout = Annotated[
    float, typer.Option("--collector-timeout", help="seconds a batch may retry before it is reported failed")
]


def produce(
    ctx: typer.Context,
    events: Annotated[
        int | None, typer.Option("--events", "-n", help="events to send (100,000 unless --duration)")
    ] = None,
    rate: Annotated[float, typer.Option(help="events/s before the surge; 0 = as fast as possible")] = 0.0,
    duration: Annotated[float | None, typer.Option(help="simulated seconds to run")] = None,
    users: Annotated[int, typer.Option(help="distinct users")] = 50_000,
    event_types: Annotated[int, typer.Option("--event-types", help="distinct event names")] = 300,
    seed: Annotated[int, typer.Option(help="simulator seed")] = 1,
    truth: Annotated[
        Path | None, typer.Option(help="write the ground truth here (.json or .json.gz)")
    ] = None,
    lane: Annotated[str | None, typer.Option(help="lane (default: the first configured)")] = None,
    start: Annotated[str | None, typer.Option(help="simulated clock start, ISO-8601 UTC or 'now'")] = None,
    clock_rate: Annotated[float, typer.Option(help="simulated events/s when --rate is 0")] = 5_000.0,
    speed: Speed = 1.0,
    surge_factor: Annotated[float, typer.Option(help="traffic multiplier at match start")] = 4.0,
    surge_at: Annotated[float | None, typer.Option(help="match start, simulated s (default 25%)")] = None,
    via_collector: ViaCollector = None,
    key: CollectorKey = None,
    collector_batch: CollectorBatch = 500,
    collector_timeout: CollectorTimeout = 120.0,
) -> None:
    """Send simulated fantasy-sports match-day traffic to the lane's all-events topic."""
    settings = state(ctx).settings()
    lane = lane or settings.lanes[0]
    if events is None and duration is None:
        events = 100_000
    if (via_collector is None) != (key is None):
        raise typer.BadParameter("--via-collector and --key go together")
    if via_collector is not None and speed != 1.0:
        raise typer.BadParameter("--speed needs direct sending: a collector stamps server_ts itself")
    try:
        config = SimConfig(
            start_ms=_parse_start(start),
            seed=seed,
            users=users,
            event_types=event_types,
            events=events,
            duration_s=duration,
            base_rate=rate if rate > 0 else clock_rate,
            lane=lane,
            surge_factor=surge_factor,
            surge_at_s=surge_at,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if start is None and rate <= 0:
        config = replace(config, start_ms=config.start_ms - int(config.expected_span_s * 1000))
    try:
        if via_collector is not None and key is not None:
            retry = RetryPolicy(delivery_timeout_s=collector_timeout)
            client = CollectorClient(via_collector, key, lane, batch_size=collector_batch, retry=retry)
            summary = _collect_with_progress(client, config, settings.realtime_window_s, rate, truth)
        else:
            summary = _send_with_progress(settings, config, lane, rate, truth, speed)
    except HighwayError as exc:
        raise fail(exc) from exc
    _print_summary(summary)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.completed:>10,.0f} sent  {task.fields[rate]:>9,.0f} ev/s  "),
        TextColumn("delivered {task.fields[delivered]:,}  failed {task.fields[failed]:,}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _collect_with_progress(
    client: CollectorClient, config: SimConfig, window_s: int, rate: float, truth: Path | None
) -> ProduceSummary:
    """Run the simulator through a collector with a progress bar fed by the client's counters."""
    started = time.monotonic()
    with client, _progress() as progress:
        task = progress.add_task(
            f"produce → {client.endpoint}", total=config.events, rate=0.0, delivered=0, failed=0
        )

        def update(sender: CollectorClient, sent: int) -> None:
            elapsed = max(1e-6, time.monotonic() - started)
            failed = len(sender.rejected)
            progress.update(
                task, completed=sent, rate=sent / elapsed, delivered=sender.accepted, failed=failed
            )

        summary = send_simulated_traffic_via_collector(client, config, window_s, rate, truth, on_batch=update)
        progress.update(task, completed=summary.events, total=summary.events, delivered=summary.delivered)
    return summary


def _send_with_progress(
    settings: Settings, config: SimConfig, lane: str, rate: float, truth: Path | None, speed: float
) -> ProduceSummary:
    """Run the simulator into the lane with a progress bar fed by the producer's counters."""
    started = time.monotonic()
    with _progress() as progress:
        task = progress.add_task(
            f"produce → {settings.all_events_topic(lane)}",
            total=config.events,
            rate=0.0,
            delivered=0,
            failed=0,
        )

        def update(producer: EventProducer) -> None:
            progress.update(
                task,
                completed=producer.produced,
                rate=producer.produced / max(1e-6, time.monotonic() - started),
                delivered=producer.delivered,
                failed=producer.failed,
            )

        summary = produce_simulated_traffic(settings, config, lane, rate, truth, on_batch=update, speed=speed)
        progress.update(task, completed=summary.events, total=summary.events, delivered=summary.delivered)
    return summary


def _print_summary(summary: ProduceSummary) -> None:
    table = Table(title="highway produce", show_header=False)
    table.add_row("topic", summary.topic)
    table.add_row("events", f"{summary.events:,}")
    table.add_row("delivered", f"{summary.delivered:,}")
    table.add_row("failed", f"{summary.failed:,}")
    table.add_row("wall time", f"{summary.seconds:.2f} s")
    table.add_row("throughput", f"{summary.events_per_s:,.0f} events/s")
    table.add_row("simulated time", f"{summary.simulated_seconds:,.0f} s")
    table.add_row("truth", str(summary.truth_path) if summary.truth_path else "(not written)")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("produce")(produce)
