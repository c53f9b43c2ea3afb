"""Classify a batch of input records into routed, projection and dead-letter records (pure, no I/O).

For every input record exactly one of these holds afterwards:

* it is admitted (``core.routing.admit``: valid, normalised, ``server_ts`` within bounds) and its
  type passes the new-type gate → one *routed* record (value bytes unchanged unless the event was
  normalised or restamped, key ``user_id``, timestamp ``server_ts``, header ``event_name`` and, when
  restamped, ``original_server_ts``) to its per-event topic, and one *projection* record (JSON of
  the common attributes, same key, timestamp and headers but ``event_name``) to the lane's common
  topic;
* otherwise → one *dead-letter* record (original key and bytes; headers ``reason``, ``detail``,
  ``source_topic``, ``source_partition``, ``source_offset``).

Nothing raised by one record's bytes escapes :meth:`BatchClassifier.classify`: unexpected errors
become ``undecodable`` dead letters. Only ``TransientError`` (e.g. the schema registry is away)
propagates, because retrying the batch later can succeed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from core.errors import SchemaError, TransientError
from core.routing.admit import ORIGINAL_SERVER_TS, Admission, Decode, Reencode
from core.routing.gate import NewTypeGate
from core.routing.naming import event_topic_for
from core.settings import Settings

OVERSIZE = "oversize"
UNDECODABLE = "undecodable"
DETAIL_MAX_CHARS = 500
DLQ_MAX_VALUE_BYTES = 3 * 1024 * 1024
"""Larger originals are truncated in the DLQ (header ``truncated_from``) to stay under the broker's limit."""

Headers = list[tuple[str, bytes]]
_NO_HEADERS: Headers = []


@dataclass(slots=True)
class SourceRecord:
    """One input record as consumed (timestamp in epoch ms, None when the broker gave none)."""

    key: bytes | None
    value: bytes
    partition: int
    offset: int
    timestamp_ms: int | None


@dataclass(slots=True)
class OutRecord:
    """One record to produce. ``source`` is the input it derives from (for re-dead-lettering)."""

    topic: str
    key: bytes | None
    value: bytes
    timestamp_ms: int | None
    headers: Headers
    source: SourceRecord


@dataclass
class ClassifiedBatch:
    routed: list[OutRecord] = field(default_factory=list)
    projections: list[OutRecord] = field(default_factory=list)
    dead: list[OutRecord] = field(default_factory=list)
    new_topics: set[str] = field(default_factory=set)
    reasons: Counter[str] = field(default_factory=Counter)

    def records(self) -> list[OutRecord]:
        return self.routed + self.projections + self.dead


class BatchClassifier:
    """Classifies batches of one lane's all-events topic."""

    def __init__(
        self,
        settings: Settings,
        lane: str,
        gate: NewTypeGate,
        decode: Decode,
        *,
        reencode: Reencode | None = None,
        json_fast_path: bool | None = None,
    ) -> None:
        self.settings = settings
        self.lane = lane
        self.gate = gate
        self.decode = decode
        self.admission = Admission(settings, decode, reencode, json_fast_path)
        self.source_topic = settings.all_events_topic(lane)
        self.common_topic = settings.common_topic(lane)
        self.dlq_topic = settings.dlq_topic(lane)
        self.max_event_bytes = settings.router_max_event_bytes
        self._topic_cache: dict[str, tuple[str, Headers]] = {}

    def dead_letter(self, source: SourceRecord, reason: str, detail: str) -> OutRecord:
        value = source.value
        headers: Headers = [
            ("reason", reason.encode()),
            ("detail", detail[:DETAIL_MAX_CHARS].encode("utf-8", "backslashreplace")),
            ("source_topic", self.source_topic.encode()),
            ("source_partition", str(source.partition).encode()),
            ("source_offset", str(source.offset).encode()),
        ]
        if len(value) > DLQ_MAX_VALUE_BYTES:
            headers.append(("truncated_from", str(len(value)).encode()))
            value = value[:DLQ_MAX_VALUE_BYTES]
        return OutRecord(self.dlq_topic, source.key, value, source.timestamp_ms, headers, source)

    def _topic(self, event_name: str) -> tuple[str, Headers]:
        """The topic and the (shared, never mutated) routed-record headers of an event name."""
        found = self._topic_cache.get(event_name)
        if found is None:
            found = (
                event_topic_for(self.settings, self.lane, event_name),
                [("event_name", event_name.encode())],
            )
            if len(self._topic_cache) < 100_000:
                self._topic_cache[event_name] = found
        return found

    def classify(self, batch: Sequence[SourceRecord], now_ms: int) -> ClassifiedBatch:
        out = ClassifiedBatch()
        routed, projections, dead, reasons = out.routed, out.projections, out.dead, out.reasons
        gate, known = self.gate, self.gate.known
        admit = self.admission.admit
        oldest, newest = self.admission.bounds(now_ms)
        for source in batch:
            raw = source.value
            try:
                if len(raw) > self.max_event_bytes:
                    limit = self.max_event_bytes
                    raise SchemaError(OVERSIZE, None, f"{len(raw)} bytes, the limit is {limit}")
                event = admit(raw, oldest, newest, now_ms)
                topic, routed_headers = self._topic(event.name)
                is_new = topic not in known
                if is_new or gate.restricts_names:
                    refused = gate.check(event.name, topic)
                    if refused is not None:
                        raise SchemaError(refused[0], "event_name", refused[1])
                    if is_new:
                        out.new_topics.add(topic)
                user_key = event.user_id.encode()
            except SchemaError as exc:
                dead.append(self.dead_letter(source, exc.reason, exc.detail))
                reasons[exc.reason] += 1
                continue
            except TransientError:
                raise
            except Exception as exc:  # hostile bytes must never crash the router
                dead.append(self.dead_letter(source, UNDECODABLE, f"{type(exc).__name__}: {exc}"))
                reasons[UNDECODABLE] += 1
                continue
            timestamp = event.server_ts
            projection_headers = _NO_HEADERS
            if event.original_server_ts is not None:
                projection_headers = [(ORIGINAL_SERVER_TS, str(event.original_server_ts).encode())]
                routed_headers = routed_headers + projection_headers
            routed.append(OutRecord(topic, user_key, event.value, timestamp, routed_headers, source))
            projections.append(
                OutRecord(
                    self.common_topic, user_key, event.projection, timestamp, projection_headers, source
                )
            )
        return out
