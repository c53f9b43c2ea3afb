"""The event envelope: its Avro schema, JSON parsing, and the validity check behind the router.

Every Highway event is one ``Event`` record (``schemas/envelope.avsc``): ten common attributes and a
``properties`` object of event-specific values.

What the router accepts (and what every stage after it sees):

* The eight string attributes must be JSON strings; ``event_id`` a UUID in its canonical
  36-character text form. ``user_id`` may also be a JSON integer (not a boolean): the router
  normalises it to its decimal string (``123456789`` → ``"123456789"``) and re-encodes that event,
  so the routed record, its key, the common projection, the lake and realtime all see a string.
* ``client_ts`` and ``server_ts`` are integer epoch milliseconds (signed 64-bit). An absent
  ``server_ts`` is stamped with the router's clock (the event is re-encoded). A ``server_ts`` more
  than ``router_future_tolerance_s`` ahead of the router's clock, or older than
  ``router_max_event_age_s`` (default: the topic retention), is dead-lettered
  (``future_timestamp`` / ``stale_timestamp``) or, with ``router_timestamp_policy = "restamp"``,
  replaced by the router's clock with the original kept in the header ``original_server_ts``.
  Routed and projection records carry ``server_ts`` as their Kafka timestamp.
* ``properties`` may be absent (it means ``{}``) but, when present, must be an object. Its values
  are ``null``, booleans, signed 64-bit integers, numbers, strings, and objects and arrays of those,
  at most ``router_max_property_depth`` levels deep (a flat value is depth 1;
  ``properties.lineup[3].player_id`` is depth 3; reason ``property_too_deep``) and at most
  ``router_max_property_keys`` keys and array items over the whole tree (``too_many_properties``).
  The lake stores a nested value as the JSON text of that value in a string column (docs/lake.md).
* Top-level keys that are not in the schema are ignored by validation and kept in the routed bytes
  (the Avro encoding drops them).
* Every rejection is a :class:`~core.errors.SchemaError` whose ``field`` is the path of the offending
  value (``user_id``, ``properties.lineup[3].player_id``) and whose ``detail`` starts with it.

The Avro wire format cannot carry nested properties or integer user ids (its ``properties`` map holds
flat scalars): :data:`FLAT` is the limit set that matches it, and with it :func:`validate_event` is a
hand-written check of exactly what ``fastavro.validation.validate`` checks for this schema (a unit
test holds the two in agreement). The router's JSON fast path (``core/envelope_fast.py``) accepts a
subset of what :func:`validate_event` accepts, and falls back to it for everything else.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson

from core.errors import SchemaError
from schemas import envelope_schema

STRING_FIELDS: tuple[str, ...] = (
    "event_name",
    "event_id",
    "user_id",
    "session_id",
    "lane",
    "platform",
    "app_version",
    "device_id",
)
TIMESTAMP_FIELDS: tuple[str, ...] = ("client_ts", "server_ts")
COMMON_FIELDS: tuple[str, ...] = STRING_FIELDS + TIMESTAMP_FIELDS
"""The common attributes, in schema order, without ``properties``."""

PROPERTY_TYPES = (type(None), bool, int, float, str)
"""Python types of a scalar property value (Avro null, boolean, long, double, string)."""

BAD_TYPE = "bad_type"
MISSING_FIELD = "missing_field"
PROPERTY_TOO_DEEP = "property_too_deep"
TOO_MANY_PROPERTIES = "too_many_properties"

LONG_MIN = -(2**63)
LONG_MAX = 2**63 - 1
UUID_PATTERN = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_UUID_RE = re.compile(UUID_PATTERN)
_SCALAR_EXPECTED = "null, boolean, 64-bit integer, number or string"
_JSON_TYPE_NAMES = {
    type(None): "null",
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    dict: "object",
    list: "array",
}


@dataclass(frozen=True, slots=True)
class PropertyLimits:
    """How deep and how large the ``properties`` tree may be (settings ``router_max_property_*``)."""

    max_depth: int = 8
    max_keys: int = 1000


DEFAULT_LIMITS = PropertyLimits()
FLAT = PropertyLimits(max_depth=1, max_keys=2**62)
"""What the Avro envelope can hold: flat scalar properties, any number of them."""


@cache
def envelope_schema_str() -> str:
    """The envelope schema text, canonical enough to register once and look up by equality."""
    return json.dumps(envelope_schema(), separators=(",", ":"), sort_keys=True)


def _type_name(value: object) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def parse_json_event(raw: bytes) -> dict[str, Any]:
    """Parse one JSON event; SchemaError ``malformed_json`` (also invalid UTF-8) or ``not_an_object``."""
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SchemaError("malformed_json", None, str(exc)) from None
    if type(event) is not dict:
        raise SchemaError("not_an_object", None, f"the event is a JSON {_type_name(event)}, not an object")
    return event


def _bad(field: str, expected: str, value: object) -> SchemaError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return SchemaError(BAD_TYPE, field, f"{field}: expected {expected}, got {_type_name(value)} {shown}")


def _missing(field: str) -> SchemaError:
    return SchemaError(MISSING_FIELD, field, f"{field}: required field is absent")


def normalise_event(event: dict[str, Any], now_ms: int) -> bool:
    """Make a real-world event fit before validation; True when ``event`` changed (re-encode it).

    An integer ``user_id`` becomes its decimal string; an absent ``server_ts`` becomes ``now_ms``.
    """
    changed = False
    user_id = event.get("user_id")
    if type(user_id) is int:
        event["user_id"] = str(user_id)
        changed = True
    if "server_ts" not in event:
        event["server_ts"] = now_ms
        changed = True
    return changed


def validate_event(event: dict[str, Any], limits: PropertyLimits = DEFAULT_LIMITS) -> None:
    """Raise SchemaError (naming the field path) unless ``event`` fits the envelope within ``limits``."""
    if type(event) is not dict:
        raise SchemaError("not_an_object", None, f"the event is a {_type_name(event)}, not an object")
    _check_common(event)
    _check_properties(event, limits)


def _check_common(event: dict[str, Any]) -> None:
    for name in STRING_FIELDS:
        value = event.get(name)
        if type(value) is not str:
            if value is None and name not in event:
                raise _missing(name)
            if name == "user_id":
                raise _bad(name, "string or integer", value)
            raise _bad(name, "string", value)
    if not _UUID_RE.fullmatch(event["event_id"]):
        raise _bad("event_id", "a UUID string (8-4-4-4-12 hex digits)", event["event_id"])
    for name in TIMESTAMP_FIELDS:
        value = event.get(name)
        if type(value) is not int or not LONG_MIN <= value <= LONG_MAX:
            if value is None and name not in event:
                raise _missing(name)
            raise _bad(name, "integer epoch milliseconds", value)


def _check_properties(event: dict[str, Any], limits: PropertyLimits) -> None:
    properties = event.get("properties")
    if properties is None:
        if "properties" in event:
            raise _bad("properties", "an object", None)
        return
    if type(properties) is not dict:
        raise _bad("properties", "an object", properties)
    remaining = limits.max_keys - len(properties)
    if remaining < 0:
        _too_many(f"properties.{list(properties)[limits.max_keys]}", limits)
    for key, value in properties.items():
        kind = type(value)
        if kind is dict or kind is list:
            remaining = _check_nested(value, f"properties.{key}", 1, remaining, limits)
        elif kind not in PROPERTY_TYPES or (kind is int and not LONG_MIN <= value <= LONG_MAX):
            raise _bad(f"properties.{key}", _SCALAR_EXPECTED, value)


def _too_many(path: str, limits: PropertyLimits) -> None:
    raise SchemaError(
        TOO_MANY_PROPERTIES,
        path,
        f"{path}: properties hold more than {limits.max_keys} keys and array items in all"
        " (router_max_property_keys)",
    )


def _check_nested(value: Any, path: str, depth: int, remaining: int, limits: PropertyLimits) -> int:
    """Check the container ``value`` found at ``path`` (itself at ``depth``); return the key budget left."""
    if depth >= limits.max_depth:
        raise SchemaError(
            PROPERTY_TOO_DEEP,
            path,
            f"{path}: a nested {_type_name(value)} at depth {depth}; values may be at most"
            f" {limits.max_depth} levels deep (router_max_property_depth)",
        )
    items = value.items() if type(value) is dict else enumerate(value)
    for key, item in items:
        child = f"{path}.{key}" if type(key) is str else f"{path}[{key}]"
        remaining -= 1
        if remaining < 0:
            _too_many(child, limits)
        kind = type(item)
        if kind is dict or kind is list:
            remaining = _check_nested(item, child, depth + 1, remaining, limits)
        elif kind not in PROPERTY_TYPES or (kind is int and not LONG_MIN <= item <= LONG_MAX):
            raise _bad(child, _SCALAR_EXPECTED, item)
    return remaining


def common_projection(event: dict[str, Any]) -> dict[str, Any]:
    """The envelope without ``properties`` (what the common-attributes topic carries)."""
    return {name: event[name] for name in COMMON_FIELDS}


def encode_json(event: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON (orjson)."""
    return orjson.dumps(event)
