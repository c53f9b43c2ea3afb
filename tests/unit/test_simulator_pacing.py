"""Pacing of simulated traffic: when each event is due on the wall clock."""

from __future__ import annotations

import pytest

from connectors.simulator_feed import _due


def test_real_time_pacing_sends_an_event_as_far_into_the_run_as_its_simulated_time() -> None:
    assert _due(100.0, 2_500, 1.0) == pytest.approx(102.5)


def test_a_faster_replay_divides_the_wait_by_the_speed() -> None:
    assert _due(100.0, 60_000, 4.0) == pytest.approx(115.0)
    assert _due(100.0, 60_000, 0.5) == pytest.approx(220.0)


@pytest.mark.parametrize("speed", [0.0, -1.0])
def test_a_speed_that_never_advances_is_refused(speed: float) -> None:
    with pytest.raises(ValueError, match="speed must be > 0"):
        _due(0.0, 1_000, speed)
