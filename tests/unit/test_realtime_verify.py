"""The concurrency verify check's comparison: exact windows pass, any difference is reported."""

from __future__ import annotations

from typing import Any

from highway.verify.concurrency import compare_windows


def row(start: int, users: int, platforms: dict[str, int], complete: bool = True) -> dict[str, Any]:
    return {
        "window_start": start,
        "complete": complete,
        "counts": {"all": users, "by": {"platform": platforms}},
    }


TRUTH = {0: 3, 60_000: 2, 120_000: 1}
BY_PLATFORM = {"ios": {0: 2, 60_000: 1}, "web": {0: 1, 60_000: 1, 120_000: 1}}


def test_exact_windows_pass_and_open_ones_are_counted() -> None:
    rows = [row(0, 3, {"ios": 2, "web": 1}), row(60_000, 2, {"ios": 1, "web": 1}), row(120_000, 1, {}, False)]
    result = compare_windows(rows, TRUTH, BY_PLATFORM)
    assert (result.checked, result.open, result.mismatches) == (2, 1, ())


def test_differences_and_missing_windows_are_reported() -> None:
    rows = [row(0, 3, {"ios": 1, "web": 1}), row(120_000, 1, {"web": 1})]
    result = compare_windows(rows, TRUTH, BY_PLATFORM)
    assert result.checked == 2
    assert any("ios" in m for m in result.mismatches)
    assert any("60000: missing" in m for m in result.mismatches)
