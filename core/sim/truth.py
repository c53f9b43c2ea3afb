"""Ground truth of a simulated run: what a correct pipeline must end up with (pure; file I/O only in
``write``/``load``).

Recorded per run:

* ``counts`` and ``event_ids`` per event type (ids sorted);
* distinct users per tumbling window of ``window_s`` seconds by ``server_ts`` (UTC), overall and by
  ``platform``, ``app_version`` and ``event_name``;
* the property schema of every event type, the lane, the first/last ``server_ts`` and the options that
  produced the run.

The file is JSON (``.json``) or gzip-compressed JSON (``.json.gz``), keys sorted and the gzip header
time zeroed, so the same seed and options always give a byte-identical file. Window keys are the
window start as ISO-8601 UTC text (``2026-01-01T00:01:00Z``); :class:`Truth` holds them as epoch ms.
"""

from __future__ import annotations

import gzip
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from core.sim.names import property_specs

TRUTH_VERSION = 1
DIMENSIONS: tuple[str, ...] = ("platform", "app_version", "event_name")


def window_key(start_ms: int) -> str:
    return datetime.fromtimestamp(start_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_window_key(key: str) -> int:
    return int(datetime.strptime(key, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp() * 1000)


@dataclass(frozen=True)
class Truth:
    """A loaded ground-truth file. Window maps are keyed by window start (epoch ms, UTC)."""

    lane: str
    window_s: int
    events: int
    counts: dict[str, int]
    event_ids: dict[str, list[str]]
    distinct_users: dict[int, int]
    distinct_users_by: dict[str, dict[str, dict[int, int]]]
    property_types: dict[str, dict[str, str]]
    first_server_ts: int | None
    last_server_ts: int | None
    options: dict[str, Any] = field(default_factory=dict)

    def all_event_ids(self) -> set[str]:
        return {event_id for ids in self.event_ids.values() for event_id in ids}


class TruthBuilder:
    """Accumulates the truth batch by batch, in the order events are produced."""

    def __init__(self, lane: str, window_s: int = 60, options: dict[str, Any] | None = None) -> None:
        self.lane = lane
        self.window_s = window_s
        self.options = dict(options or {})
        self._window_ms = window_s * 1000
        self._ids: defaultdict[str, list[str]] = defaultdict(list)
        self._users: defaultdict[int, set[str]] = defaultdict(set)
        self._users_by: dict[str, defaultdict[tuple[str, int], set[str]]] = {
            dimension: defaultdict(set) for dimension in DIMENSIONS
        }
        self._first: int | None = None
        self._last: int | None = None
        self.events = 0

    def add(self, events: Iterable[dict[str, Any]]) -> None:
        window_ms, ids, users = self._window_ms, self._ids, self._users
        by_platform = self._users_by["platform"]
        by_version = self._users_by["app_version"]
        by_name = self._users_by["event_name"]
        first, last, count = self._first, self._last, 0
        for event in events:
            name, user, server_ts = event["event_name"], event["user_id"], event["server_ts"]
            ids[name].append(event["event_id"])
            window = server_ts - server_ts % window_ms
            users[window].add(user)
            by_platform[event["platform"], window].add(user)
            by_version[event["app_version"], window].add(user)
            by_name[name, window].add(user)
            if first is None or server_ts < first:
                first = server_ts
            if last is None or server_ts > last:
                last = server_ts
            count += 1
        self._first, self._last = first, last
        self.events += count

    def to_dict(self) -> dict[str, Any]:
        by: dict[str, dict[str, dict[str, int]]] = {}
        for dimension, sets in self._users_by.items():
            per_value: dict[str, dict[str, int]] = defaultdict(dict)
            for (value, window), members in sets.items():
                per_value[value][window_key(window)] = len(members)
            by[dimension] = dict(per_value)
        return {
            "version": TRUTH_VERSION,
            "lane": self.lane,
            "window_s": self.window_s,
            "events": self.events,
            "options": self.options,
            "first_server_ts": self._first,
            "last_server_ts": self._last,
            "counts": {name: len(ids) for name, ids in self._ids.items()},
            "event_ids": {name: sorted(ids) for name, ids in self._ids.items()},
            "distinct_users": {window_key(window): len(members) for window, members in self._users.items()},
            "distinct_users_by": by,
            "property_types": {
                name: {spec.name: spec.kind for spec in property_specs(name)} for name in self._ids
            },
        }

    def to_bytes(self, compress: bool = False) -> bytes:
        body = orjson.dumps(self.to_dict(), option=orjson.OPT_SORT_KEYS)
        return gzip.compress(body, compresslevel=6, mtime=0) if compress else body

    def write(self, path: Path) -> None:
        """Write atomically (temp file + rename); gzip when the name ends in ``.gz``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(self.to_bytes(compress=path.name.endswith(".gz")))
        tmp.replace(path)

    def build(self) -> Truth:
        return truth_from_dict(orjson.loads(self.to_bytes()))


def truth_from_dict(data: dict[str, Any]) -> Truth:
    if data.get("version") != TRUTH_VERSION:
        raise ValueError(f"unsupported truth file version {data.get('version')!r}")
    return Truth(
        lane=data["lane"],
        window_s=data["window_s"],
        events=data["events"],
        counts=data["counts"],
        event_ids=data["event_ids"],
        distinct_users={parse_window_key(key): n for key, n in data["distinct_users"].items()},
        distinct_users_by={
            dimension: {
                value: {parse_window_key(key): n for key, n in windows.items()}
                for value, windows in per_value.items()
            }
            for dimension, per_value in data["distinct_users_by"].items()
        },
        property_types=data["property_types"],
        first_server_ts=data["first_server_ts"],
        last_server_ts=data["last_server_ts"],
        options=data["options"],
    )


def load_truth(path: Path) -> Truth:
    """Read a truth file written by :meth:`TruthBuilder.write` (plain or gzip JSON)."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return truth_from_dict(orjson.loads(raw))
