"""`highway bench realtime`: realtime events/s next to the raw passthrough, latency, memory.

One run on one broker, a fresh lane per run, a ``highway worker --role realtime`` subprocess:

1. **throughput** — ``--events`` common-attribute events (``--users`` distinct users, timestamps
   over a few minutes in the past) are pre-loaded into the lane's common topic; the raw
   confluent-kafka passthrough (:func:`bench.baseline.passthrough_rate`) reads them, then the
   worker is timed from its first applied event until it has applied all of them (read from its
   ``highway_events_total`` counter);
2. **latency** — at half the measured realtime rate, background events with ``server_ts = now``
   plus one probe event every 100 ms from a new user; a probe is visible when the worker's
   ``/api/v1/users/<id>`` lookup finds it (produce → queryable state). p50/p99 over the probes;
3. **memory** — a fresh worker receives ``--rss-users`` distinct users (string ids, so hashed)
   inside one event-time window; its RSS is read from ``/proc`` once each count is applied.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import httpx
import orjson
import typer
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from bench.baseline import SettingsFor, bench_settings, passthrough_rate, spawn, time_output
from bench.stats import percentile
from connectors.kafka_admin import KafkaAdmin
from connectors.producer import EventProducer
from core.settings import Settings

console = Console()
PLATFORMS = ("android", "ios", "web")
MIN = 60_000


def _event(user: str, ts: int, i: int) -> dict[str, Any]:
    return {
        "event_name": f"ev{i % 40}",
        "event_id": uuid.uuid4().hex,
        "user_id": user,
        "session_id": f"s{user}",
        "lane": "bench",
        "platform": PLATFORMS[i % 3],
        "app_version": f"5.{i % 7}",
        "device_id": f"d{user}",
        "client_ts": ts,
        "server_ts": ts,
    }


def _produce(settings: Settings, topic: str, n: int, users: int, start_ms: int, span_ms: int) -> None:
    with EventProducer(settings) as producer:
        chunk = 20_000
        for first in range(0, n, chunk):
            producer.produce_events(
                topic,
                (
                    _event(f"user-{i % users}", start_ms + (i * span_ms) // n, i)
                    for i in range(first, min(n, first + chunk))
                ),
            )


class Worker:
    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings = settings
        self.proc = spawn(settings, ["highway.cli", "worker", "--role", "realtime"], log)
        self.url = f"http://{settings.http_host}:{settings.http_port}"

    def wait_healthy(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"realtime worker exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("realtime worker did not become healthy")

    def applied(self) -> int:
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

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def _wait(count: Callable[[], int], target: int, alive: Callable[[], bool], timeout_s: float = 900) -> None:
    time_output("wait", count, target, alive, timeout_s)


PROBE_GIVE_UP_S = 10.0


def _latency(worker: Worker, topic: str, rate: float, seconds: float) -> list[float]:
    """Background load at ``rate`` events/s plus sequential probes; returns probe latencies (s)."""
    settings = worker.settings
    stop = threading.Event()
    thread = threading.Thread(target=_background_load, args=(settings, topic, rate, stop), daemon=True)
    thread.start()
    latencies: list[float] = []
    try:
        with EventProducer(settings, None, **{"linger.ms": 0}) as probes, httpx.Client(timeout=2) as http:

            def probe(n: int) -> float:
                return _probe(worker, probes, http, topic, n)

            # Warm-up: the first probe also waits for partition assignment and state restore.
            warm_up_until = time.monotonic() + 60
            while probe(0) >= PROBE_GIVE_UP_S and time.monotonic() < warm_up_until:
                pass
            deadline = time.monotonic() + seconds
            n = 0
            while time.monotonic() < deadline:
                n += 1
                started = time.monotonic()
                latencies.append(probe(n))
                time.sleep(max(0.0, 0.1 - (time.monotonic() - started)))
    finally:
        stop.set()
        thread.join(10)
    return latencies


def _background_load(settings: Settings, topic: str, rate: float, stop: threading.Event) -> None:
    """Events with ``server_ts = now`` at ``rate`` per second until ``stop`` is set."""
    with EventProducer(settings, None, **{"linger.ms": 1}) as producer:
        i = 0
        started = time.monotonic()
        while not stop.is_set():
            due = int((time.monotonic() - started) * rate)
            now = int(time.time() * 1000)
            producer.produce_events(topic, (_event(f"bg-{j % 50_000}", now, j) for j in range(i, due)))
            i = max(i, due)
            producer.poll(0.005)


def _probe(worker: Worker, probes: EventProducer, http: httpx.Client, topic: str, n: int) -> float:
    """Seconds until a new user is visible over HTTP; ``PROBE_GIVE_UP_S`` if never."""
    lane = worker.settings.lanes[0]
    user = f"probe-{uuid.uuid4().hex[:10]}"
    sent = time.monotonic()
    probes.produce_events(topic, [_event(user, int(time.time() * 1000), n)])
    probes.poll(0)
    while time.monotonic() - sent < PROBE_GIVE_UP_S:
        try:
            answer = http.get(f"{worker.url}/api/v1/users/{user}", params={"lane": lane}).json()
        except httpx.HTTPError:
            answer = {}  # a slow answer is latency too: keep asking
        if answer.get("owned_here"):
            return time.monotonic() - sent
        time.sleep(0.005)
    return PROBE_GIVE_UP_S


def run_realtime_bench(
    base: Settings, n_events: int, users: int, rss_users: list[int], latency_s: float, work_dir: Path
) -> dict[str, Any]:
    settings = bench_settings(base, "rtbench", work_dir)
    lane = settings.lanes[0]
    topic = settings.common_topic(lane)
    admin = KafkaAdmin(settings)
    admin.ensure_topics([topic])
    result: dict[str, Any] = {"events": n_events, "users": users, "partitions": settings.topic_partitions}
    try:
        start_ms = (int(time.time() * 1000) // MIN - 30) * MIN
        console.print(f"pre-loading {n_events:,} events ({users:,} users) into {topic} …")
        _produce(settings, topic, n_events, users, start_ms, 5 * MIN)
        console.print("passthrough (raw confluent-kafka) …")
        passthrough = passthrough_rate(settings, topic, n_events)
        console.print("realtime worker …")
        worker = Worker(settings, work_dir / lane / "realtime.log")
        try:
            realtime = time_output("realtime", worker.applied, n_events, lambda: worker.proc.poll() is None)
            half = realtime.rate / 2
            console.print(f"latency at half the realtime rate ({half:,.0f} events/s) for {latency_s:.0f}s …")
            latencies = _latency(worker, topic, half, latency_s)
        finally:
            worker.stop()
        result.update(
            {
                "rates": {r.name: round(r.rate, 1) for r in (realtime, passthrough)},
                "realtime_vs_passthrough": round(realtime.rate / passthrough.rate, 3),
                "latency_load_events_per_s": round(half, 1),
                "latency_probes": len(latencies),
                "latency_p50_s": round(percentile(latencies, 0.5), 4),
                "latency_p99_s": round(percentile(latencies, 0.99), 4),
            }
        )
        result["rss_bytes"] = _memory(settings, rss_users, work_dir)
    finally:
        topics = [t for t in admin.list_topics() if t.startswith(f"{lane}.")]
        if topics:
            admin.delete_topics(topics)
    return result


def _memory(base: Settings, counts: list[int], work_dir: Path) -> dict[str, int]:
    """RSS of a fresh worker after 0, then each cumulative count of distinct users in one window."""
    settings = bench_settings(base, "rss", work_dir)
    lane = settings.lanes[0]
    topic = settings.common_topic(lane)
    KafkaAdmin(settings).ensure_topics([topic])
    window = (int(time.time() * 1000) // MIN - 10) * MIN
    worker = Worker(settings, work_dir / lane / "realtime.log")
    out: dict[str, int] = {}
    try:
        worker.wait_healthy()
        out["0"] = worker.rss_bytes()
        done = 0
        for count in sorted(counts):
            console.print(f"memory: {count:,} distinct users in one window …")
            with EventProducer(settings) as producer:
                producer.produce_events(
                    topic, (_event(f"member-{i}", window + i % MIN, i) for i in range(done, count))
                )
            done = count
            _wait(worker.applied, count, lambda: worker.proc.poll() is None)
            out[str(count)] = worker.rss_bytes()
    finally:
        worker.stop()
        admin = KafkaAdmin(settings)
        admin.delete_topics([t for t in admin.list_topics() if t.startswith(f"{lane}.")])
    return out


def _render(result: dict[str, Any]) -> Table:
    table = Table(title=f"highway bench realtime — {result['events']:,} events, {result['users']:,} users")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, rate in result["rates"].items():
        table.add_row(f"{name} events/s", f"{rate:,.0f}")
    table.add_row("realtime / passthrough", f"{result['realtime_vs_passthrough']}x", style="bold")
    table.add_row(
        f"produce→visible p50 / p99 at {result['latency_load_events_per_s']:,.0f} ev/s",
        f"{result['latency_p50_s'] * 1000:.0f} ms / {result['latency_p99_s'] * 1000:.0f} ms",
    )
    for users, rss in result["rss_bytes"].items():
        table.add_row(f"RSS with {int(users):,} users in a window", f"{rss / 2**20:,.0f} MiB")
    return table


def register(bench_app: typer.Typer, settings_for: SettingsFor) -> None:
    @bench_app.command("realtime")
    def realtime(
        ctx: typer.Context,
        events: Annotated[int, typer.Option("--events", "-n", help="events to pre-load")] = 200_000,
        users: Annotated[int, typer.Option(help="distinct users in the throughput run")] = 50_000,
        rss_users: Annotated[
            str, typer.Option(help="comma-separated user counts for RSS")
        ] = "100000,1000000",
        latency_s: Annotated[float, typer.Option(help="seconds of latency probing")] = 60.0,
        json_path: Annotated[Path | None, typer.Option("--json", help="also write the figures here")] = None,
    ) -> None:
        """Realtime events/s vs raw passthrough, produce→visible latency, RSS per distinct users."""
        settings = settings_for(ctx)
        counts = [int(c) for c in rss_users.split(",") if c.strip()]
        work = settings.state_dir / "bench" / "realtime"  # worker logs stay here
        console.print(f"worker logs: {work}")
        result = run_realtime_bench(settings, events, users, counts, latency_s, work)
        console.print(_render(result))
        if json_path is not None:
            json_path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
