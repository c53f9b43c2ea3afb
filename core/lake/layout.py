"""Where lake objects live and what they are called — pure functions of the data.

Layout under the lake root::

    <lane>/<table>/dt=YYYY-MM-DD/hour=HH/part-<partition>-<first offset>-e<epoch>.parquet   data files
    <lane>/<table>/_schema.json                                                  table schema
    <lane>/_manifests/<topic>/<partition>.json                                   offset manifests

``<table>`` is the topic-safe event name (the ``{name}`` part of the per-event topic), so a table
path is known from the topic alone; the lane's common topic (every event's common attributes) is the
table :data:`COMMON_TABLE`, a name outside the router's grammar so that no event table can take it.

A data file's key depends only on (topic, partition, first offset of the file's records,
partition value) and the writer's *epoch* (its claim on the partition, see
``core.lake.manifest``): a retry by the same writer rewrites the same key, and two writers never
write the same key — a stale writer cannot overwrite the owner's file. Keys without ``-e<epoch>``
are from before fencing and count as epoch 0.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from core.routing.naming import is_topic_safe_name
from core.settings import Settings

SCHEMA_FILE = "_schema.json"
# Canonical event names never hold "--" and mapped ones end in "--" and 16 hex digits
# (core.routing.naming), so no event table can ever be called this; no leading "_" either, which
# readers of the parquet layout skip (the lane's _manifests).
COMMON_TABLE = "events--common"
# The sessions stage's table (core.sessions): outside the grammar for the same reason.
SESSIONS_TABLE = "events--sessions"
MANIFEST_DIR = "_manifests"
_HOUR_MS = 3_600_000
_FILE_RE = re.compile(r"part-(?P<partition>\d{5})-(?P<offset>\d{20})(?:-e(?P<epoch>\d+))?\.parquet$")


@dataclass(frozen=True, order=True)
class PartitionValue:
    """A Hive partition of a table: the UTC day and hour of the event."""

    dt: str
    hour: str

    @property
    def path(self) -> str:
        return f"dt={self.dt}/hour={self.hour}"


def partition_for_ms(epoch_ms: int) -> PartitionValue:
    """The partition of an epoch-milliseconds timestamp, in UTC."""
    return _partition_for_hour(epoch_ms // _HOUR_MS)


@lru_cache(maxsize=4096)
def _partition_for_hour(hour: int) -> PartitionValue:
    moment = datetime.fromtimestamp(hour * 3600, tz=UTC)
    return PartitionValue(moment.strftime("%Y-%m-%d"), moment.strftime("%H"))


def table_name(topic: str, topic_template: str, lane: str) -> str | None:
    """The ``{name}`` part of a per-event topic of ``lane``, or None when ``topic`` is not one.

    The lake table is that name, unchanged — a pure, injective function of the topic — and only a
    name of the router's grammar (``core.routing.naming``) is one: a topic someone else created
    (``default.event...``, ``default.event.A.B``) is no table, never a path."""
    before, after = topic_template.split("{name}", 1)
    prefix, suffix = before.format(lane=lane), after.format(lane=lane)
    if not topic.startswith(prefix) or not topic.endswith(suffix) or len(topic) <= len(prefix) + len(suffix):
        return None
    name = topic[len(prefix) : len(topic) - len(suffix)] if suffix else topic[len(prefix) :]
    return name if is_topic_safe_name(name) else None


def lane_table(
    topic: str, topic_template: str, lanes: Iterable[str], common_template: str | None = None
) -> tuple[str, str] | None:
    """(lane, table) of a per-event topic of one of ``lanes`` — or, with ``common_template``, of a
    lane's common topic, whose table is :data:`COMMON_TABLE`; None for any other topic."""
    for lane in lanes:
        if common_template is not None and topic == common_template.format(lane=lane):
            return lane, COMMON_TABLE
        name = table_name(topic, topic_template, lane)
        if name is not None:
            return lane, name
    return None


def topic_table(settings: Settings, topic: str) -> tuple[str, str] | None:
    """(lane, table) the lake writes ``topic`` to: a per-event or common topic of a configured lane."""
    return lane_table(topic, settings.topic_per_event, settings.lanes, settings.topic_common)


def is_event_table(table: str) -> bool:
    """Whether a lane's table holds one event type (every one but :data:`COMMON_TABLE`, whose rows
    are the same events again, and :data:`SESSIONS_TABLE`, derived from them): what readers of
    "every event of the lane" sum over."""
    return table not in (COMMON_TABLE, SESSIONS_TABLE)


def table_prefix(lane: str, table: str) -> str:
    return f"{lane}/{table}"


def data_file_key(lane: str, table: str, partition: int, first_offset: int, value: PartitionValue) -> str:
    """Object key (relative to the lake root) of the file whose first record is ``first_offset``."""
    return f"{table_prefix(lane, table)}/{value.path}/part-{partition:05d}-{first_offset:020d}.parquet"


def epoch_key(key: str, epoch: int) -> str:
    """``key`` (a data file key without an epoch) as written by the writer of ``epoch``."""
    if re.search(r"-\d{20}\.parquet$", key) is None:
        raise ValueError(f"not a data file key without an epoch: {key!r}")
    return f"{key.removesuffix('.parquet')}-e{epoch:06d}.parquet"


def partition_file_prefix(lane: str, table: str, value_path: str, partition: int) -> str:
    """Key prefix of every data file of one Kafka partition under one Hive partition
    (``value_path`` is a :attr:`PartitionValue.path`)."""
    return f"{table_prefix(lane, table)}/{value_path}/part-{partition:05d}-"


def schema_key(lane: str, table: str) -> str:
    return f"{table_prefix(lane, table)}/{SCHEMA_FILE}"


def manifest_key(lane: str, topic: str, partition: int) -> str:
    return f"{lane}/{MANIFEST_DIR}/{topic}/{partition:05d}.json"


@dataclass(frozen=True)
class DataFileName:
    partition: int
    first_offset: int
    epoch: int = 0


def parse_data_file(key: str) -> DataFileName | None:
    """Partition and first offset encoded in a data file key, or None for any other object."""
    match = _FILE_RE.search(key)
    if match is None:
        return None
    return DataFileName(int(match["partition"]), int(match["offset"]), int(match["epoch"] or 0))


def partition_from_key(key: str) -> PartitionValue | None:
    match = re.search(r"dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/", key)
    return PartitionValue(match[1], match[2]) if match else None
