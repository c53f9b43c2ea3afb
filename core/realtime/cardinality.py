"""Cap label cardinality: keep the top N values, fold the rest into ``other``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

OTHER = "other"


def top_n_with_other(counts: Mapping[str, int], n: int) -> dict[str, int]:
    """The ``n`` largest entries (ties broken by name) plus their remainder summed as ``other``."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    kept = dict(ranked[:n])
    rest = sum(value for _, value in ranked[n:])
    if rest or (len(ranked) > n):
        kept[OTHER] = kept.get(OTHER, 0) + rest
    return kept


class StableLabels:
    """Label values for a counter: the first ``n`` distinct values seen keep their name, the rest
    become ``other``. Stable for the life of the process, so counters stay monotonic per label."""

    def __init__(self, n: int) -> None:
        self._n = n
        self._kept: set[str] = set()

    def label(self, value: str) -> str:
        if value in self._kept:
            return value
        if len(self._kept) < self._n:
            self._kept.add(value)
            return value
        return OTHER


# Kafka's default message size limit (broker message.max.bytes, topic max.message.bytes) is
# 1 MiB + 12 bytes; the concurrency topic is created with the broker's default.
TOPIC_MESSAGE_BYTES = 1_048_588
_ENVELOPE_BYTES = 2_048  # lane, partition, window, checkpoint, key names: generous
_BYTES_PER_CHAR = 6  # orjson writes a control character as \u00XX; UTF-8 needs at most 4
_COUNT_BYTES = 24  # quotes, colon, comma and a 64-bit count


def max_partial_bytes(dimensions: Sequence[str], value_cap: int, max_chars: int) -> int:
    """The largest JSON a closed-window partial can be: three measures (users, sliding users, events),
    each with at most ``value_cap`` named values plus ``other`` per dimension, every value at most
    ``max_chars`` characters long."""
    per_value = max_chars * _BYTES_PER_CHAR + _COUNT_BYTES
    per_dimension = (value_cap + 1) * per_value + 64  # + the braces of the dimension
    names = sum(len(dim) * _BYTES_PER_CHAR for dim in dimensions)
    return _ENVELOPE_BYTES + 3 * (len(dimensions) * per_dimension + names)
