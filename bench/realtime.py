"""`highway bench realtime`: realtime events/s next to the raw passthrough, latency, memory.

One run on one broker, a ``highway worker --role realtime`` subprocess per measurement:

1. **throughput**, ``--repetitions`` times (≥ 3, interleaved, order rotated): a fresh lane gets
   ``--events`` common-attribute events (``--active-users`` distinct users, timestamps over five
   minutes in the past, written in bulk by :mod:`bench.realtime_load`); the raw confluent-kafka
   passthrough (:func:`bench.baseline.passthrough_rate`) and a fresh realtime worker each read all
   of them. The worker is timed from its first applied event until it has applied all (its
   ``highway_events_total``), and its CPU time over that span is recorded: the figure's bound.
   Median and range of each;
2. **latency** — at half the median realtime rate, background events with ``server_ts = now``
   plus one probe event every 100 ms from a new user; a probe is visible when the worker's
   ``/api/v1/users/<id>`` lookup finds it (produce → queryable state). p50/p99 over the probes;
3. **memory** — a fresh worker receives ``--users`` distinct users (string ids, so hashed) inside
   one event-time window, in steps (1 000 000, then ``--users``, or ``--rss-users``); its RSS is
   read from ``/proc`` when each step's last event is applied and again once the worker has
   returned the backlog's freed heap (``settled``: the live state).
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import httpx
import orjson
import typer
from rich.console import Console
from rich.table import Table

from bench.baseline import SettingsFor, bench_settings, passthrough_rate, time_output
from bench.realtime_load import Worker, paced_load, produce_records, record, spread_users
from bench.stats import Spread, percentile, rotated, spread
from connectors.kafka_admin import KafkaAdmin
from connectors.producer import EventProducer
from core.settings import Settings
from streams.realtime import TRIM_EVERY_S

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


PROBE_GIVE_UP_S = 10.0


def _latency(worker: Worker, topic: str, rate: float, seconds: float) -> list[float]:
    """Background load at ``rate`` events/s plus sequential probes; returns probe latencies (s)."""
    settings = worker.settings
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    load = context.Process(target=paced_load, args=(settings, topic, rate, stop), daemon=True)
    load.start()
    latencies: list[float] = []
    try:
        with (
            EventProducer(settings, None, **{"linger.ms": 0}) as probes,
            httpx.Client(timeout=2, headers=worker.auth_headers) as http,
        ):

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
        load.join(20)
        if load.is_alive():
            load.kill()
    return latencies


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


def _delete_lane(settings: Settings) -> None:
    admin = KafkaAdmin(settings)
    topics = [t for t in admin.list_topics() if t.startswith(f"{settings.lanes[0]}.")]
    if topics:
        admin.delete_topics(topics)


def _repetition(
    base: Settings, n_events: int, users: int, repetition: int, work_dir: Path
) -> dict[str, float]:
    """One interleaved repetition on a fresh lane: passthrough and realtime over the same records."""
    settings = bench_settings(base, "rtbench", work_dir)
    topic = settings.common_topic(settings.lanes[0])
    KafkaAdmin(settings).ensure_topics([topic])
    out: dict[str, float] = {}
    try:
        start_ms = (int(time.time() * 1000) // MIN - 30) * MIN
        produce_records(settings, topic, spread_users(n_events, users, start_ms, 5 * MIN))
        for name in rotated(["passthrough", "realtime"], repetition):
            if name == "passthrough":
                out["passthrough"] = passthrough_rate(settings, topic, n_events).rate
            else:
                out["realtime"], out["cpu"] = _realtime_rate(settings, n_events, work_dir)
                out["load"] = os.getloadavg()[0]  # runnable processes on the machine meanwhile
    finally:
        _delete_lane(settings)
    console.print(
        f"  repetition {repetition + 1}: realtime {out['realtime']:,.0f} ev/s (worker CPU "
        f"{out['cpu']:.0%} of a core, load {out['load']:.1f}), passthrough {out['passthrough']:,.0f} ev/s"
    )
    return out


def _realtime_rate(settings: Settings, n_events: int, work_dir: Path) -> tuple[float, float]:
    """(events/s, worker CPU seconds per wall second) of a fresh worker applying ``n_events``."""
    worker = Worker(settings, work_dir / settings.lanes[0] / "realtime.log")
    cpu_at: list[float] = []
    try:
        run = time_output(
            "realtime",
            worker.applied,
            n_events,
            worker.alive,
            on_start=lambda: cpu_at.append(worker.cpu_seconds()),
        )
        cpu = (worker.cpu_seconds() - cpu_at[0]) / run.seconds if run.seconds > 0 else 0.0
    finally:
        worker.stop()
    return run.rate, cpu


def _latency_run(base: Settings, rate: float, seconds: float, work_dir: Path) -> list[float]:
    # The probes are user lookups, which always need an API token.
    token = {} if base.api_token else {"api_token": secrets.token_hex(16)}
    settings = bench_settings(base, "rtlat", work_dir, **token)
    topic = settings.common_topic(settings.lanes[0])
    KafkaAdmin(settings).ensure_topics([topic])
    worker = Worker(settings, work_dir / settings.lanes[0] / "realtime.log")
    try:
        worker.wait_healthy()
        return _latency(worker, topic, rate, seconds)
    finally:
        worker.stop()
        _delete_lane(settings)


def _spread(values: list[float]) -> Spread:
    figure = spread(values)
    if figure is None:
        raise ValueError("no finite measurement")
    return figure


def run_realtime_bench(
    base: Settings,
    n_events: int,
    active_users: int,
    rss_users: list[int],
    latency_s: float,
    repetitions: int,
    work_dir: Path,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "events": n_events,
        "active_users": active_users,
        "partitions": base.topic_partitions,
        "repetitions": repetitions,
    }
    console.print(f"throughput: {repetitions} interleaved repetitions of {n_events:,} events …")
    runs = [_repetition(base, n_events, active_users, r, work_dir) for r in range(repetitions)]
    realtime, passthrough, cpu = (
        _spread([run[k] for run in runs]) for k in ("realtime", "passthrough", "cpu")
    )
    ratios = _spread([run["realtime"] / run["passthrough"] for run in runs])
    result.update(
        {
            "realtime_events_per_s": realtime.as_dict(1),
            "passthrough_events_per_s": passthrough.as_dict(1),
            "realtime_vs_passthrough": ratios.as_dict(3),
            "realtime_worker_cpu": cpu.as_dict(2),
            "load_average": _spread([run["load"] for run in runs]).as_dict(1),
        }
    )
    half = realtime.median / 2
    console.print(f"latency at half the realtime rate ({half:,.0f} events/s) for {latency_s:.0f}s …")
    latencies = _latency_run(base, half, latency_s, work_dir)
    result.update(
        {
            "latency_load_events_per_s": round(half, 1),
            "latency_probes": len(latencies),
            "latency_p50_s": round(percentile(latencies, 0.5), 4),
            "latency_p99_s": round(percentile(latencies, 0.99), 4),
            "latency_gave_up": sum(1 for t in latencies if t >= PROBE_GIVE_UP_S),
        }
    )
    result["rss_bytes"] = _memory(base, rss_users, work_dir)
    result["bounds"] = _bounds(result)
    return result


def _memory(base: Settings, counts: list[int], work_dir: Path) -> dict[str, dict[str, int]]:
    """RSS of a fresh worker idle, then after each cumulative count of distinct users in one window:
    ``peak`` when the last of them is applied, ``settled`` once the worker has given the backlog's
    freed heap back (it trims every ``TRIM_EVERY_S`` after applying; the live state remains)."""
    settings = bench_settings(base, "rss", work_dir)
    topic = settings.common_topic(settings.lanes[0])
    KafkaAdmin(settings).ensure_topics([topic])
    window = (int(time.time() * 1000) // MIN - 10) * MIN
    worker = Worker(settings, work_dir / settings.lanes[0] / "realtime.log")
    out: dict[str, dict[str, int]] = {"peak": {}, "settled": {}}
    try:
        worker.wait_healthy()
        out["peak"]["0"] = out["settled"]["0"] = worker.rss_bytes()
        done = 0
        for count in sorted(counts):
            console.print(f"memory: {count:,} distinct users in one window …")
            members = ((b"member-%d" % i, i) for i in range(done, count))
            produce_records(
                settings, topic, ((user, record(user, window + i % MIN, i)) for user, i in members)
            )
            done = count
            time_output("memory", worker.applied, count, worker.alive, timeout_s=max(900, count / 5_000))
            out["peak"][str(count)] = worker.rss_bytes()
            time.sleep(TRIM_EVERY_S + 2)  # one trim after the last batch
            out["settled"][str(count)] = worker.rss_bytes()
            console.print(
                f"  RSS {out['settled'][str(count)] / 2**20:,.0f} MiB "
                f"(at the last event {out['peak'][str(count)] / 2**20:,.0f} MiB)"
            )
    finally:
        worker.stop()
        _delete_lane(settings)
    return out


def _bounds(result: dict[str, Any]) -> dict[str, str]:
    """What limits each figure, from the figures themselves."""
    cpu = result["realtime_worker_cpu"]["median"]
    load = result["load_average"]["median"]
    cores = os.cpu_count() or 1
    rss = result["rss_bytes"]["settled"]
    largest = max(int(k) for k in rss)
    per_user = (rss[str(largest)] - rss["0"]) / largest if largest else 0.0
    return {
        "throughput": f"CPU: the worker used {cpu:.0%} of a core (one consumer thread parses each "
        "record's JSON and applies batches; the GIL keeps it to one core) with a load average of "
        f"{load:.1f} on {cores} cores — below 100 % it was waiting for a core, not for Kafka; the "
        "passthrough is one Python thread without parsing",
        "latency": "the stage's batching (a poll returns after 50 ms or 5 000 records), the broker "
        "fetch wait (20 ms) and the probe's HTTP polling (5 ms); p99 is the CPU the load leaves free",
        "memory": f"{per_user:,.0f} bytes per distinct user above the idle worker (a 12-byte hash "
        "slot at 35-70 % load, an 8-byte last-seen entry, about one bit per user in each window "
        "bitmap); the idle worker is the Python process with its libraries; the figure at the last "
        "event adds the backlog's freed buffers (fetched record sets, parsed batches) before the "
        "worker's periodic malloc_trim returns them",
    }


def _render(result: dict[str, Any]) -> Table:
    reps = result["repetitions"]
    table = Table(title=f"highway bench realtime — {result['events']:,} events x {reps}, median (min-max)")
    table.add_column("measure")
    table.add_column("value", justify="right")

    def cell(key: str, spec: str = ",.0f", suffix: str = "") -> str:
        figure = result[key]
        return f"{figure['median']:{spec}}{suffix} ({figure['min']:{spec}}-{figure['max']:{spec}}{suffix})"

    table.add_row("realtime events/s", cell("realtime_events_per_s"))
    table.add_row("passthrough events/s (same run)", cell("passthrough_events_per_s"))
    table.add_row("realtime / passthrough", cell("realtime_vs_passthrough", ".2f", "x"), style="bold")
    table.add_row("realtime worker CPU (cores)", cell("realtime_worker_cpu", ".2f"))
    table.add_row("machine load average (1 min)", cell("load_average", ".1f"))
    table.add_row(
        f"produce→visible p50 / p99 at {result['latency_load_events_per_s']:,.0f} ev/s",
        f"{result['latency_p50_s'] * 1000:.0f} ms / {result['latency_p99_s'] * 1000:.0f} ms "
        f"({result['latency_probes']} probes, {result['latency_gave_up']} not visible in "
        f"{PROBE_GIVE_UP_S:.0f} s)",
    )
    rss = result["rss_bytes"]
    for users, settled in rss["settled"].items():
        peak = rss["peak"][users]
        table.add_row(
            f"RSS with {int(users):,} users in a window (at the last event)",
            f"{settled / 2**20:,.0f} MiB ({peak / 2**20:,.0f} MiB)",
        )
    for figure, bound in result["bounds"].items():
        table.add_row(f"bound: {figure}", bound)
    return table


def rss_steps(users: int, rss_users: str | None) -> list[int]:
    """The distinct-user counts the memory run measures at."""
    if rss_users:
        return sorted({int(c) for c in rss_users.split(",") if c.strip()})
    return sorted({min(users, 1_000_000), users})


def register(bench_app: typer.Typer, settings_for: SettingsFor) -> None:
    @bench_app.command("realtime")
    def realtime(
        ctx: typer.Context,
        events: Annotated[int, typer.Option("--events", "-n", help="events per throughput run")] = 300_000,
        users: Annotated[
            int, typer.Option(help="distinct users in one window for the memory figure (also at 1M)")
        ] = 1_000_000,
        active_users: Annotated[int, typer.Option(help="distinct users in the throughput runs")] = 50_000,
        rss_users: Annotated[
            str | None, typer.Option(help="comma-separated user counts for RSS (instead of 1M and --users)")
        ] = None,
        repetitions: Annotated[int, typer.Option(min=1, help="interleaved throughput repetitions")] = 3,
        latency_s: Annotated[float, typer.Option(help="seconds of latency probing")] = 60.0,
        json_path: Annotated[Path | None, typer.Option("--json", help="also write the figures here")] = None,
    ) -> None:
        """Realtime events/s vs raw passthrough, produce→visible latency, RSS per distinct users."""
        settings = settings_for(ctx)
        work = settings.state_dir / "bench" / "realtime"  # worker logs stay here
        console.print(f"worker logs: {work}")
        steps = rss_steps(users, rss_users)
        result = run_realtime_bench(settings, events, active_users, steps, latency_s, repetitions, work)
        console.print(_render(result))
        if json_path is not None:
            json_path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
