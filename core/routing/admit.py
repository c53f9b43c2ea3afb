"""Admission of one input event: from its bytes to what the router routes, or a SchemaError.

Two paths reach the same answer. JSON bytes first try :func:`core.envelope_fast.decode_fast` (typed
decoding and validation in C); an event it accepts, whose ``server_ts`` is within bounds and whose
properties are within the key budget, is routed with its bytes unchanged. Anything else takes the
validating path: the codec's ``decode``, :func:`core.envelope.normalise_event` (integer
``user_id`` → string, absent ``server_ts`` → the router's clock), :func:`core.envelope.validate_event`
(the exact reason and field path of a rejection), then the event-time bounds. An event that was
changed on the way is re-encoded in the format it came in.

Event-time bounds: ``server_ts`` must lie within ``[now - router_max_event_age_s, now +
router_future_tolerance_s]`` (and not before the epoch). Out of bounds, ``router_timestamp_policy``
decides: ``dead_letter`` (``future_timestamp`` / ``stale_timestamp``) or ``restamp`` (``server_ts``
becomes the router's clock, the original goes into the header ``original_server_ts``). So the routed
records' Kafka timestamps — their ``server_ts`` — are always within what the broker accepts (Kafka 4
rejects records more than an hour ahead) and never older than retention, which would let the
broker delete them before the lake reads them; and one bad clock cannot drag the realtime watermark
or the lake's partitions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from core.envelope import (
    PropertyLimits,
    encode_json,
    normalise_event,
    parse_json_event,
    validate_event,
)
from core.envelope_fast import decode_fast, projection_json, projection_json_of
from core.errors import SchemaError
from core.settings import Settings

FUTURE_TIMESTAMP = "future_timestamp"
STALE_TIMESTAMP = "stale_timestamp"
ORIGINAL_SERVER_TS = "original_server_ts"

Decode = Callable[[bytes], dict[str, Any]]
Reencode = Callable[[bytes, dict[str, Any]], bytes]


class Admitted(NamedTuple):
    """A valid event: routed ``value`` (``raw`` itself unless normalised) and its projection bytes."""

    name: str
    user_id: str
    server_ts: int
    value: bytes
    projection: bytes
    original_server_ts: int | None


def _reencode_json(raw: bytes, event: dict[str, Any]) -> bytes:
    return encode_json(event)


class Admission:
    """Admits events of one lane under ``settings``.

    ``decode`` is the wire codec's decode. The JSON fast path is used when ``json_fast_path`` says
    so, or by default when ``decode`` is :func:`~core.envelope.parse_json_event` or a method of a
    codec whose ``reads_json`` is true. ``reencode(raw, event)`` writes a changed event in the format
    of ``raw``; by default the codec's own ``reencode`` when it has one, else JSON.
    """

    def __init__(
        self,
        settings: Settings,
        decode: Decode,
        reencode: Reencode | None = None,
        json_fast_path: bool | None = None,
    ) -> None:
        owner = getattr(decode, "__self__", None)
        self.decode = decode
        if json_fast_path is None:
            json_fast_path = decode is parse_json_event or bool(getattr(owner, "reads_json", False))
        self.fast = json_fast_path
        self.reencode: Reencode = reencode or getattr(owner, "reencode", None) or _reencode_json
        self.limits = PropertyLimits(settings.router_max_property_depth, settings.router_max_property_keys)
        self.tolerance_ms = settings.router_future_tolerance_s * 1000
        self.max_age_ms = settings.max_event_age_ms()
        self.restamp = settings.router_timestamp_policy == "restamp"

    def bounds(self, now_ms: int) -> tuple[int, int]:
        """The oldest and newest ``server_ts`` routed unchanged at ``now_ms``."""
        oldest = 0 if self.max_age_ms is None else max(0, now_ms - self.max_age_ms)
        return oldest, now_ms + self.tolerance_ms

    def admit(self, raw: bytes, oldest: int, newest: int, now_ms: int) -> Admitted:
        """The routed form of ``raw``, or SchemaError; ``oldest``/``newest`` from :meth:`bounds`."""
        if self.fast and raw[:1] != b"\x00":  # a Confluent Avro frame starts with 0, JSON never does
            envelope = decode_fast(raw)
            if (
                envelope is not None
                and oldest <= envelope.server_ts <= newest
                and len(envelope.properties) <= self.limits.max_keys
            ):
                projection = projection_json(envelope)
                return Admitted(
                    envelope.event_name, envelope.user_id, envelope.server_ts, raw, projection, None
                )
        return self._admit_checked(raw, oldest, newest, now_ms)

    def _admit_checked(self, raw: bytes, oldest: int, newest: int, now_ms: int) -> Admitted:
        event = self.decode(raw)
        changed = type(event) is dict and normalise_event(event, now_ms)
        validate_event(event, self.limits)
        server_ts: int = event["server_ts"]
        original: int | None = None
        if not oldest <= server_ts <= newest:
            if not self.restamp:
                raise self._out_of_bounds(server_ts, oldest, newest, now_ms)
            original = server_ts
            event["server_ts"] = server_ts = now_ms
            changed = True
        value = self.reencode(raw, event) if changed else raw
        projection = projection_json_of(event)
        return Admitted(event["event_name"], event["user_id"], server_ts, value, projection, original)

    def _out_of_bounds(self, server_ts: int, oldest: int, newest: int, now_ms: int) -> SchemaError:
        if server_ts > newest:
            ahead_s = (server_ts - now_ms) // 1000
            return SchemaError(
                FUTURE_TIMESTAMP,
                "server_ts",
                f"server_ts: {server_ts} is {ahead_s} s ahead of the router's clock ({now_ms});"
                f" the tolerance is {self.tolerance_ms // 1000} s (router_future_tolerance_s)",
            )
        if self.max_age_ms is None or server_ts < 0:
            limit = "timestamps before the epoch are not routed"
        else:
            limit = f"the limit is {self.max_age_ms // 1000} s (router_max_event_age_s)"
        return SchemaError(
            STALE_TIMESTAMP,
            "server_ts",
            f"server_ts: {server_ts} is {(now_ms - server_ts) // 1000} s older than the router's clock"
            f" ({now_ms}); {limit}",
        )
