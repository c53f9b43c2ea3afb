"""`highway verify` check ``concurrency``: closed windows in the concurrency topic against the truth.

Reads every partial of the lane's compacted concurrency topic (no worker needed), sums them per
window (:func:`core.realtime.partials.merge`) and compares each window that is closed on every
partition with the truth's distinct users per window, overall and by platform. Windows not closed
yet are reported, not failed; a window missing from the topic while later windows are closed is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.realtime.partials import merge
from highway.verify.framework import CheckResult, VerifyContext, register_check


@dataclass(frozen=True)
class WindowComparison:
    checked: int
    open: int
    mismatches: tuple[str, ...]


def compare_windows(
    rows: list[dict[str, Any]],
    truth_users: Mapping[int, int],
    truth_by_platform: Mapping[str, Mapping[int, int]],
) -> WindowComparison:
    """Compare merged closed windows with the truth (pure)."""
    by_start = {row["window_start"]: row for row in rows}
    closed_until = max((row["window_start"] for row in rows if row["complete"]), default=None)
    checked = open_windows = 0
    mismatches: list[str] = []
    for start, expected in sorted(truth_users.items()):
        row = by_start.get(start)
        if row is None or not row["complete"]:
            if closed_until is not None and start < closed_until and row is None:
                mismatches.append(f"window {start}: missing (later windows are closed)")
            else:
                open_windows += 1
            continue
        checked += 1
        counts = row["counts"]
        if counts["all"] != expected:
            mismatches.append(f"window {start}: {counts['all']} users, truth {expected}")
        platforms = counts["by"].get("platform", {})
        for platform, per_window in truth_by_platform.items():
            want = per_window.get(start, 0)
            if platforms.get(platform, 0) != want:
                mismatches.append(f"window {start} {platform}: {platforms.get(platform, 0)}, truth {want}")
    return WindowComparison(checked, open_windows, tuple(mismatches))


@register_check
class ConcurrencyCheck:
    """Every closed window's distinct users, overall and by platform, equal the truth exactly."""

    name = "concurrency"

    def run(self, context: VerifyContext) -> list[CheckResult]:
        from connectors.kafka_admin import KafkaAdmin
        from connectors.metrics_topic import ConcurrencyView

        settings, truth = context.settings, context.truth
        topic = settings.concurrency_topic(context.lane)
        if truth.window_s != settings.realtime_window_s:
            return [
                CheckResult.not_present(
                    self.name, f"truth windows {truth.window_s}s ≠ {settings.realtime_window_s}s"
                )
            ]
        if topic not in KafkaAdmin(settings).list_topics():
            return [CheckResult.not_present(self.name, f"no topic {topic} yet (no realtime worker ran)")]
        view = ConcurrencyView(settings, keep_ms=10**15)
        view.start()
        try:
            view.wait_caught_up()
            records = view.records(context.lane)
        finally:
            view.stop()
        result = compare_windows(
            merge(records, "users", 0, 2**62),
            truth.distinct_users,
            truth.distinct_users_by.get("platform", {}),
        )
        detail = f"{result.checked} closed windows compared, {result.open} not closed yet"
        if result.mismatches:
            detail += "; " + "; ".join(result.mismatches[:3])
        return [
            CheckResult(
                self.name,
                passed=not result.mismatches and result.checked > 0,
                expected=len(truth.distinct_users),
                actual=result.checked,
                missing=len(result.mismatches),
                detail=detail,
            )
        ]
