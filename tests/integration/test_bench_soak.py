"""`highway bench soak` end to end, short: each stage's maximum measured on a small backlog, ~45 s of
traffic at a tiny share of it through a real all-roles worker (broker and moto), rows while it runs and
the summary.

Only the output's shape is checked: a 45-second soak says nothing about leaks (the verdicts are unit
tests in tests/unit/test_bench_soak.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.soak import run_soak
from bench.soak_report import HEADER
from tests.conftest import MakeSettings
from tests.support import long_mode_only

pytestmark = [
    pytest.mark.integration,
    # A soak mode: 80-180 s of CI for a run that proves the command prints, not a figure; the
    # verdict logic is unit-tested (tests/unit/test_bench_soak.py).
    long_mode_only("a 10-minute soak"),
]

ROW = re.compile(r"^\s*\d+:\d\d\s+[\d,]+\s+\d+\.\d\s+([\d,]+|-)\s+([\d,]+|-)\s+([\d,]+|-)$")


def test_a_short_soak_prints_rows_and_the_summary(make_settings: MakeSettings, tmp_path: Path) -> None:
    lines: list[str] = []
    summary = run_soak(
        # A short flush age: the calibration waits until the lake has committed the backlog.
        make_settings(lake_flush_age_s=10),
        45,
        tmp_path,
        rate_fraction=0.01,
        calibrate_events=20_000,
        calibrate_types=20,
        every_s=10,
        emit=lines.append,
    )
    output = "\n".join(lines)
    assert re.search(r"pipeline max: [\d,]+ events/s \(20,000 events\), bounded by the \w+", output), output
    for stage in ("router", "realtime", "lake"):  # every stage's figure
        assert re.search(rf"^  {stage} +[\d,]+ events/s: caught up in [\d.]+ s", output, re.M), output
    assert HEADER in lines
    rows = [line for line in lines if ROW.match(line)]
    assert len(rows) >= 3, output
    # Each stage reported its lag on /metrics by the end: the last row has no "-".
    assert all(value != "-" for value in ROW.match(rows[-1]).groups()), output  # type: ignore[union-attr]
    assert any(line.startswith("RSS slope (second half, least squares): ") for line in lines), output
    assert any(line.startswith("max lag (whole run): router ") for line in lines), output
    assert any(line.startswith("RSS flat: ") for line in lines)
    assert any(line.startswith("lag bounded: ") for line in lines)
    assert summary.rss_slope_mib_per_min is not None
