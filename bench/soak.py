"""`highway bench soak`: an all-roles worker under steady simulator traffic, watched for leaks and lag.

1. **The pipeline's maximum** (unless ``--rate`` is given): one ``highway worker`` with every pipeline
   role (router, lake, realtime) starts on a fresh lane whose per-event topics already exist; once its
   router group is stable, ``--calibrate-events`` pre-encoded simulator events (over
   ``--calibrate-types`` names) are loaded, and each stage's rate is events / seconds from the start of
   loading until it has caught up — the router committed them, realtime consumed them, the lake
   *committed them to the lake* (its lag, which counts buffered rows, back to 0), less the lake's
   designed wait for its flush age. The slowest stage's rate is the maximum
   (:mod:`bench.soak_calibration`). The default backlog keeps the router busy for longer than the
   flush age, so the lake's flushes run while the router still routes, as they do in the soak.
2. **The soak**: the same worker gets simulator traffic (event time = wall time, no surge) at
   ``--rate-fraction`` of that maximum for ``--duration`` seconds, produced from a thread of the bench.
   Every ``SAMPLE_EVERY_S`` the bench reads the worker's RSS (``/proc``) and each stage's lag from its
   ``/metrics`` (``highway_router_lag``, ``highway_lake_lag``, ``highway_consumer_lag``); every
   ``--every`` seconds it prints a row.
3. **The verdicts** (:mod:`bench.soak_report`): the RSS slope fitted over the second half, and every
   stage's lag in the second half against a bound.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Annotated

import httpx
import typer
from confluent_kafka import KafkaException
from prometheus_client.parser import text_string_to_metric_families

from bench.baseline import SettingsFor, bench_settings, spawn, wait_until_healthy
from bench.events import BenchEvents, create_source, drop_lane, load, precreate_event_topics, simulate
from bench.router_run import committed_counter, stop_process, wait_group_ready
from bench.soak_calibration import Calibration, CalibrationSample, calibration_lines, caught_up
from bench.soak_report import (
    HEADER,
    Sample,
    Summary,
    format_row,
    lag_bounds,
    samples_text,
    summarize,
    summary_lines,
)
from connectors.producer import EventProducer
from core.envvars import with_overrides
from core.settings import Settings
from core.sim import MatchDaySimulator, SimConfig
from streams.consumer import LAG_EVERY_S

SAMPLE_EVERY_S = 5.0
CALIBRATION_TIMEOUT_S = 1800.0
CALIBRATE_EVENTS = 1_000_000
"""~110 s of routing at the ~9,000 events/s the router reaches alone: more than the lake's 60 s flush age,
so its first flushes compete with the router (and realtime) for the GIL, as in the soak."""
CALIBRATION_SAMPLE_S = 0.5
CALIBRATION_METRICS = (
    "highway_consumer_lag",
    "highway_lake_lag",
    "highway_lake_buffered_rows",
    "highway_lake_commit_seconds_sum",
)
LAG_METRICS = {"router": "highway_router_lag", "lake": "highway_lake_lag", "realtime": "highway_consumer_lag"}
Emit = Callable[[str], None]


class SoakWorker:
    """The all-roles ``highway worker`` under test, and what the bench reads from it."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings = settings
        self.log = log
        roles = "router,lake,realtime"
        self.proc = spawn(settings, ["highway.cli", "worker", "--role", roles], log)
        self.url = f"http://{settings.http_host}:{settings.http_port}"
        token = settings.api_token
        self.headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def metrics(self, names: Collection[str]) -> dict[str, float | None]:
        """Each named sample of ``/metrics`` summed over its labels; None for one not there (yet)."""
        found: dict[str, float | None] = dict.fromkeys(names)
        try:
            text = httpx.get(f"{self.url}/metrics", headers=self.headers, timeout=10).text
        except httpx.HTTPError:
            return found
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in found:
                    found[sample.name] = (found[sample.name] or 0) + sample.value
        return found

    def lags(self) -> dict[str, int | None]:
        """Each stage's lag summed over its partitions; None for a stage not on /metrics (yet)."""
        values = self.metrics(LAG_METRICS.values())
        return {stage: _whole(values[metric]) for stage, metric in LAG_METRICS.items()}

    def sample(self, started: float) -> Sample:
        return Sample(time.monotonic() - started, self.rss_bytes(), self.lags())

    def check(self) -> None:
        if not self.alive():
            raise RuntimeError(f"the soak worker exited with {self.proc.returncode}; see {self.log}")


class Feed(threading.Thread):
    """Simulator traffic at ``rate`` events/s, event time following wall time, until ``stop``."""

    def __init__(self, settings: Settings, lane: str, rate: float, duration_s: float) -> None:
        super().__init__(name="soak-feed", daemon=True)
        self.settings, self.lane, self.rate = settings, lane, rate
        self.config = SimConfig(
            start_ms=int(time.time() * 1000),
            seed=7,
            events=None,
            duration_s=duration_s + 60,  # never runs dry before the soak ends
            base_rate=rate,
            surge_factor=1.0,  # steady: the soak is about time, not peaks
            lane=lane,
        )
        self.produced = 0
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the bench, which stops the soak
            self.error = exc

    def _run(self) -> None:
        topic = self.settings.all_events_topic(self.lane)
        started, start_ms = time.monotonic(), self.config.start_ms
        batch_size = max(1, int(self.rate // 20))  # ~20 paced sends per second
        with EventProducer(self.settings) as producer:
            for batch in MatchDaySimulator(self.config).batches(batch_size):
                due = started + (batch[0]["server_ts"] - start_ms) / 1000
                while (wait := due - time.monotonic()) > 0:
                    if self.stop.wait(min(wait, 0.1)):
                        return
                    producer.poll(0)
                if self.stop.is_set():
                    return
                self.produced += producer.produce_events(topic, batch)


def _whole(value: float | None) -> int | None:
    return None if value is None else int(value)


def measure_max(
    settings: Settings, worker: SoakWorker, lane: str, events: BenchEvents, emit: Emit
) -> Calibration:
    """The pipeline's maximum from a backlog of ``events`` (:mod:`bench.soak_calibration`)."""
    emit(f"calibrating: {len(events):,} events through the all-roles worker, until every stage caught up …")
    wait_group_ready(settings, lane, 1, worker.alive)
    committed = committed_counter(settings, lane)

    def count() -> int:
        try:
            return committed()
        except KafkaException:  # the group's coordinator is still loading (a fresh broker): not yet
            return 0

    samples: list[CalibrationSample] = []
    started = time.monotonic()
    loaded_s = load(settings, settings.all_events_topic(lane), events)
    emit(f"  loaded in {loaded_s:.1f} s")
    while True:
        worker.check()
        at = time.monotonic()
        if at - started > CALIBRATION_TIMEOUT_S:
            raise RuntimeError(f"calibration: not caught up within {CALIBRATION_TIMEOUT_S:.0f} s")
        values = worker.metrics(CALIBRATION_METRICS)
        samples.append(
            CalibrationSample(
                at - started,
                count(),
                realtime_lag=_whole(values["highway_consumer_lag"]),
                lake_lag=_whole(values["highway_lake_lag"]),
                lake_buffered=_whole(values["highway_lake_buffered_rows"]),
                lake_flush_s=values["highway_lake_commit_seconds_sum"],
            )
        )
        calibration = caught_up(samples, len(events), settings.lake_flush_age_s, LAG_EVERY_S)
        if calibration is not None:
            break
        time.sleep(max(0.0, CALIBRATION_SAMPLE_S - (time.monotonic() - at)))
    for line in calibration_lines(calibration, settings.lake_flush_age_s):
        emit(line)
    return calibration


def soak(
    worker: SoakWorker, feed: Feed, duration_s: float, every_s: float, emit: Emit
) -> tuple[list[Sample], float]:
    """Sample until ``duration_s`` has passed, print a row every ``every_s``; the samples and the
    mean offered rate."""
    samples: list[Sample] = []
    emit(HEADER)
    feed.start()
    started = time.monotonic()
    last_row, produced_at_row = started, 0
    while (now := time.monotonic()) - started < duration_s:
        worker.check()
        if feed.error is not None:
            raise RuntimeError(f"the soak's producer failed: {feed.error!r}") from feed.error
        samples.append(worker.sample(started))
        if now - last_row >= every_s - SAMPLE_EVERY_S / 2:
            produced = feed.produced
            emit(format_row(samples[-1], (produced - produced_at_row) / (now - last_row)))
            last_row, produced_at_row = now, produced
        time.sleep(max(0.0, SAMPLE_EVERY_S - (time.monotonic() - now)))
    feed.stop.set()
    feed.join(30)
    return samples, feed.produced / (time.monotonic() - started)


def run_soak(
    base: Settings,
    duration_s: float,
    work_dir: Path,
    *,
    rate: float | None = None,
    rate_fraction: float = 0.7,
    calibrate_events: int = CALIBRATE_EVENTS,
    calibrate_types: int = 250,
    every_s: float = 30.0,
    emit: Emit = print,
    samples_csv: Path | None = None,
) -> Summary:
    """The whole soak on a fresh lane (dropped afterwards); prints as it goes, returns the verdicts."""
    token = {} if base.api_token else {"api_token": secrets.token_hex(16)}
    settings = bench_settings(base, "soak", work_dir, **token)
    lane = settings.lanes[0]
    settings = with_overrides(settings, lake_uri=f"{base.lake_uri.rstrip('/')}/{lane}")
    backlog = None
    if rate is None:
        backlog = simulate(settings, calibrate_events, calibrate_types)
        create_source(settings, lane)
        precreate_event_topics(settings, lane, backlog)  # steady state: no topic is new
    worker = SoakWorker(settings, work_dir / lane / "worker.log")
    try:
        wait_until_healthy(worker.proc, worker.url, "soak worker")
        if backlog is not None:
            rate = rate_fraction * measure_max(settings, worker, lane, backlog, emit).maximum
        assert rate is not None
        emit(f"soak: {rate:,.0f} events/s for {duration_s:,.0f} s")
        feed = Feed(settings, lane, rate, duration_s)
        samples, offered = soak(worker, feed, duration_s, every_s, emit)
        if samples_csv is not None:
            samples_csv.write_text(samples_text(samples))
    finally:
        stop_process(worker.proc)
        drop_lane(settings, lane, settle_s=0)
    summary = summarize(samples, duration_s, lag_bounds(rate, settings.lake_flush_age_s))
    emit(f"offered: {offered:,.0f} events/s on average")
    for line in summary_lines(summary):
        emit(line)
    return summary


def register(bench_app: typer.Typer, settings_for: SettingsFor) -> None:
    @bench_app.command("soak")
    def soak_command(
        ctx: typer.Context,
        duration: Annotated[float, typer.Option(help="seconds of steady traffic", min=10)] = 600,
        rate_fraction: Annotated[
            float, typer.Option(help="share of the measured maximum to offer", min=0.001, max=1.0)
        ] = 0.7,
        rate: Annotated[
            float | None, typer.Option(help="events/s to offer (skips measuring the maximum)", min=1)
        ] = None,
        calibrate_events: Annotated[
            int, typer.Option(help="backlog the maximum is measured on", min=1000)
        ] = CALIBRATE_EVENTS,
        calibrate_types: Annotated[
            int, typer.Option(help="event names in that backlog (bench route's mix)", min=1)
        ] = 250,
        every: Annotated[float, typer.Option(help="seconds between printed rows", min=5)] = 30,
        samples: Annotated[
            Path | None,
            typer.Option(help=f"write every sample (one each {SAMPLE_EVERY_S:.0f} s) here as CSV"),
        ] = None,
    ) -> None:
        """RSS and lag of an all-roles worker over time at a share of the pipeline's measured maximum;
        exits 1 unless RSS stays flat and lag bounded (docs/operations.md)."""
        settings = settings_for(ctx)
        work = Path(tempfile.mkdtemp(prefix="highway-bench-soak-"))
        summary = run_soak(
            settings,
            duration,
            work,
            rate=rate,
            rate_fraction=rate_fraction,
            calibrate_events=calibrate_events,
            calibrate_types=calibrate_types,
            every_s=every,
            samples_csv=samples,
        )
        if not (summary.rss_flat and summary.lag_bounded):
            print(f"worker log kept under {work}")
            raise typer.Exit(1)
        shutil.rmtree(work, ignore_errors=True)
