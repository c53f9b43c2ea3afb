"""The collector bench's HTTP load generator: an aiohttp client in a process of its own.

Bodies are built before the clock starts (JSON arrays of ``batch`` events), so the generator spends
its CPU on HTTP, not on serialising. Two modes:

* **closed loop** (throughput): ``concurrency`` connections, each sending its next request as soon
  as the previous one is answered, until ``requests`` were answered;
* **open loop** (latency): requests start on a fixed schedule (``rate`` per second) whatever the
  answers, so a slow answer does not hold back the next request; latency is counted from the moment
  a request was *due* (no coordinated omission) and, separately, from when it was sent.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from bench.cpu import cpu_seconds, machine_jiffies

BODIES = 200  # distinct request bodies, sent round-robin


def build_bodies(batch: int, count: int = BODIES) -> list[bytes]:
    tag = uuid.uuid4().hex[:8]
    bodies = []
    for b in range(count):
        events = [
            {
                "event_name": f"ev{(b + i) % 40}",
                "event_id": f"{tag}-{b}-{i}",
                "user_id": f"u{(b * batch + i) % 50_000}",
                "session_id": f"s{b}",
                "platform": ("android", "ios", "web")[i % 3],
                "app_version": "5.1.0",
                "device_id": f"d{b}",
                "client_ts": int(time.time() * 1000),
                "properties": {"screen": "home", "position": i, "price": 9.99},
            }
            for i in range(batch)
        ]
        bodies.append(orjson.dumps(events))
    return bodies


@dataclass
class LoadResult:
    """What one load run saw (plain data: it crosses a process boundary)."""

    seconds: float = 0.0
    events: int = 0
    latencies: list[float] = field(default_factory=list)  # from send, seconds
    due_latencies: list[float] = field(default_factory=list)  # from the scheduled start (open loop)
    statuses: dict[int, int] = field(default_factory=dict)
    generator_cpu_s: float = 0.0  # this process over the timed window
    collector_cpu_s: float | None = None  # the collector process over the same window
    machine_share: float | None = None  # busy share of all cores over the window (other work too)


async def _send(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]) -> int:
    try:
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
            return response.status
    except aiohttp.ClientError:
        return 0


async def _closed(url: str, key: str, batch: int, requests: int, concurrency: int, pid: int) -> LoadResult:
    bodies = build_bodies(batch)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    result = LoadResult()
    counter = iter(range(requests))

    async def connection(session: aiohttp.ClientSession) -> None:
        for n in counter:
            sent = time.perf_counter()
            status = await _send(session, url, bodies[n % len(bodies)], headers)
            result.latencies.append(time.perf_counter() - sent)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if status == 200:
                result.events += batch

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await _send(session, url, bodies[0], headers)  # connect once before the clock starts
        clock = _Clock(pid)
        started = time.perf_counter()
        await asyncio.gather(*(connection(session) for _ in range(concurrency)))
        result.seconds = time.perf_counter() - started
        clock.close(result)
    return result


async def _open(url: str, key: str, batch: int, rate: float, seconds: float, pid: int) -> LoadResult:
    bodies = build_bodies(batch)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    result = LoadResult()
    tasks: list[asyncio.Task[None]] = []

    async def one(session: aiohttp.ClientSession, n: int, due: float) -> None:
        sent = time.perf_counter()
        status = await _send(session, url, bodies[n % len(bodies)], headers)
        done = time.perf_counter()
        result.latencies.append(done - sent)
        result.due_latencies.append(done - due)
        result.statuses[status] = result.statuses.get(status, 0) + 1
        if status == 200:
            result.events += batch

    connector = aiohttp.TCPConnector(limit=1000)
    async with aiohttp.ClientSession(connector=connector) as session:
        await _send(session, url, bodies[0], headers)
        clock = _Clock(pid)
        started = time.perf_counter()
        total = int(rate * seconds)
        for n in range(total):
            due = started + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, n, due)))
        await asyncio.gather(*tasks)
        result.seconds = time.perf_counter() - started
        clock.close(result)
    return result


class _Clock:
    """CPU of this process and of the collector over the timed window."""

    def __init__(self, collector_pid: int) -> None:
        self.pid = collector_pid
        self.own = time.process_time()
        self.collector = cpu_seconds(collector_pid)
        self.machine = machine_jiffies()

    def close(self, result: LoadResult) -> None:
        result.generator_cpu_s = time.process_time() - self.own
        machine = machine_jiffies()
        if machine and self.machine and machine[1] > self.machine[1]:
            result.machine_share = (machine[0] - self.machine[0]) / (machine[1] - self.machine[1])
        end = cpu_seconds(self.pid)
        if end is not None and self.collector is not None:
            result.collector_cpu_s = end - self.collector


def run_load(spec: dict[str, Any], results: Any) -> None:
    """Process entry point: run the load ``spec`` describes, put a :class:`LoadResult` dict on ``results``."""
    if spec.get("rate"):
        coro = _open(spec["url"], spec["key"], spec["batch"], spec["rate"], spec["seconds"], spec["pid"])
    else:
        coro = _closed(
            spec["url"], spec["key"], spec["batch"], spec["requests"], spec["concurrency"], spec["pid"]
        )
    result = asyncio.run(coro)
    results.put(result.__dict__)
