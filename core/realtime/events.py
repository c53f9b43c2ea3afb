"""Common-topic messages → :class:`~core.realtime.windows.ParsedEvent` (pure; bad messages are counted).

Dimension values are capped in length at ingest (``max_chars``): a longer value is cut to its first
``max_chars`` characters, so a hostile client cannot make a window's partial arbitrarily large
with long values (the number of values is capped per window in :mod:`core.realtime.windows`).
Cut values of one dimension that share their prefix become one value; each cut is counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import orjson

from core.realtime.ids import user_key
from core.realtime.windows import ParsedEvent


def _value(doc: dict[str, object], dim: str, max_chars: int | None, truncated: Counter[str] | None) -> str:
    value = str(doc.get(dim) or "unknown")
    if max_chars is not None and len(value) > max_chars:
        value = value[:max_chars]
        if truncated is not None:
            truncated[dim] += 1
    return value


def parse(
    messages: Iterable[tuple[int, bytes | None]],
    dimensions: Sequence[str],
    max_chars: int | None = None,
    truncated: Counter[str] | None = None,
) -> tuple[list[ParsedEvent], int]:
    """(offset, JSON value) → events; returns the events and how many could not be parsed.

    With ``max_chars``, dimension values (and the platform) longer than that are cut, and each cut
    is counted per dimension in ``truncated``.
    """
    parsed: list[ParsedEvent] = []
    bad = 0
    for offset, value in messages:
        try:
            doc = orjson.loads(value or b"")
            user = str(doc["user_id"])
            platform = _value(doc, "platform", max_chars, None)
            values = tuple(_value(doc, dim, max_chars, truncated) for dim in dimensions)
            parsed.append(ParsedEvent(offset, int(doc["server_ts"]), user_key(user), platform, values))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, OverflowError, AttributeError):
            bad += 1
    return parsed, bad
