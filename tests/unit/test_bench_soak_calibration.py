"""The soak's calibration: when each stage had caught up with the backlog, the lake's designed wait for
its flush age left out, and which stage bounds the pipeline's maximum."""

from __future__ import annotations

import pytest

from bench.soak_calibration import Calibration, CalibrationSample, calibration_lines, caught_up

EVENTS = 100_000
ROWS = 2 * EVENTS  # the lake's lag counts an event's row and its common-table projection
AGE_S = 60.0
LAG_EVERY_S = 5.0


def at(
    elapsed_s: float,
    committed: int = EVENTS,
    realtime: int | None = 0,
    lake: int | None = ROWS,
    buffered: int | None = 0,
    flush_s: float | None = 0.0,
) -> CalibrationSample:
    return CalibrationSample(elapsed_s, committed, realtime, lake, buffered, flush_s)


def calibrate(samples: list[CalibrationSample]) -> Calibration | None:
    return caught_up(samples, EVENTS, AGE_S, LAG_EVERY_S)


def test_nothing_until_every_stage_has_caught_up() -> None:
    routing = [at(t, committed=EVENTS * t // 20, realtime=500, lake=None, buffered=None) for t in range(20)]
    assert calibrate(routing) is None
    routed = [*routing, at(20, realtime=0, lake=ROWS // 2, buffered=ROWS // 2)]
    assert calibrate(routed) is None  # the lake still holds rows
    assert calibrate([*routing, at(20, realtime=None, lake=0)]) is None  # realtime not on /metrics yet
    assert calibrate([*routed, at(21, realtime=0, lake=0, flush_s=3.0)]) is not None


def test_a_stage_that_was_idle_before_the_router_finished_is_not_caught_up_early() -> None:
    # realtime and the lake at 0 while the router is half way: they are waiting for input, not done.
    samples = [at(5, committed=EVENTS // 2, realtime=0, lake=0), at(10, realtime=400, lake=ROWS)]
    samples += [at(12, realtime=0, lake=0, flush_s=4.0)]
    calibration = calibrate(samples)
    assert calibration is not None
    assert calibration.seconds == {"router": 10, "realtime": 12, "lake": 12}


def test_the_lakes_wait_for_its_flush_age_is_left_out_but_its_flushing_is_not() -> None:
    # Routed in 20 s; the lake has read everything by 30 s (its lag is all buffered rows), waits for the
    # flush age, flushes from 80 s for 10 s: 40 s of work, 50 s of designed wait.
    samples = [at(0, committed=0, lake=None, buffered=None), at(20, lake=ROWS, buffered=ROWS // 2)]
    samples += [at(t, lake=ROWS, buffered=ROWS) for t in (30, 50, 80, 85)]
    samples += [at(90, lake=0, buffered=0, flush_s=10.0)]
    calibration = calibrate(samples)
    assert calibration is not None
    assert calibration.lake_done_s == 90
    assert calibration.lake_wait_s == pytest.approx(50)
    assert calibration.seconds == {"router": 20, "realtime": 20, "lake": pytest.approx(40)}
    assert calibration.bounding == "lake"
    assert calibration.maximum == pytest.approx(EVENTS / 40)
    assert calibration.rates["router"] == pytest.approx(EVENTS / 20)


def test_a_lake_that_flushes_while_it_reads_waits_for_nothing() -> None:
    # Flushes (by size) all along, 30 s of them; every sample still has unread records until the last.
    samples = [at(10, lake=ROWS), at(40, lake=ROWS // 2, buffered=ROWS // 4, flush_s=20.0)]
    samples += [at(70, lake=0, buffered=0, flush_s=30.0)]
    calibration = calibrate(samples)
    assert calibration is not None
    assert calibration.lake_wait_s == 0
    assert calibration.seconds["lake"] == 70
    assert calibration.bounding == "lake"


def test_the_router_bounds_when_the_others_finish_with_it() -> None:
    calibration = calibrate([at(10, committed=EVENTS // 2, realtime=9), at(20, lake=0, flush_s=2.0)])
    assert calibration is not None
    assert calibration.bounding == "router"
    assert calibration.maximum == pytest.approx(EVENTS / 20)


def test_a_stale_lag_just_after_routing_does_not_count_as_everything_read() -> None:
    # At 21 s the lake's lag gauge is still the one from before the router's last batch (refreshed every
    # LAG_EVERY_S): it is not taken as "everything read"; the lake really read everything at 30 s.
    samples = [at(20, lake=ROWS, buffered=ROWS // 2), at(21, lake=ROWS // 2, buffered=ROWS // 2)]
    samples += [at(30, lake=ROWS, buffered=ROWS), at(95, lake=0, flush_s=5.0)]
    calibration = calibrate(samples)
    assert calibration is not None
    assert calibration.lake_wait_s == pytest.approx(60)  # 95 - 30 - 5, at most the flush age
    assert calibration.seconds["lake"] == pytest.approx(35)


def test_the_wait_is_never_more_than_the_flush_age() -> None:
    # Everything read at 30 s, lake done at 200 s with only 10 s of flushes counted: at most 60 s is
    # the designed wait, the rest counts against the lake.
    samples = [at(20, lake=ROWS, buffered=ROWS), at(30, lake=ROWS, buffered=ROWS)]
    samples += [at(200, lake=0, flush_s=10.0)]
    calibration = calibrate(samples)
    assert calibration is not None
    assert calibration.lake_wait_s == AGE_S
    assert calibration.seconds["lake"] == pytest.approx(140)


def test_the_printed_figures_name_every_stage_and_the_bound() -> None:
    calibration = Calibration(EVENTS, router_s=20, realtime_s=21, lake_done_s=90, lake_wait_s=50)
    lines = calibration_lines(calibration, AGE_S)
    assert [line.split()[:2] for line in lines[:3]] == [
        ["router", "5,000"],
        ["realtime", "4,762"],
        ["lake", "2,500"],
    ]
    assert "caught up in 40.0 s" in lines[2]
    assert "50.0 s waiting" in lines[2]
    assert lines[-1] == "pipeline max: 2,500 events/s (100,000 events), bounded by the lake"
