"""A stable, unique-per-host name for a long-running process: the lowest free slot under a lock.

The router's transactional id must be unique among live routers (two processes sharing one fence
each other forever) yet the same after a restart (then the new process aborts its predecessor's
open transaction at once, instead of read_committed readers waiting for the transaction timeout).
A process therefore claims the lowest slot whose lock file no live process holds: ``flock`` locks
vanish with their process, even after kill -9, so a restarted worker gets its old slot back.
"""

from __future__ import annotations

import fcntl
import hashlib
import socket
from pathlib import Path
from typing import IO

MAX_SLOTS = 1024

_held: list[IO[bytes]] = []  # the open lock files: closing one would release its slot


def claim_instance(state_dir: Path, name: str) -> str:
    """``<host>-<state dir hash>-<slot>``, held until the process exits."""
    directory = state_dir / "slots"
    directory.mkdir(parents=True, exist_ok=True)
    where = hashlib.sha1(str(state_dir.resolve()).encode()).hexdigest()[:6]
    for slot in range(MAX_SLOTS):
        lock = (directory / f"{name}-{slot}.lock").open("a+b")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        _held.append(lock)
        return f"{socket.gethostname()}-{where}-{slot}"
    raise RuntimeError(f"all {MAX_SLOTS} {name} slots under {directory} are taken")
