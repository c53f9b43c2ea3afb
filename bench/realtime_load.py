"""Load for `highway bench realtime`: common-topic events generated in bulk, and the worker under test.

Ten million events cannot go through the simulator and a dict per event in reasonable time, so the
bench writes pre-formatted JSON records (the common-attribute fields the realtime stage reads, keyed
by user id) straight into a raw confluent-kafka producer: a few hundred thousand per second.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from bench.baseline import spawn, wait_until_healthy
from connectors.kafka_config import producer_config
from core.errors import TransientError
from core.settings import Settings

PLATFORMS = (b"android", b"ios", b"web")
_TEMPLATE = (
    b'{"event_name":"ev%d","event_id":"%032x","user_id":"%s","session_id":"s%s","lane":"bench",'
    b'"platform":"%s","app_version":"5.%d","device_id":"d%s","client_ts":%d,"server_ts":%d}'
)


def record(user: bytes, ts_ms: int, i: int) -> bytes:
    """One common-attribute event of ``user`` at ``ts_ms`` (``i`` varies the name, platform, version)."""
    return _TEMPLATE % (i % 40, i, user, user, PLATFORMS[i % 3], i % 7, user, ts_ms, ts_ms)


def produce_records(settings: Settings, topic: str, records: Iterator[tuple[bytes, bytes]]) -> int:
    """Produce ``(key, value)`` records (idempotent, acks=all) and wait for all; returns how many."""
    failures: list[str] = []

    def on_error(err: object, _msg: object) -> None:
        if err is not None:
            failures.append(str(err))

    producer = Producer(
        producer_config(settings, **{"delivery.report.only.error": True, "on_delivery": on_error})
    )
    count = 0
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
        count += 1
        if count % 10_000 == 0:
            producer.poll(0)
    while producer.flush(1.0):
        pass
    if failures:
        raise TransientError(f"{len(failures)} bench records not delivered, first: {failures[0]}")
    return count


def spread_users(
    n: int, users: int, start_ms: int, span_ms: int, prefix: bytes = b"user-"
) -> Iterator[tuple[bytes, bytes]]:
    """``n`` events of ``users`` distinct users, timestamps rising evenly over ``span_ms``."""
    for i in range(n):
        user = b"%s%d" % (prefix, i % users)
        yield user, record(user, start_ms + (i * span_ms) // n, i)


class Worker:
    """``highway worker --role realtime`` in a subprocess, with what the bench reads from it."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings = settings
        self.proc = spawn(settings, ["highway.cli", "worker", "--role", "realtime"], log)
        self.url = f"http://{settings.http_host}:{settings.http_port}"
        token = settings.api_token
        # User lookups always need the API token (docs/security.md).
        self.auth_headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_healthy(self, timeout_s: float = 120) -> None:
        wait_until_healthy(self.proc, self.url, "realtime worker", timeout_s)

    def applied(self) -> int:
        """Events applied so far (its ``highway_events_total``)."""
        try:
            text = httpx.get(f"{self.url}/metrics", timeout=5).text
        except httpx.HTTPError:
            return 0
        lane = self.settings.lanes[0]
        return int(
            sum(
                s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
                if s.name == "highway_events_total" and s.labels.get("lane") == lane
            )
        )

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def cpu_seconds(self) -> float:
        """User + system CPU time the worker used so far (all its threads)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def paced_load(settings: Settings, topic: str, rate: float, stop: Any) -> None:
    """Events with ``server_ts = now`` at ``rate`` per second until ``stop`` (an Event) is set.

    Run in a process of its own: in the bench's process it would hold the GIL the latency probes
    need, and the probes would measure the load generator rather than the worker.
    """
    producer = Producer(producer_config(settings, **{"linger.ms": 1, "delivery.report.only.error": True}))
    i = 0
    started = time.monotonic()
    while not stop.is_set():
        due = int((time.monotonic() - started) * rate)
        now = int(time.time() * 1000)
        for j in range(i, due):
            user = b"bg-%d" % (j % 50_000)
            while True:
                try:
                    producer.produce(topic, record(user, now, j), user)
                    break
                except BufferError:
                    producer.poll(0.01)
        i = max(i, due)
        producer.poll(0.005)
    producer.flush(10)
