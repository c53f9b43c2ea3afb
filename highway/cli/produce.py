"""`highway produce`: simulated match-day traffic into ``<lane>.events.all``, with a ground-truth file.

The simulated clock starts at ``--start`` (default: now) and ticks at ``--rate`` events per simulated
second before the surge (``--clock-rate`` when ``--rate 0``). With ``--rate > 0`` sending is paced so
that simulated time follows wall time; ``--rate 0`` sends as fast as possible. The run ends after
``--events`` events or ``--duration`` simulated seconds, whichever comes first.

:func:`produce_simulated_traffic` is the same loop without the terminal, for ``highway demo`` and tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from connectors.kafka_admin import KafkaAdmin
from connectors.producer import EventProducer
from highway.cli.common import console, fail, state
from highway.errors import HighwayError
from highway.settings import Settings
from highway.sim import MatchDaySimulator, SimConfig, TruthBuilder


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


def produce_simulated_traffic(
    settings: Settings,
    config: SimConfig,
    lane: str,
    rate: float = 0.0,
    truth_path: Path | None = None,
    batch_size: int = 10_000,
    on_batch: Callable[[EventProducer], None] | None = None,
) -> ProduceSummary:
    """Simulate ``config`` into the lane's all-events topic; write the truth after a clean flush."""
    topic = settings.all_events_topic(lane)
    KafkaAdmin(settings).ensure_topics([topic])
    truth = TruthBuilder(lane, window_s=settings.window_s, options=_options(config, rate))
    simulator = MatchDaySimulator(config)
    if rate > 0:
        batch_size = max(1, min(batch_size, int(rate // 20) or 1))  # ~20 paced sends per second
    started = time.monotonic()
    with EventProducer(settings) as producer:
        for batch in simulator.batches(batch_size):
            if rate > 0:
                due = started + (batch[0]["server_ts"] - config.start_ms) / 1000
                while (wait := due - time.monotonic()) > 0:
                    producer.poll(min(wait, 0.1))
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
    surge_factor: Annotated[float, typer.Option(help="traffic multiplier at match start")] = 4.0,
    surge_at: Annotated[float | None, typer.Option(help="match start, simulated s (default 25%)")] = None,
) -> None:
    """Send simulated fantasy-sports match-day traffic to the lane's all-events topic."""
    settings = state(ctx).settings()
    lane = lane or settings.lanes[0]
    if events is None and duration is None:
        events = 100_000
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
    total = events if events is not None else None
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.completed:>10,.0f} sent  {task.fields[rate]:>9,.0f} ev/s  "),
        TextColumn("delivered {task.fields[delivered]:,}  failed {task.fields[failed]:,}"),
        TimeElapsedColumn(),
    )
    started = time.monotonic()
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task(
                f"produce → {settings.all_events_topic(lane)}", total=total, rate=0.0, delivered=0, failed=0
            )

            def update(producer: EventProducer) -> None:
                progress.update(
                    task,
                    completed=producer.produced,
                    rate=producer.produced / max(1e-6, time.monotonic() - started),
                    delivered=producer.delivered,
                    failed=producer.failed,
                )

            summary = produce_simulated_traffic(settings, config, lane, rate, truth, on_batch=update)
            progress.update(task, completed=summary.events, total=summary.events, delivered=summary.delivered)
    except HighwayError as exc:
        raise fail(exc) from exc
    _print_summary(summary)


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
