"""Cap label cardinality: keep the top N values, fold the rest into ``other``."""

from __future__ import annotations

from collections.abc import Mapping

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
