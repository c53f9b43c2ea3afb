"""Analytics parameters — steps, windows, time ranges — parsed and checked before any SQL is built.

Every bad value raises :class:`BadParameter` naming the parameter, so the HTTP API answers 400 and the
CLI a usage error with the same message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from core.realtime.params import BadParameter, time_ms

__all__ = ["BadParameter", "FunnelSpec", "PathSpec", "TimeRange", "parse_duration_s"]

Order = Literal["strict", "relaxed"]
Direction = Literal["after", "before"]
DIMENSIONS = ("platform", "app_version", "lane")
"""Common attributes a funnel can be split by (low-cardinality ones; a user id would be no group)."""
MAX_STEPS = 20
MAX_DEPTH = 20
MAX_TOP = 1000
MAX_NAME_CHARS = 200
_DURATION = re.compile(r"(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h|d)?")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration_s(name: str, value: str) -> float:
    """``30m``, ``2h``, ``45s``, ``1d``, ``500ms`` or bare seconds; positive."""
    match = _DURATION.fullmatch(value.strip())
    if match is None:
        raise BadParameter(f"{name}={value!r} is not a duration (e.g. 30m, 2h, 45s, 1d)")
    seconds = float(match["number"]) * _UNIT_S[match["unit"]]
    if seconds <= 0:
        raise BadParameter(f"{name}={value!r} must be longer than zero")
    return seconds


def check_name(name: str, value: str) -> str:
    """An event name or id as given: non-empty, printable (it becomes an SQL string literal)."""
    if not value or len(value) > MAX_NAME_CHARS:
        raise BadParameter(f"{name} must be 1 to {MAX_NAME_CHARS} characters, got {len(value)}")
    if not value.isprintable():
        raise BadParameter(f"{name}={value[:40]!r} holds control characters")
    return value


def positive_int(name: str, value: str | int | None, default: int, highest: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise BadParameter(f"{name}={value!r} is not an integer") from None
    if not 1 <= number <= highest:
        raise BadParameter(f"{name}={number} must be between 1 and {highest}")
    return number


@dataclass(frozen=True)
class TimeRange:
    """Events with ``from_ms <= server_ts < to_ms``; either end open when None."""

    from_ms: int | None = None
    to_ms: int | None = None

    @classmethod
    def parse(cls, start: str | None, end: str | None) -> TimeRange:
        span = cls(
            time_ms("from", start, 0) if start else None,
            time_ms("to", end, 0) if end else None,
        )
        if span.from_ms is not None and span.to_ms is not None and span.from_ms >= span.to_ms:
            raise BadParameter(f"from={start!r} is not before to={end!r}")
        return span


@dataclass(frozen=True)
class FunnelSpec:
    steps: tuple[str, ...]
    within_s: float
    order: Order = "relaxed"
    by: str | None = None
    span: TimeRange = TimeRange()

    @property
    def within_ms(self) -> int:
        return round(self.within_s * 1000)

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> FunnelSpec:
        """From the query parameters of ``/api/v1/funnel`` (the CLI passes its options the same way)."""
        raw = params.get("steps") or ""
        steps = tuple(step.strip() for step in raw.split(",") if step.strip())
        if not 2 <= len(steps) <= MAX_STEPS:
            raise BadParameter(f"steps={raw!r} must name 2 to {MAX_STEPS} events, comma-separated")
        for step in steps:
            check_name("steps", step)
        within = params.get("within") or "1d"
        order = params.get("order") or "relaxed"
        if order not in ("strict", "relaxed"):
            raise BadParameter(f"order={order!r} must be strict or relaxed")
        by = params.get("by") or None
        if by is not None and by not in DIMENSIONS:
            raise BadParameter(f"by={by!r} is not one of {list(DIMENSIONS)}")
        span = TimeRange.parse(params.get("from"), params.get("to"))
        return cls(steps, parse_duration_s("within", within), order, by, span)  # type: ignore[arg-type]


@dataclass(frozen=True)
class PathSpec:
    event: str
    direction: Direction = "after"
    depth: int = 3
    top: int = 10
    span: TimeRange = TimeRange()

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> PathSpec:
        """From the query parameters of ``/api/v1/paths``."""
        event = check_name("event", params.get("event") or "")
        direction = params.get("direction") or "after"
        if direction not in ("after", "before"):
            raise BadParameter(f"direction={direction!r} must be after or before")
        depth = positive_int("depth", params.get("depth"), 3, MAX_DEPTH)
        top = positive_int("top", params.get("top"), 10, MAX_TOP)
        span = TimeRange.parse(params.get("from"), params.get("to"))
        return cls(event, direction, depth, top, span)  # type: ignore[arg-type]
