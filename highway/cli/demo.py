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
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Annotated

import typer
from rich.live import Live

from connectors.kafka_admin import KafkaAdmin
from connectors.local.process import child_preexec, free_ports, port_is_free, tail, terminate
from connectors.local.stack import ExternalKafka, LocalStack, start_stack
from core.envvars import child_environment, with_overrides
from core.errors import HighwayError
from core.lake.layout import table_name
from core.settings import Settings
from highway.cli.common import console, fail, state
from highway.cli.demo_probe import PipelineProbe
from highway.demo.pacing import base_rate_for
from highway.demo.view import DemoSummary, Snapshot, progress_line, progress_table, rate, summary_lines

CLI_MARKER = "highway.cli"
REFRESH_S = 1.0


@dataclass
class Child:
    """A ``python -m highway.cli …`` subprocess in its own process group, logging to a file."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    _log_handle: IO[bytes]

    @classmethod
    def start(cls, name: str, args: list[str], env: dict[str, str], log: Path) -> Child:
        log.parent.mkdir(parents=True, exist_ok=True)
        handle = log.open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", CLI_MARKER, *args],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=child_preexec(tie_to_parent=True),
        )
        return cls(name, proc, log, handle)

    def state(self) -> str:
        code = self.proc.poll()
        return "running" if code is None else f"exited ({code})"

    def stop(self, grace_s: float = 30.0) -> int | None:
        """SIGTERM the group, SIGKILL after ``grace_s``; return the exit code."""
        if self.proc.poll() is None:
            terminate(self.proc.pid, CLI_MARKER, grace_s)
        try:
            code = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            code = None
        self._log_handle.close()
        return code


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


class Progress:
    """Polls the probe, draws the live view (a table on a terminal, a line every few seconds else)."""

    def __init__(self, probe: PipelineProbe, lane: str, target: int, worker: Child) -> None:
        self.probe = probe
        self.lane = lane
        self.target = target
        self.worker = worker
        self.started = time.monotonic()
        self.previous: Snapshot | None = None
        self.last: Snapshot | None = None
        self._last_line = 0.0
        self._live: Live | None = None

    def __enter__(self) -> Progress:
        if console.is_terminal:
            self._live = Live(console=console, refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def tick(self, phase: str) -> Snapshot:
        worker_state = self.worker.state()
        if worker_state == "running":
            worker_state = "healthy" if self.probe.worker_healthy() else "starting"
        snapshot = self.probe.snapshot(self.started, phase, self.target, worker_state)
        speed = rate(self.previous, snapshot)
        self.previous, self.last = snapshot, snapshot
        if self._live is not None:
            self._live.update(progress_table(snapshot, speed, self.lane))
        elif time.monotonic() - self._last_line >= 5.0:
            self._last_line = time.monotonic()
            console.print(progress_line(snapshot, speed), highlight=False, soft_wrap=True)
        return snapshot

    def run_until(
        self,
        phase: str,
        done: Callable[[Snapshot], bool],
        timeout_s: float | None,
        stall_s: float | None = None,
    ) -> Snapshot:
        """Refresh until ``done``, ``timeout_s`` or ``stall_s`` seconds without any figure moving.

        The stall limit is what ends the wait for a stage that does not exist yet (nothing moves)
        long before the timeout, while a slow stage that still makes progress is waited for.
        """
        now = time.monotonic()
        deadline = None if timeout_s is None else now + timeout_s
        moved_at, last_key = now, None
        while True:
            began = time.monotonic()
            snapshot = self.tick(phase)
            if snapshot.progress_key != last_key:
                moved_at, last_key = began, snapshot.progress_key
            if done(snapshot) or (deadline is not None and began >= deadline):
                return snapshot
            if stall_s is not None and began - moved_at >= stall_s:
                return snapshot
            if self.worker.proc.poll() is not None:
                raise HighwayError(
                    f"the worker exited with {self.worker.proc.returncode}; see {self.worker.log}:\n"
                    f"{tail(self.worker.log)}"
                )
            time.sleep(max(0.0, REFRESH_S - (time.monotonic() - began)))


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


def _run_verify(env: dict[str, str], truth: Path, log: Path, wait_s: float) -> tuple[int, str]:
    result = subprocess.run(
        [sys.executable, "-m", CLI_MARKER, "verify", "--truth", str(truth), "--wait", f"{wait_s:g}"],
        env={**env, "COLUMNS": "160"},  # its table is captured, not shown on a terminal: keep it wide
        capture_output=True,
        text=True,
        timeout=600 + wait_s,
    )
    log.write_text(result.stdout + result.stderr)
    return result.returncode, result.stdout + result.stderr


@dataclass
class DemoRun:
    """The demo's stages after the worker is up; what they found is kept for the summary."""

    settings: Settings
    env: dict[str, str]
    run_dir: Path
    truth: Path
    progress: Progress
    simulator: Child | None = None
    notes: list[str] = field(default_factory=list)
    verify_text: str = "not run"
    exit_code: int = 0

    def stages(self, simulator_args: list[str], settle_timeout: float, verify: bool) -> None:
        progress, worker = self.progress, self.progress.worker
        progress.run_until("starting worker", lambda s: s.worker == "healthy", 120.0)
        if progress.last is None or progress.last.worker != "healthy":
            raise HighwayError(f"the worker did not answer /health within 120s; see {worker.log}")
        sim = self.simulator = Child.start(
            "simulator", simulator_args, self.env, self.run_dir / "simulator.log"
        )
        progress.run_until("producing", lambda _: sim.proc.poll() is not None, None)
        if sim.proc.returncode != 0:
            raise HighwayError(
                f"the simulator failed (exit {sim.proc.returncode}); see {sim.log}:\n{tail(sim.log)}"
            )
        # A stage that makes no visible progress for this long is not waited for. Generous: with
        # hundreds of new topics the lake waits for rebalances before it flushes.
        stall_s = max(60.0, 3 * (self.settings.lake_flush_age_s + self.settings.lake_topic_rescan_s))
        final = progress.run_until("routing", lambda s: s.router_done, settle_timeout, stall_s)
        if not final.router_done:
            self.notes.append(f"the router had not caught up (stopped waiting after {final.elapsed_s:.0f}s)")
        final = progress.run_until("writing the lake", lambda s: s.lake_done, settle_timeout, stall_s)
        if not final.lake_done:
            self.notes.append(f"the lake had not caught up (stopped waiting after {final.elapsed_s:.0f}s)")
        if not verify:
            self.verify_text = "not available (this build has no `highway verify`)"
            return
        console.print("Verifying against the simulator's ground truth…")
        log = self.run_dir / "verify.log"
        code, output = _run_verify(self.env, self.truth, log, min(60.0, settle_timeout))
        console.print(output.rstrip(), highlight=False, markup=False, soft_wrap=True)
        self.verify_text = f"{'PASS' if code == 0 else f'FAIL (exit {code})'}; report {log}"
        self.exit_code = 0 if code == 0 else 1


def demo(
    ctx: typer.Context,
    events: Annotated[int, typer.Option(min=1, help="events the simulator produces")] = 50_000,
    duration: Annotated[float, typer.Option(min=0.1, help="seconds the simulator spreads them over")] = 60.0,
    rate_per_s: Annotated[
        float | None,
        typer.Option(
            "--rate",
            min=1,
            help="simulator base events/s before the match-start surge (default: fits --duration)",
        ),
    ] = None,
    users: Annotated[int | None, typer.Option(min=1, help="simulated users (simulator default)")] = None,
    event_types: Annotated[
        int | None, typer.Option("--event-types", min=1, help="distinct event names (simulator default)")
    ] = None,
    seed: Annotated[int, typer.Option(help="simulator seed")] = 11,
    lane: Annotated[str | None, typer.Option(help="lane to use (default: a fresh demo-<time> lane)")] = None,
    flush_age: Annotated[float, typer.Option(min=0.5, help="lake flush age (s) during the demo")] = 5.0,
    settle_timeout: Annotated[
        float,
        typer.Option(
            min=0,
            help="longest wait (s) for the router and for the lake to catch up; a stage whose figures "
            "stop moving for a minute is not waited for",
        ),
    ] = 600.0,
    keep_running: Annotated[
        bool, typer.Option("--keep-running", help="keep the worker and the view running until Ctrl-C")
    ] = False,
    down: Annotated[bool, typer.Option("--down", help="stop the local Kafka and S3 API at the end")] = False,
) -> None:
    """Run the whole pipeline locally: broker + S3 API, a worker, the simulator, live progress, verify."""
    base = state(ctx).settings()
    run_id = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    lane = lane or f"demo-{run_id}"
    run_dir = (base.state_dir / "demo" / run_id).resolve()
    try:
        console.print("Starting (or reusing) the local Kafka broker and S3 API…")
        stack = start_stack(base, base.state_dir / "dev", console, allow_docker=True)
        settings = _demo_settings(base, stack, lane, flush_age)
    except HighwayError as exc:
        raise fail(exc) from exc
    console.print(f"Kafka {stack.bootstrap}, S3 {stack.s3_endpoint}, lake {settings.lake_uri}, lane {lane}")
    env = child_environment(settings, os.environ)
    truth = run_dir / "truth.json"
    worker_url = _worker_url(settings)
    try:
        KafkaAdmin(settings).ensure_topics(
            [settings.all_events_topic(lane), settings.common_topic(lane), settings.dlq_topic(lane)]
        )
    except HighwayError as exc:
        raise fail(exc) from exc
    worker = Child.start("worker", ["worker"], env, run_dir / "worker.log")
    probe = PipelineProbe(settings, lane, worker_url)
    progress = Progress(probe, lane, events, worker)
    run = DemoRun(settings, env, run_dir, truth, progress)
    simulator_args = _producer_args(
        lane,
        events,
        rate_per_s or base_rate_for(events, duration),
        seed,
        truth,
        {"--users": users, "--event-types": event_types},
    )
    final_snapshot: Snapshot | None = None
    try:
        with progress:
            run.stages(simulator_args, settle_timeout, verify=_has_command(ctx, "verify"))
            if keep_running:
                console.print("Running until Ctrl-C…")
                with contextlib.suppress(KeyboardInterrupt):
                    progress.run_until("running (Ctrl-C stops)", lambda _: False, None)
    except KeyboardInterrupt:
        run.notes.append("interrupted")
        run.exit_code = 130
    except HighwayError as exc:
        console.print(f"[red]error:[/red] {exc}")
        run.exit_code = 1
    finally:
        if run.simulator is not None:
            run.simulator.stop()
        if run.exit_code != 130:  # measured while the worker still serves its concurrency API
            final_snapshot = probe.snapshot(progress.started, "done", events, worker.state())
        worker_code = worker.stop()
        if worker_code not in (0, None, -15):
            run.notes.append(f"the worker exited with {worker_code} on SIGTERM; see {worker.log}")
        probe.close()
        stack_text = _finish_stack(stack, down)

    last = final_snapshot or progress.last
    if last is not None:
        biggest = probe.largest_event_topic()
        summary = DemoSummary(
            lane=lane,
            final=last,
            truth_file=str(truth),
            all_events_topic=settings.all_events_topic(lane),
            event_topic_example=settings.event_topic(lane, "<name>"),
            dlq_topic=settings.dlq_topic(lane),
            lake_uri=settings.lake_uri,
            worker_url=worker_url,
            worker_log=str(worker.log),
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
        typer.echo("\n".join(summary_lines(summary)))
    raise typer.Exit(run.exit_code)


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
