"""Common-topic messages → :class:`~core.realtime.windows.ParsedEvent` (pure; bad messages are counted)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import orjson

from core.realtime.ids import user_key
from core.realtime.windows import ParsedEvent


def parse(
    messages: Iterable[tuple[int, bytes | None]], dimensions: Sequence[str]
) -> tuple[list[ParsedEvent], int]:
    """(offset, JSON value) → events; returns the events and how many could not be parsed."""
    parsed: list[ParsedEvent] = []
    bad = 0
    for offset, value in messages:
        try:
            doc = orjson.loads(value or b"")
            user = str(doc["user_id"])
            platform = str(doc.get("platform") or "unknown")
            values = tuple(str(doc.get(dim) or "unknown") for dim in dimensions)
            parsed.append(ParsedEvent(offset, int(doc["server_ts"]), user_key(user), platform, values))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, OverflowError):
            bad += 1
    return parsed, bad
