"""Query parameters of the realtime HTTP API, checked before anything is read (pure, no I/O).

Every bad value raises :class:`BadParameter` (a ``ValueError``) whose message names the parameter
and what it accepts, so the pages answer 400 with it instead of failing inside a handler.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

# Epoch milliseconds accepted for from/to: year 0001 to 9999 (what datetime can represent).
MIN_MS = int(datetime(1, 1, 1, tzinfo=UTC).timestamp() * 1000)
MAX_MS = int(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp() * 1000)
# A bare number below this is read as seconds, at or above as milliseconds (1e11 s is year 5138).
SECONDS_BELOW = 1e11


class BadParameter(ValueError):
    """A query parameter that the API cannot use."""


@dataclass(frozen=True)
class WindowQuery:
    lane: str
    window: str
    by: str | None
    from_ms: int
    to_ms: int


def time_ms(name: str, value: str | None, default: int) -> int:
    """Epoch ms from seconds, milliseconds or ISO 8601 (UTC when no offset is given)."""
    if value is None or not value.strip():
        return default
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        return _iso_ms(name, text)
    if not math.isfinite(number):
        raise BadParameter(f"{name}={value!r} is not a finite number")
    ms = number if abs(number) >= SECONDS_BELOW else number * 1000
    if not MIN_MS <= ms <= MAX_MS:
        raise BadParameter(f"{name}={value!r} is outside the years 1 to 9999")
    return int(ms)


def _iso_ms(name: str, text: str) -> int:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadParameter(
            f"{name}={text!r} is neither epoch seconds/milliseconds nor an ISO 8601 time"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def lane_param(params: Mapping[str, str], lanes: Collection[str], default: str) -> str:
    lane = params.get("lane") or default
    if lane not in lanes:
        raise BadParameter(f"unknown lane {lane!r}; lanes: {sorted(lanes)}")
    return lane


def window_query(
    params: Mapping[str, str],
    *,
    lanes: Collection[str],
    windows: Collection[str],
    dimensions: Collection[str],
    now_ms: int,
    history_ms: int,
) -> WindowQuery:
    """``lane``, ``window``, ``by``, ``from``, ``to`` of ``/api/v1/concurrency`` and ``/api/v1/counts``."""
    lane = lane_param(params, lanes, next(iter(lanes)))
    window = params.get("window") or next(iter(windows))
    if window not in windows:
        raise BadParameter(f"unknown window {window!r}; windows: {sorted(windows)}")
    by = params.get("by") or None
    if by is not None and by not in dimensions:
        raise BadParameter(f"unknown dimension by={by!r}; dimensions: {sorted(dimensions)}")
    to_ms = time_ms("to", params.get("to"), now_ms + 1)
    from_ms = time_ms("from", params.get("from"), to_ms - history_ms)
    if from_ms > to_ms:
        raise BadParameter(f"from ({from_ms} ms) is after to ({to_ms} ms)")
    return WindowQuery(lane, window, by, from_ms, to_ms)
