"""Process and port plumbing shared by the local Kafka and S3 launchers.

Local services run detached (their own session, so a terminal's Ctrl-C or the CLI exiting does not
reach them) and are found again through a small JSON state file holding pid and ports. A pid is
only trusted when ``/proc/<pid>/cmdline`` still names the service, so a recycled pid is never
signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Ports are drawn below Linux's ephemeral range (32768-60999 by default): a port picked there could
# be taken by some client's outgoing connection before the service binds it.
_PORT_RANGE = (20000, 32000)


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports, each bindable a moment ago (held open together while picked)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count * 1000):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((host, random.randrange(*_PORT_RANGE)))
            except OSError:
                sock.close()
                continue
            sockets.append(sock)
            if len(sockets) == count:
                return [held.getsockname()[1] for held in sockets]
        raise OSError(f"no {count} free ports in {_PORT_RANGE} on {host}")
    finally:
        for sock in sockets:
            sock.close()


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def port_answers(port: int, host: str = "127.0.0.1", timeout_s: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def process_cmdline(pid: int) -> str:
    """The command line of a live (non-zombie) process, or '' when there is none.

    Right after exec the kernel fills in the new command line a moment after the exec is reported
    to the parent, so a just-spawned child may briefly show ''; callers that spawned it trust their
    Popen handle instead.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        # The state letter follows the parenthesised command name, which may itself hold spaces.
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return ""
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, IndexError, PermissionError):
        return ""


def owned_pid_alive(pid: int | None, marker: str) -> bool:
    """True when ``pid`` is alive and its command line contains ``marker``."""
    return pid is not None and pid > 0 and marker in process_cmdline(pid)


def wait_for(condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def terminate(pid: int, marker: str, grace_s: float = 20.0) -> None:
    """SIGTERM the process group led by ``pid``, then SIGKILL it after ``grace_s``.

    Does nothing when ``pid`` no longer runs the service named by ``marker``.
    """
    if not owned_pid_alive(pid, marker):
        return
    identity = _stat_fields(pid)
    started = identity[19] if identity else ""  # start time: tells a recycled pid from ours

    def exited() -> bool:
        # The command line empties early in exit, before the process closes its sockets; only a
        # zombie, a vanished pid or a recycled one means its ports are released.
        fields = _stat_fields(pid)
        return fields is None or fields[0] in ("Z", "X") or fields[19] != started

    _signal_group(pid, signal.SIGTERM)
    if wait_for(exited, grace_s):
        return
    _signal_group(pid, signal.SIGKILL)
    if not wait_for(exited, 10.0):
        raise RuntimeError(f"process {pid} survived SIGKILL")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state first), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def _signal_group(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        try:
            os.killpg(pid, signum)
        except PermissionError:
            os.kill(pid, signum)


def read_state(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def write_state(path: Path, data: dict[str, Any]) -> None:
    """Write atomically so a concurrent ``status`` never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    tmp.replace(path)


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"({path} does not exist)"


def _set_parent_death_signal() -> None:
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def child_preexec(tie_to_parent: bool) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes Linux SIGTERM the child when its starter dies, or None.

    Used for services a test session starts, so a killed pytest leaves no broker behind. Linux
    ties the signal to the starting *thread*, so it is only set when starting from the main thread
    (a helper thread that restarts a broker and ends must not take the broker with it).
    """
    import sys
    import threading

    if not tie_to_parent or not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    return _set_parent_death_signal
