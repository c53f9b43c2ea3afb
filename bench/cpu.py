"""What bounds a bench figure: CPU time of the measured process(es), of the broker and of the machine.

Read from ``/proc`` over a measurement's timed window (Linux only; elsewhere the figures are
missing and the verdict says so). A process's CPU is in *cores* (1.0 = one core busy the whole
window); a Python stage whose main thread holds the GIL tops out near 1.0 plus what librdkafka's
threads add. The broker is found as the local process listening on the bootstrap port, so a remote
broker has no figure.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

_TCP_LISTEN = "0A"
SATURATED = 0.85
"""A share of a core (or of the machine) from which a resource counts as the bound."""


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` (its threads included); ``None`` if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def parse_proc_stat(text: str) -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from ``/proc/stat``; idle and iowait count as not busy."""
    values = [int(v) for v in text.splitlines()[0].split()[1:]]
    total = sum(values[:8])  # guest time is already part of user time
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return total - idle, total


def machine_jiffies() -> tuple[int, int] | None:
    try:
        return parse_proc_stat(Path("/proc/stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


def listening_inodes(tables: Iterable[str], port: int) -> set[str]:
    """Socket inodes listening on ``port`` in ``/proc/net/tcp``-format tables."""
    inodes: set[str] = set()
    for table in tables:
        for line in table.splitlines()[1:]:
            parts = line.split()
            if len(parts) > 9 and parts[3] == _TCP_LISTEN and int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(parts[9])
    return inodes


def listening_pid(port: int) -> int | None:
    """The pid of a (readable) local process listening on TCP ``port``, if any."""
    tables = []
    for name in ("tcp", "tcp6"):
        try:
            tables.append(Path(f"/proc/net/{name}").read_text())
        except OSError:
            continue
    targets = {f"socket:[{inode}]" for inode in listening_inodes(tables, port)}
    if not targets:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in targets for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:
            continue
    return None


def broker_pid(bootstrap: str) -> int | None:
    """The local broker behind the first bootstrap address (``None`` for a remote one)."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1", "[::1]", "0.0.0.0") or not port.isdigit():
        return None
    return listening_pid(int(port))


@dataclass(frozen=True)
class CpuUse:
    """CPU over one timed window: cores used by the measured processes and the broker."""

    seconds: float
    process_cores: float | None
    processes: int
    broker_cores: float | None
    machine_share: float | None
    cpus: int = field(default_factory=lambda: os.cpu_count() or 1)

    def as_dict(self) -> dict[str, float | int | str | None]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 3)

        return {
            "process_cores": rounded(self.process_cores),
            "processes": self.processes,
            "broker_cores": rounded(self.broker_cores),
            "machine_share": rounded(self.machine_share),
            "bound": bound_verdict(self),
        }


def bound_verdict(use: CpuUse) -> str:
    """A short answer to "what limits this figure?" from the CPU figures of its window."""
    per_process = use.process_cores / use.processes if use.process_cores is not None else None
    if per_process is not None and per_process >= SATURATED:
        return "its own process's CPU"
    if use.machine_share is not None and use.machine_share >= SATURATED:
        return "machine CPU (all cores busy)"
    if use.broker_cores is not None and use.broker_cores >= SATURATED:
        return "the broker's CPU"
    if per_process is None and use.machine_share is None:
        return "unknown (no /proc)"
    return "waiting on the broker (no CPU saturated)"


class CpuWindow:
    """Samples CPU time of ``pids`` (and the broker, the machine) at :meth:`start` and :meth:`stop`."""

    def __init__(self, pids: Mapping[str, int], broker: int | None) -> None:
        self.pids = dict(pids)
        self.broker = broker
        self._start: tuple[float, dict[str, float | None], float | None, tuple[int, int] | None] | None = None

    def start(self) -> None:
        self._start = (time.monotonic(), self._processes(), self._broker(), machine_jiffies())

    def stop(self) -> CpuUse:
        assert self._start is not None, "start() first"
        began, processes, broker, machine = self._start
        seconds = max(1e-9, time.monotonic() - began)
        now_processes, now_broker, now_machine = self._processes(), self._broker(), machine_jiffies()
        used = [
            now_processes[name] - before  # type: ignore[operator]
            for name, before in processes.items()
            if before is not None and now_processes.get(name) is not None
        ]
        share = None
        if machine is not None and now_machine is not None and now_machine[1] > machine[1]:
            share = (now_machine[0] - machine[0]) / (now_machine[1] - machine[1])
        return CpuUse(
            seconds=seconds,
            process_cores=sum(used) / seconds if used else None,
            processes=max(1, len(used)),
            broker_cores=(now_broker - broker) / seconds
            if broker is not None and now_broker is not None
            else None,
            machine_share=share,
        )

    def _processes(self) -> dict[str, float | None]:
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def _broker(self) -> float | None:
        return cpu_seconds(self.broker) if self.broker is not None else None
