"""Query parameters of the realtime API: every bad value is a clear BadParameter (HTTP 400)."""

from __future__ import annotations

from typing import Any

import pytest

from core.realtime.params import BadParameter, lane_param, time_ms, window_query

NOW = 1_700_000_000_000


def query(**params: str) -> Any:
    return window_query(
        params,
        lanes=["default", "b"],
        windows={"1m": "users", "5m": "users_sliding"},
        dimensions=["platform", "event_name"],
        now_ms=NOW,
        history_ms=3_600_000,
    )


def test_defaults_are_first_lane_first_window_last_history() -> None:
    q = query()
    assert (q.lane, q.window, q.by, q.from_ms, q.to_ms) == (
        "default",
        "1m",
        None,
        NOW + 1 - 3_600_000,
        NOW + 1,
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1700000000", 1_700_000_000_000),  # seconds
        ("1700000000.5", 1_700_000_000_500),
        ("1700000000000", 1_700_000_000_000),  # milliseconds (Grafana)
        ("2023-11-14T22:13:20Z", 1_700_000_000_000),
        ("2023-11-14T22:13:20", 1_700_000_000_000),  # no offset: UTC
        ("2023-11-14T23:13:20+01:00", 1_700_000_000_000),
    ],
)
def test_times_in_seconds_milliseconds_or_iso(value: str, expected: int) -> None:
    assert time_ms("from", value, 0) == expected


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from": "1e400"}, "from='1e400' is not a finite number"),
        ({"to": "inf"}, "to='inf' is not a finite number"),
        ({"from": "nan"}, "not a finite number"),
        ({"from": "1e300"}, "outside the years 1 to 9999"),
        ({"to": "-1e300"}, "outside the years 1 to 9999"),
        ({"from": "yesterday"}, "neither epoch seconds/milliseconds nor an ISO 8601 time"),
        ({"lane": "nope"}, "unknown lane 'nope'"),
        ({"window": "2m"}, "unknown window '2m'"),
        ({"by": "country"}, "unknown dimension by='country'"),
        ({"from": "1700000001", "to": "1700000000"}, "is after to"),
    ],
)
def test_bad_parameters_name_the_parameter(params: dict[str, str], message: str) -> None:
    with pytest.raises(BadParameter) as info:
        query(**params)
    assert message in str(info.value)


def test_explicit_window_lane_and_by() -> None:
    q = query(lane="b", window="5m", by="platform", **{"from": "1700000000", "to": "1700000060"})
    assert (q.lane, q.window, q.by, q.from_ms, q.to_ms) == (
        "b",
        "5m",
        "platform",
        1_700_000_000_000,
        1_700_000_060_000,
    )


def test_lane_param_alone() -> None:
    assert lane_param({}, ["x", "y"], "x") == "x"
    with pytest.raises(BadParameter, match="unknown lane"):
        lane_param({"lane": "z"}, ["x", "y"], "x")
