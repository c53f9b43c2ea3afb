"""The demo's moving parts: its subprocesses, the live progress view, and the stages they run through.

``highway.cli.demo`` wires them into the ``highway demo`` command.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from rich.live import Live

from connectors.local.process import child_preexec, tail, terminate
from core.errors import HighwayError
from core.settings import Settings
from highway.cli.common import console
from highway.cli.demo_probe import PipelineProbe
from highway.demo.view import Snapshot, progress_line, progress_table, rate

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


def run_verify(env: dict[str, str], truth: Path, log: Path, wait_s: float) -> tuple[int, str]:
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
        code, output = run_verify(self.env, self.truth, log, min(60.0, settle_timeout))
        console.print(output.rstrip(), highlight=False, markup=False, soft_wrap=True)
        self.verify_text = f"{'PASS' if code == 0 else f'FAIL (exit {code})'}; report {log}"
        self.exit_code = 0 if code == 0 else 1

    def drive(
        self, simulator_args: list[str], settle_timeout: float, verify: bool, keep_running: bool
    ) -> None:
        """Run the stages under the live view; an interrupt or a pipeline error sets the exit code."""
        progress = self.progress
        try:
            with progress:
                self.stages(simulator_args, settle_timeout, verify)
                if keep_running:
                    console.print("Running until Ctrl-C…")
                    with contextlib.suppress(KeyboardInterrupt):
                        progress.run_until("running (Ctrl-C stops)", lambda _: False, None)
        except KeyboardInterrupt:
            self.notes.append("interrupted")
            self.exit_code = 130
        except HighwayError as exc:
            console.print(f"[red]error:[/red] {exc}")
            self.exit_code = 1

    def stop(self) -> Snapshot | None:
        """Stop the simulator and the worker; return the last figures unless interrupted."""
        progress, worker = self.progress, self.progress.worker
        final: Snapshot | None = None
        if self.simulator is not None:
            self.simulator.stop()
        if self.exit_code != 130:  # measured while the worker still serves its concurrency API
            final = progress.probe.snapshot(progress.started, "done", progress.target, worker.state())
        worker_code = worker.stop()
        if worker_code not in (0, None, -15):
            self.notes.append(f"the worker exited with {worker_code} on SIGTERM; see {worker.log}")
        progress.probe.close()
        return final
