"""The soak's pure parts: the least-squares RSS slope, the verdicts and the printed rows."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from bench.soak_report import (
    HEADER,
    LAG_BOUND_S,
    LAKE_ROWS_PER_EVENT,
    RSS_FLAT_MIB_PER_MIN,
    Sample,
    format_row,
    lag_bounds,
    least_squares_slope,
    samples_text,
    summarize,
    summary_lines,
)

MIB = 2**20
BOUNDS = lag_bounds(1000, lake_flush_age_s=60)


def run(rss_mib: Sequence[float], lag: int = 10, every_s: float = 30) -> list[Sample]:
    return [
        Sample(i * every_s, int(mib * MIB), {"router": lag, "lake": lag // 2, "realtime": 0})
        for i, mib in enumerate(rss_mib)
    ]


def test_slope_of_a_line_and_of_too_few_points() -> None:
    assert least_squares_slope([(0, 1), (1, 3), (2, 5)]) == pytest.approx(2.0)
    assert least_squares_slope([(0, 1), (1, 0), (2, 1), (3, 0)]) == pytest.approx(-0.2)
    assert least_squares_slope([(0, 1)]) is None
    assert least_squares_slope([(1, 1), (1, 5)]) is None


def test_only_the_second_half_counts_for_the_slope() -> None:
    # Start-up grows 100 MiB, then RSS stays at a sawtooth around 300 MiB: flat.
    rss = [100, 200, 300, 304, 296, 304, 296, 304, 296, 304, 296]
    summary = summarize(run(rss), duration_s=300, bounds=BOUNDS)
    assert summary.rss_slope_mib_per_min is not None
    assert abs(summary.rss_slope_mib_per_min) < RSS_FLAT_MIB_PER_MIN
    assert summary.rss_flat


def test_a_leak_is_not_flat() -> None:
    leaking = [200 + 3 * i for i in range(21)]  # 3 MiB every 30 s = 6 MiB/min
    summary = summarize(run(leaking), duration_s=600, bounds=BOUNDS)
    assert summary.rss_slope_mib_per_min == pytest.approx(6.0)
    assert not summary.rss_flat
    assert "RSS flat: NO" in "\n".join(summary_lines(summary))


def test_lag_is_bounded_by_seconds_of_offered_traffic_and_the_lake_by_its_flush_age_too() -> None:
    bounds = lag_bounds(1000, lake_flush_age_s=60)
    assert bounds == {
        "router": 1000 * LAG_BOUND_S,
        "lake": 1000 * LAKE_ROWS_PER_EVENT * (LAG_BOUND_S + 60),  # rows: an event's and its projection
        "realtime": 1000 * LAG_BOUND_S,
    }
    bound = bounds["router"]
    keeps_up = summarize(run([300] * 11, lag=bound), duration_s=300, bounds=bounds)
    assert keeps_up.lag_bounded
    assert keeps_up.max_lag == {"router": bound, "lake": bound // 2, "realtime": 0}
    buffering = run([300] * 11, lag=0)
    buffering[-1] = Sample(300, 300 * MIB, {"router": 0, "lake": bounds["lake"], "realtime": 0})
    assert summarize(buffering, duration_s=300, bounds=bounds).lag_bounded
    falls_behind = run([300] * 11, lag=100)
    falls_behind[-1] = Sample(300, 300 * MIB, {"router": 0, "lake": bounds["lake"] + 1, "realtime": 0})
    assert not summarize(falls_behind, duration_s=300, bounds=bounds).lag_bounded
    router_behind = run([300] * 11, lag=0)
    router_behind[-2] = Sample(270, 300 * MIB, {"router": bound + 1, "lake": 0, "realtime": 0})
    assert not summarize(router_behind, duration_s=300, bounds=bounds).lag_bounded


def test_a_backlog_in_the_first_half_does_not_fail_the_lag_verdict() -> None:
    samples = run([300] * 11, lag=0)
    samples[1] = Sample(30, 300 * MIB, {"router": 10**9, "lake": None, "realtime": None})
    summary = summarize(samples, duration_s=300, bounds=BOUNDS)
    assert summary.lag_bounded
    assert summary.max_lag["router"] == 10**9  # still reported


def test_without_lags_or_samples_nothing_is_claimed() -> None:
    empty = [Sample(t, 300 * MIB, {"router": None, "lake": None, "realtime": None}) for t in (200, 250, 300)]
    summary = summarize(empty, duration_s=300, bounds=BOUNDS)
    assert not summary.lag_bounded
    assert summary.rss_flat  # RSS was read; lag was not
    assert not summarize([], duration_s=300, bounds=BOUNDS).rss_flat
    assert "n/a" in summary_lines(summarize([], duration_s=300, bounds=BOUNDS))[0]


def test_rows_align_under_the_header() -> None:
    sample = Sample(754.2, int(512.25 * MIB), {"router": 12_345, "lake": None, "realtime": 0})
    row = format_row(sample, 7012.4)
    assert row.split() == ["12:34", "7,012", "512.2", "12,345", "-", "0"]
    assert len(row) == len(HEADER)
    for column in ("elapsed", "offered/s", "RSS MiB", "router lag", "lake lag", "rt lag"):
        assert column in HEADER


def test_every_sample_as_csv() -> None:
    samples = [Sample(5.0, 300 * MIB, {"router": 1, "lake": None, "realtime": 0}), *run([310.5], lag=4)]
    assert samples_text(samples).splitlines() == [
        "elapsed_s,rss_mib,router,lake,realtime",
        "5.0,300.0,1,,0",
        "0.0,310.5,4,2,0",
    ]
