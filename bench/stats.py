"""Summaries of repeated measurements, shared by the benches.

This machine is noisy (2 cores shared with the broker and other work), so a bench figure is the
median of interleaved repetitions with its full range, never one run. Repetitions rotate the order
of the measurements so that no measurement always runs first (on a fresh broker) or last.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Spread:
    """Median and range of repeated values (NaN-free; ``count`` values went in)."""

    median: float
    low: float
    high: float
    count: int

    def as_dict(self, digits: int = 3) -> dict[str, float | int]:
        return {
            "median": round(self.median, digits),
            "min": round(self.low, digits),
            "max": round(self.high, digits),
            "n": self.count,
        }

    def format(self, spec: str = ",.0f", suffix: str = "") -> str:
        """``12,345 (11,002-13,870)``; a single value has no range."""
        median = f"{self.median:{spec}}{suffix}"
        if self.count == 1:
            return median
        return f"{median} ({self.low:{spec}}-{self.high:{spec}}{suffix})"


def spread(values: Sequence[float | None]) -> Spread | None:
    """Median and min-max of the finite values given; ``None`` when there are none."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    return Spread(statistics.median(finite), min(finite), max(finite), len(finite))


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 ≤ q ≤ 1) of ``values``; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def rotated(items: Sequence[T], repetition: int) -> list[T]:
    """``items`` starting at position ``repetition`` (mod len): repetition 0 keeps the order."""
    if not items:
        return []
    shift = repetition % len(items)
    return [*items[shift:], *items[:shift]]


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or ``None`` when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator
