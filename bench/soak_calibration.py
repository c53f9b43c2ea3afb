"""The soak's calibration arithmetic: when each stage had caught up with a backlog, and the maximum.

The pipeline's maximum is the rate of its slowest stage, every stage running at once in one worker
(they share the GIL and the cores), lake flushes included. A backlog of ``events`` is loaded and the
bench samples, from the start of loading:

* **router**: the router group's committed input offsets cover every event (routed and durable);
* **realtime**: afterwards, ``highway_consumer_lag`` is 0 (every routed record consumed);
* **lake**: afterwards, ``highway_lake_lag`` is 0 — it counts the rows the lake buffers, so 0 means
  every routed record is *committed to the lake*, not just read.

Each stage's figure is events / seconds until it had caught up; the maximum is the smallest, and the
stage it belongs to bounds the pipeline.

**The flush age is a designed delay, not capacity**: a row read is buffered until its partition's
buffer is ``lake_flush_age_s`` old (or full), so once the lake has read everything it *waits* up to
that long before the last flush — idle, at any load. That wait is subtracted: it is measured as the
time from the first sample in which everything is read (the lake's lag no larger than its buffered
rows) to the one in which the lake's lag is 0, less the seconds its flushes took in between
(``highway_lake_commit_seconds_sum``), and is at most the flush age. What remains is the time the
lake spent reading and flushing — capacity. The lag gauges are refreshed every
``LAG_EVERY_S`` (``streams.consumer``) and not at all while a flush blocks the lake's thread, so
"everything read" is only taken from samples at least that long after the router finished, and a
flush running when it is seen counts whole (the lake's figure errs slow). A flush that began within
that time of the router finishing can freeze a stale "everything read"; the reading after it then
counts as waiting (the figure errs fast, by at most that reading).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

STAGES = ("router", "realtime", "lake")


@dataclass(frozen=True)
class CalibrationSample:
    """One look at the worker during the calibration (``None``: not on /metrics yet)."""

    elapsed_s: float
    """Seconds since loading the backlog started."""
    router_committed: int
    realtime_lag: int | None
    lake_lag: int | None
    lake_buffered: int | None
    lake_flush_s: float | None
    """``highway_lake_commit_seconds_sum``: seconds the lake has spent in flushes so far."""


@dataclass(frozen=True)
class Calibration:
    events: int
    router_s: float
    realtime_s: float
    lake_done_s: float
    """Until the lake's lag was 0: every event committed to the lake."""
    lake_wait_s: float
    """Of that, the designed wait for the flush age with every row read (subtracted)."""

    @property
    def seconds(self) -> dict[str, float]:
        """Per stage, the seconds it needed (the lake's without its designed wait)."""
        lake = self.lake_done_s - self.lake_wait_s
        return {"router": self.router_s, "realtime": self.realtime_s, "lake": lake}

    @property
    def rates(self) -> dict[str, float]:
        return {stage: self.events / max(seconds, 1e-9) for stage, seconds in self.seconds.items()}

    @property
    def bounding(self) -> str:
        """The slowest stage: the one that bounds the pipeline."""
        seconds = self.seconds
        return max(STAGES, key=lambda stage: seconds[stage])

    @property
    def maximum(self) -> float:
        return self.rates[self.bounding]


def _first(
    samples: Sequence[CalibrationSample], test: Callable[[CalibrationSample], bool]
) -> CalibrationSample | None:
    return next((sample for sample in samples if test(sample)), None)


def _everything_read(sample: CalibrationSample) -> bool:
    lag, buffered = sample.lake_lag, sample.lake_buffered
    return lag is not None and buffered is not None and lag <= buffered


def caught_up(
    samples: Sequence[CalibrationSample], events: int, flush_age_s: float, lag_every_s: float
) -> Calibration | None:
    """The calibration once every stage has caught up with ``events``; None until then."""
    router = _first(samples, lambda s: s.router_committed >= events)
    if router is None:
        return None
    after = [s for s in samples if s.elapsed_s >= router.elapsed_s]
    realtime = _first(after, lambda s: s.realtime_lag == 0)
    lake = _first(after, lambda s: s.lake_lag == 0)
    if realtime is None or lake is None:
        return None
    fresh = [s for s in after if router.elapsed_s + lag_every_s <= s.elapsed_s <= lake.elapsed_s]
    read_all = _first(fresh, _everything_read)
    wait = 0.0
    if read_all is not None:
        flushing = (lake.lake_flush_s or 0.0) - (read_all.lake_flush_s or 0.0)
        wait = min(flush_age_s, max(0.0, lake.elapsed_s - read_all.elapsed_s - flushing))
    return Calibration(events, router.elapsed_s, realtime.elapsed_s, lake.elapsed_s, wait)


def calibration_lines(calibration: Calibration, flush_age_s: float) -> list[str]:
    """The printed figures: each stage's, and which one bounds the maximum."""
    seconds, rates = calibration.seconds, calibration.rates
    lines = []
    for stage in STAGES:
        note = ""
        if stage == "lake":
            note = (
                f" (committed to the lake after {calibration.lake_done_s:.1f} s, less "
                f"{calibration.lake_wait_s:.1f} s waiting for the flush age of {flush_age_s:.0f} s "
                "with every row read)"
            )
        rate = f"{rates[stage]:>9,.0f} events/s"
        lines.append(f"  {stage:<8} {rate}: caught up in {seconds[stage]:.1f} s{note}")
    lines.append(
        f"pipeline max: {calibration.maximum:,.0f} events/s ({calibration.events:,} events), "
        f"bounded by the {calibration.bounding}"
    )
    return lines
