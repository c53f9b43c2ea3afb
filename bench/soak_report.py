"""The soak's arithmetic and its printed lines: samples in, rows, a least-squares RSS slope and verdicts out.

Pure (no I/O) so that the verdicts are unit-tested; :mod:`bench.soak` takes the samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

RSS_FLAT_MIB_PER_MIN = 2.0
"""Bound on the worker's RSS slope over the second half for "RSS flat". A leak of one 100-byte object
per event at 5,000 events/s grows ~29 MiB/min; the lake's buffers (filled and flushed every
``lake_flush_age_s``) and the realtime windows (closing every ``realtime_window_s``) make RSS a
sawtooth, whose fitted slope over a few minutes stays well under this."""

LAG_BOUND_S = 30.0
"""Bound for "lag bounded": in the second half no stage is ever more than this many seconds of offered
traffic behind (a stage that cannot keep up grows its lag without limit; one that keeps up stays within
a few batches and commit intervals). The lake's lag also counts the rows it buffers until a flush, so
its bound adds ``lake_flush_age_s`` of traffic (and counts rows: :data:`LAKE_ROWS_PER_EVENT`)."""

LAKE_ROWS_PER_EVENT = 2
"""The lake's lag counts rows, and every routed event becomes two: one in its event's table and its
projection in the common table (``events--common``, ``core.routing.classify``). The other stages' lags
count events."""

STAGES = ("router", "lake", "realtime")


@dataclass(frozen=True)
class Sample:
    """One look at the worker: when, its RSS, each stage's lag (None: not on /metrics yet)."""

    elapsed_s: float
    rss_bytes: int
    lags: dict[str, int | None]


@dataclass(frozen=True)
class Summary:
    rss_slope_mib_per_min: float | None
    max_lag: dict[str, int]
    lag_bounds: dict[str, int]
    rss_flat: bool
    lag_bounded: bool


HEADER = f"{'elapsed':>8} {'offered/s':>10} {'RSS MiB':>8} {'router lag':>11} {'lake lag':>9} {'rt lag':>8}"


def format_row(sample: Sample, offered_per_s: float) -> str:
    """One printed row (aligned under :data:`HEADER`); an unknown lag prints as ``-``."""

    def lag(stage: str) -> str:
        value = sample.lags.get(stage)
        return "-" if value is None else f"{value:,}"

    minutes, seconds = divmod(int(sample.elapsed_s), 60)
    return (
        f"{minutes:>5}:{seconds:02d} {offered_per_s:>10,.0f} {sample.rss_bytes / 2**20:>8.1f} "
        f"{lag('router'):>11} {lag('lake'):>9} {lag('realtime'):>8}"
    )


def samples_text(samples: Sequence[Sample]) -> str:
    """Every sample as CSV (seconds, RSS in MiB, each stage's lag; empty: not on /metrics)."""
    lines = [",".join(["elapsed_s", "rss_mib", *STAGES])]
    for sample in samples:
        lags = ["" if (lag := sample.lags.get(stage)) is None else str(lag) for stage in STAGES]
        lines.append(",".join([f"{sample.elapsed_s:.1f}", f"{sample.rss_bytes / 2**20:.1f}", *lags]))
    return "\n".join(lines) + "\n"


def least_squares_slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Slope of the least-squares line through ``(x, y)`` points; None for fewer than two distinct x."""
    n = len(points)
    if n < 2:
        return None
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def second_half(samples: Sequence[Sample], duration_s: float) -> list[Sample]:
    """The samples after warm-up: the first half (start-up, the calibration backlog) is left out."""
    return [sample for sample in samples if sample.elapsed_s >= duration_s / 2]


def lag_bounds(rate: float, lake_flush_age_s: float) -> dict[str, int]:
    """Per stage, the most records it may be behind in the second half (see :data:`LAG_BOUND_S`); the
    lake's in rows (:data:`LAKE_ROWS_PER_EVENT`)."""
    bounds = dict.fromkeys(STAGES, int(rate * LAG_BOUND_S))
    bounds["lake"] = int(rate * LAKE_ROWS_PER_EVENT * (LAG_BOUND_S + lake_flush_age_s))
    return bounds


def summarize(samples: Sequence[Sample], duration_s: float, bounds: dict[str, int]) -> Summary:
    """RSS slope (MiB/min) over the second half, max lag per stage over the whole run, and the verdicts."""
    late = second_half(samples, duration_s)
    slope = least_squares_slope([(s.elapsed_s / 60, s.rss_bytes / 2**20) for s in late])
    max_lag = {
        stage: max((lag for s in samples if (lag := s.lags.get(stage)) is not None), default=0)
        for stage in STAGES
    }
    measured = [(stage, lag) for s in late for stage in STAGES if (lag := s.lags.get(stage)) is not None]
    return Summary(
        rss_slope_mib_per_min=slope,
        max_lag=max_lag,
        lag_bounds=dict(bounds),
        rss_flat=slope is not None and slope < RSS_FLAT_MIB_PER_MIN,
        lag_bounded=bool(measured) and all(lag <= bounds[stage] for stage, lag in measured),
    )


def summary_lines(summary: Summary) -> list[str]:
    slope = summary.rss_slope_mib_per_min
    slope_text = (
        "n/a (fewer than two samples in the second half)" if slope is None else f"{slope:+.2f} MiB/min"
    )
    lags = ", ".join(f"{stage} {summary.max_lag[stage]:,}" for stage in STAGES)
    bounds = ", ".join(f"{stage} {summary.lag_bounds[stage]:,}" for stage in STAGES)
    return [
        f"RSS slope (second half, least squares): {slope_text}",
        f"max lag (whole run): {lags}",
        f"RSS flat: {'yes' if summary.rss_flat else 'NO'} (slope < {RSS_FLAT_MIB_PER_MIN} MiB/min)",
        f"lag bounded: {'yes' if summary.lag_bounded else 'NO'} (second half within {bounds}: "
        f"{LAG_BOUND_S:.0f} s of offered traffic, the lake's plus its flush age, in rows: "
        f"{LAKE_ROWS_PER_EVENT} per event)",
    ]
