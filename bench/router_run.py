"""The real router under the bench: ``highway worker --role router`` processes driven from outside.

The router processes start on an empty lane and join one consumer group (each with its own
``router_instance_id``, so their transactional ids differ); once the group is stable with every
member, the bench loads the events into the lane's all-events topic and times from the first one
produced until the group's committed offsets cover all of them — the router commits an event's
offset only after its routed records are durable (exactly once: in the same transaction), so that
is "fully routed". Loading shares the cores with the router for its first fraction of a second
(``inject_s`` in the figures). Afterwards the per-event and dead-letter topics are counted with a
``read_committed`` consumer: a run whose output falls short fails instead of printing a rate.

*Steady state* pre-creates every event type's topic; a *burst* leaves them all new.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, ConsumerGroupState, TopicPartition
from confluent_kafka.admin import AdminClient

from bench.baseline import spawn
from bench.cpu import CpuUse, CpuWindow, broker_pid
from bench.events import BenchEvents, create_source, load, precreate_event_topics
from connectors.kafka_config import confluent_config
from connectors.local.process import free_ports
from core.envvars import with_overrides
from core.errors import TransientError
from core.settings import Settings
from streams.routing import input_group_id


@dataclass(frozen=True)
class RouterRun:
    events: int
    seconds: float
    inject_s: float
    routed: int
    cpu: CpuUse


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def start_routers(settings: Settings, processes: int, log_dir: Path) -> list[subprocess.Popen[bytes]]:
    procs = []
    for index, port in enumerate(free_ports(processes)):
        own = with_overrides(settings, router_instance_id=f"bench-{index}", http_port=port)
        procs.append(
            spawn(own, ["highway.cli", "worker", "--role", "router"], log_dir / f"router-{index}.log")
        )
    return procs


def _alive(procs: list[subprocess.Popen[bytes]]) -> Callable[[], bool]:
    return lambda: all(proc.poll() is None for proc in procs)


def wait_group_ready(
    settings: Settings, lane: str, members: int, alive: Callable[[], bool], timeout_s: float = 120
) -> None:
    """Until the router group is stable with ``members`` members owning every input partition."""
    client = AdminClient(confluent_config(settings))
    group, source = input_group_id(settings), settings.all_events_topic(lane)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise TransientError("a router process exited before its group was ready")
        try:
            found = client.describe_consumer_groups([group], request_timeout=10)[group].result()
        except Exception:  # the group does not exist until the first member joins
            found = None
        if found is not None and found.state == ConsumerGroupState.STABLE and len(found.members) == members:
            owned = {
                tp.partition
                for member in found.members
                for tp in member.assignment.topic_partitions
                if tp.topic == source
            }
            if len(owned) == settings.topic_partitions:
                return
        time.sleep(0.2)
    raise TransientError(f"router group {group} not stable with {members} members within {timeout_s:.0f}s")


def committed_counter(settings: Settings, lane: str) -> Callable[[], int]:
    """Input records the router group has committed (its routed records are durable)."""
    consumer = Consumer(confluent_config(settings, **{"group.id": input_group_id(settings)}))
    partitions = [
        TopicPartition(settings.all_events_topic(lane), p) for p in range(settings.topic_partitions)
    ]

    def committed() -> int:
        return sum(max(0, tp.offset) for tp in consumer.committed(partitions, timeout=10))

    return committed


def count_routed(settings: Settings, lane: str, expected: int, idle_s: float = 5.0) -> int:
    """Committed records in the lane's per-event and dead-letter topics (stops at ``expected``)."""
    client = AdminClient(confluent_config(settings))
    pattern = settings.event_topic_pattern(lane)
    regex, dlq = re.compile(pattern), settings.dlq_topic(lane)
    metadata = client.list_topics(timeout=15).topics
    assignment = [
        TopicPartition(name, p, OFFSET_BEGINNING)
        for name, topic in metadata.items()
        if regex.fullmatch(name) or name == dlq
        for p in topic.partitions
    ]
    consumer = Consumer(
        confluent_config(
            settings,
            **{
                "group.id": "highway-bench-count",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
            },
        )
    )
    consumer.assign(assignment)
    count, quiet_since = 0, time.monotonic()
    try:
        while count < expected and time.monotonic() - quiet_since < idle_s:
            got = [m for m in consumer.consume(10_000, 0.5) if m.error() is None]
            if got:
                count += len(got)
                quiet_since = time.monotonic()
    finally:
        consumer.close()
    return count


def run_router(
    settings: Settings,
    lane: str,
    events: BenchEvents,
    processes: int,
    steady: bool,
    log_dir: Path,
    timeout_s: float = 900,
) -> RouterRun:
    """One router measurement on a fresh ``lane`` (see the module docstring)."""
    source = create_source(settings, lane)
    if steady:
        precreate_event_topics(settings, lane, events)
    procs = start_routers(settings, processes, log_dir)
    alive = _alive(procs)
    try:
        wait_group_ready(settings, lane, processes, alive)
        time.sleep(1.0)  # let the fresh members finish their first (empty) fetches
        committed = committed_counter(settings, lane)
        window = CpuWindow(
            {f"router-{i}": p.pid for i, p in enumerate(procs)}, broker_pid(settings.kafka_bootstrap)
        )
        window.start()
        started = time.monotonic()
        inject_s = load(settings, source, events)
        done, deadline = 0, started + timeout_s
        while (done := committed()) < len(events):
            if not alive():
                raise TransientError(f"a router process exited after {done} of {len(events)} events")
            if time.monotonic() > deadline:
                raise TransientError(f"router: {done} of {len(events)} events within {timeout_s:.0f}s")
            time.sleep(0.05)
        seconds = time.monotonic() - started
        cpu = window.stop()
    finally:
        for proc in procs:
            stop_process(proc)
    routed = count_routed(settings, lane, len(events))
    if routed < len(events):
        raise TransientError(f"router committed {len(events)} events but only {routed} are in its output")
    return RouterRun(len(events), seconds, inject_s, routed, cpu)
