"""`highway demo` end to end on the session's real broker and S3 API, with small numbers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.envvars import child_environment
from tests.conftest import MakeSettings

EVENTS = 3000


def summary_count(stdout: str, label: str, pattern: str) -> int:
    match = re.search(rf"^  {label}\s+{pattern}", stdout, re.M)
    assert match, f"no {label!r} line matching {pattern!r} in:\n{stdout}"
    return int(match.group(1).replace(",", ""))


@pytest.mark.integration
def test_demo_runs_the_pipeline_and_reports_what_it_produced(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    # Every setting reaches the demo explicitly here, so it keeps them: choose the short windows
    # (10 s, 5 s lateness) it would otherwise pick itself.
    settings = make_settings(
        state_dir=tmp_path / "state",
        realtime_window_s=10,
        realtime_sliding_window_s=60,
        realtime_allowed_lateness_s=5,
    )
    lane = settings.lanes[0]
    command = [
        sys.executable,
        "-m",
        "highway.cli",
        "demo",
        "--events",
        str(EVENTS),
        # 20 s of event time: 10 s windows with 5 s lateness close while it runs, so the
        # concurrency check has closed windows to compare.
        "--duration",
        "20",
        "--event-types",
        "20",
        "--lane",
        lane,
        "--settle-timeout",
        "120",
    ]
    result = subprocess.run(
        command, env=child_environment(settings, os.environ), capture_output=True, text=True, timeout=420
    )
    report = f"stdout:\n{result.stdout}\nstderr (tail):\n{result.stderr[-4000:]}"
    assert result.returncode == 0, report
    assert (
        summary_count(result.stdout, "produced", rf"([\d,]+) events into {re.escape(lane)}\.events\.all")
        == EVENTS
    )
    routed = summary_count(result.stdout, "routed", r"([\d,]+) events into")
    dead = summary_count(
        result.stdout, "routed", r"[\d,]+ events into [\d,]+ per-event topics \(.*?\), ([\d,]+) into"
    )
    assert routed + dead == EVENTS, report
    assert summary_count(result.stdout, "lake", r"([\d,]+) rows") == routed, report
    assert "verify        PASS" in result.stdout, report
    concurrency = summary_count(result.stdout, "concurrency", r"([\d,]+) users")
    assert 0 < concurrency <= EVENTS, report
    # The worker was stopped: its HTTP port is free again and no child is left behind.
    assert "worker        stopped" in result.stdout
