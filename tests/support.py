"""Test helpers shared by the integration tests: condition waits and worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from confluent_kafka import Message

from core.envvars import settings_env
from core.settings import Settings

__all__ = [
    "TEST_API_TOKEN",
    "WorkerProcess",
    "committed_counts",
    "cpu_hog",
    "health",
    "settings_env",
    "wait_until",
]

T = TypeVar("T")

TEST_API_TOKEN = "integration-test-api-token"
LONG = os.environ.get("HIGHWAY_LONG_TESTS") == "1"  # test-mode switch, not product configuration


def contest_join(offset: int, server_ts: int) -> dict[str, Any]:
    """A well-formed event whose ids, times and properties follow ``offset`` (encoding tests)."""
    return {
        "event_name": "contest_join",
        "event_id": f"{offset:08x}-4b1e-9c3d-{offset * 7919 % 10**6:06d}",
        "user_id": f"u{offset % 37}",
        "client_ts": server_ts - 40,
        "server_ts": server_ts,
        "properties": {"amount": offset % 11, "sport": "cricket"},
    }


def long_mode_only(why: str) -> pytest.MarkDecorator:
    """Run only with ``HIGHWAY_LONG_TESTS=1``; ``why`` says what covers the fault in CI meanwhile."""
    return pytest.mark.skipif(not LONG, reason=f"long mode (HIGHWAY_LONG_TESTS=1); {why}")


"""For tests that call user lookups (which always need a token)."""


def wait_until(
    condition: Callable[[], T | None], timeout_s: float = 30.0, interval_s: float = 0.1, what: str = ""
) -> T:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` after the timeout."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what or condition!r} (last={last!r})")


class WorkerProcess:
    """``highway worker`` in a subprocess, for tests that kill, restart and scale workers."""

    def __init__(
        self,
        settings: Settings,
        roles: str = "router,lake,realtime",
        log_dir: Path | None = None,
        extra_env: dict[str, str] | None = None,
    ):
        self.settings = settings
        self.roles = roles
        self.extra_env = dict(extra_env or {})
        self.log_dir = log_dir or Path(settings.state_dir) / "logs"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> WorkerProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        log = (self.log_dir / f"worker-{self.settings.http_port}-{self.starts}.log").open("wb")
        env = {key: value for key, value in os.environ.items() if not key.startswith("HIGHWAY_")}
        env.update(settings_env(self.settings))
        env.update(self.extra_env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "highway.cli", "worker", "--role", self.roles],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.http_host}:{self.settings.http_port}"

    @property
    def auth_headers(self) -> dict[str, str]:
        """The API token's header (user lookups always need one; see docs/security.md)."""
        token = self.settings.api_token
        return {"Authorization": f"Bearer {token.get_secret_value()}"} if token is not None else {}

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_healthy(self, timeout_s: float = 60.0) -> None:
        def healthy() -> bool:
            assert self.alive(), f"worker exited with {self.proc and self.proc.returncode}"
            try:
                return httpx.get(f"{self.base_url}/health", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, timeout_s, 0.2, "worker /health")

    def kill(self) -> None:
        """kill -9: no shutdown hooks, no final commit."""
        if self.alive():
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def dump_stacks(self) -> None:
        """SIGUSR1: mode's worker writes every thread's stack to its log (read it after a hang)."""
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGUSR1)

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.alive():
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def health(worker: WorkerProcess) -> tuple[int, dict[str, Any]]:
    """The worker's /health status code and body ((0, {}) while it does not answer)."""
    try:
        response = httpx.get(f"{worker.base_url}/health", timeout=2.0)
    except httpx.HTTPError:
        return 0, {}
    return response.status_code, response.json()


def committed_counts(settings: Settings, topics: Iterable[str]) -> Counter[str]:
    """Records per topic as a read_committed consumer sees them (transaction markers and aborted
    records excluded, unlike high watermarks)."""
    from highway.verify.kafka_read import scan_topics

    counts: Counter[str] = Counter()

    def count(batch: list[Message]) -> None:
        for message in batch:
            counts[str(message.topic())] += 1

    scan_topics(settings, topics, count)
    return counts


@contextmanager
def cpu_hog(processes: int = 2) -> Iterator[None]:
    """Busy loops on every core, as other work on a shared machine would be."""
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
        for _ in range(processes)
    ]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait(10)
