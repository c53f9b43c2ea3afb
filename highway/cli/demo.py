"""`highway demo`: the whole pipeline on embedded defaults, with live progress and a verified summary.

Steps:
1. bring up the local Kafka broker and S3 API through the same launcher as ``highway dev up``
   (``connectors.local.stack.start_stack``, state in ``<state_dir>/dev``), or use the configured
   ones when ``HIGHWAY_KAFKA_BOOTSTRAP`` / ``HIGHWAY_AWS_S3_ENDPOINT_URL`` are set explicitly;
2. start a worker with every role (``highway worker`` in a subprocess) on a fresh lane, so one run's
   output is never mixed with an earlier run's, with a short lake flush age so files appear
   during the demo;
3. run the simulator (``highway produce --truth``) while showing progress measured from outside:
   broker offsets, lake files and rows, the worker's concurrency API;
4. wait until the router and the lake have caught up (or ``--settle-timeout``), run
   ``highway verify`` against the simulator's ground truth, stop the worker with SIGTERM and print
   where the output is. The local stack keeps running (``--down`` stops it).

The subprocesses, the live view and the stages are in :mod:`highway.cli.demo_run`.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from connectors.kafka_admin import KafkaAdmin
from connectors.local.process import free_ports, port_is_free
from connectors.local.stack import ExternalKafka, LocalStack, start_stack
from core.envvars import child_environment, with_overrides
from core.errors import HighwayError
from core.lake.layout import table_name
from core.settings import Settings
from highway.cli.common import console, fail, state
from highway.cli.demo_probe import PipelineProbe
from highway.cli.demo_run import Child, DemoRun, Progress
from highway.demo.pacing import base_rate_for
from highway.demo.view import DemoSummary, Snapshot, summary_lines

# The command's options, named so that its signature stays readable.
Events = Annotated[int, typer.Option(min=1, help="events the simulator produces")]
Duration = Annotated[float, typer.Option(min=0.1, help="seconds the simulator spreads them over")]
Rate = Annotated[
    float | None,
    typer.Option(
        "--rate",
        min=1,
        help="simulator base events/s before the match-start surge (default: fits --duration)",
    ),
]
Users = Annotated[int | None, typer.Option(min=1, help="simulated users (simulator default)")]
EventTypes = Annotated[
    int | None, typer.Option("--event-types", min=1, help="distinct event names (simulator default)")
]
Seed = Annotated[int, typer.Option(help="simulator seed")]
Lane = Annotated[str | None, typer.Option(help="lane to use (default: a fresh demo-<time> lane)")]
FlushAge = Annotated[float, typer.Option(min=0.5, help="lake flush age (s) during the demo")]
SettleTimeout = Annotated[
    float,
    typer.Option(
        min=0,
        help="longest wait (s) for the router and for the lake to catch up; a stage whose figures "
        "stop moving for a minute is not waited for",
    ),
]
KeepRunning = Annotated[
    bool, typer.Option("--keep-running", help="keep the worker and the view running until Ctrl-C")
]
Down = Annotated[bool, typer.Option("--down", help="stop the local Kafka and S3 API at the end")]


def demo(
    ctx: typer.Context,
    events: Events = 50_000,
    duration: Duration = 60.0,
    rate_per_s: Rate = None,
    users: Users = None,
    event_types: EventTypes = None,
    seed: Seed = 11,
    lane: Lane = None,
    flush_age: FlushAge = 5.0,
    settle_timeout: SettleTimeout = 600.0,
    keep_running: KeepRunning = False,
    down: Down = False,
) -> None:
    """Run the whole pipeline locally: broker + S3 API, a worker, the simulator, live progress, verify."""
    base = state(ctx).settings()
    run_id = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    lane = lane or f"demo-{run_id}"
    run_dir = (base.state_dir / "demo" / run_id).resolve()
    stack, settings = _prepare(base, lane, flush_age)
    env = child_environment(settings, os.environ)
    truth = run_dir / "truth.json"
    worker = Child.start("worker", ["worker"], env, run_dir / "worker.log")
    probe = PipelineProbe(settings, lane, _worker_url(settings))
    run = DemoRun(settings, env, run_dir, truth, Progress(probe, lane, events, worker))
    simulator_args = _producer_args(
        lane,
        events,
        rate_per_s or base_rate_for(events, duration),
        seed,
        truth,
        {"--users": users, "--event-types": event_types},
    )
    try:
        run.drive(simulator_args, settle_timeout, _has_command(ctx, "verify"), keep_running)
    finally:
        final_snapshot = run.stop()
        stack_text = _finish_stack(stack, down)
    last = final_snapshot or run.progress.last
    if last is not None:
        typer.echo("\n".join(summary_lines(_summary(ctx, run, last, stack_text, down))))
    raise typer.Exit(run.exit_code)


def _prepare(base: Settings, lane: str, flush_age_s: float) -> tuple[LocalStack, Settings]:
    """Start (or reuse) the local stack and create the lane's input topics."""
    try:
        console.print("Starting (or reusing) the local Kafka broker and S3 API…")
        stack = start_stack(base, base.state_dir / "dev", console, allow_docker=True)
        settings = _demo_settings(base, stack, lane, flush_age_s)
        console.print(
            f"Kafka {stack.bootstrap}, S3 {stack.s3_endpoint}, lake {settings.lake_uri}, lane {lane}"
        )
        KafkaAdmin(settings).ensure_topics(
            [settings.all_events_topic(lane), settings.common_topic(lane), settings.dlq_topic(lane)]
        )
    except HighwayError as exc:
        raise fail(exc) from exc
    return stack, settings


def _summary(ctx: typer.Context, run: DemoRun, last: Snapshot, stack_text: str, down: bool) -> DemoSummary:
    settings, probe = run.settings, run.progress.probe
    lane = probe.lane
    biggest = probe.largest_event_topic()
    return DemoSummary(
        lane=lane,
        final=last,
        truth_file=str(run.truth),
        all_events_topic=settings.all_events_topic(lane),
        event_topic_example=settings.event_topic(lane, "<name>"),
        dlq_topic=settings.dlq_topic(lane),
        lake_uri=settings.lake_uri,
        worker_url=probe.worker_url,
        worker_log=str(run.progress.worker.log),
        verify=run.verify_text,
        stack=stack_text,
        stack_running=not down,
        query_table=(
            table_name(biggest, settings.topic_per_event, lane)
            if biggest and _has_command(ctx, "query")
            else None
        ),
        notes=run.notes,
    )


def _demo_settings(base: Settings, stack: LocalStack, lane: str, flush_age_s: float) -> Settings:
    overrides = stack.settings_overrides()
    if "lake_uri" in base.model_fields_set:  # the user chose where the lake goes
        overrides.pop("lake_uri")
    # Short windows so that concurrency windows close (on event time) while the demo runs.
    windows = {"realtime_window_s": 10, "realtime_sliding_window_s": 60, "realtime_allowed_lateness_s": 5}
    if base.model_fields_set & set(windows):
        windows = {}
    port = base.http_port if port_is_free(base.http_port) else free_ports(1)[0]
    return with_overrides(
        base,
        **overrides,
        **windows,
        lanes=[lane],
        app_id=f"{base.app_id}-{lane}",
        lake_flush_age_s=flush_age_s,
        lake_topic_rescan_s=min(base.lake_topic_rescan_s, 2.0),
        http_port=port,
    )


def _worker_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::") else settings.http_host
    return f"http://{host}:{settings.http_port}"


def _producer_args(
    lane: str, events: int, rate_per_s: float, seed: int, truth: Path, optional: dict[str, int | None]
) -> list[str]:
    args = ["produce", "--lane", lane, "--events", str(events), "--rate", f"{rate_per_s:.3f}"]
    args += ["--seed", str(seed), "--truth", str(truth)]
    for flag, value in optional.items():
        if value is not None:
            args += [flag, str(value)]
    return args


def _has_command(ctx: typer.Context, name: str) -> bool:
    # typer vendors its own click, so look for the command table rather than a click class.
    commands = getattr(ctx.find_root().command, "commands", {})
    return name in commands


def _finish_stack(stack: LocalStack, down: bool) -> str:
    if not down:
        if isinstance(stack.kafka, ExternalKafka):
            return f"external Kafka {stack.bootstrap} left as it was; S3 API {stack.s3_endpoint}"
        if not stack.kafka.restartable:
            return "Kafka ran in a Docker container that ends with this command"
        return (
            f"left running (Kafka {stack.bootstrap}, S3 {stack.s3_endpoint}); stop it with `highway dev down`"
        )
    stack.close()
    return "stopped (--down)"


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
