"""The event envelope: its Avro schema, JSON parsing, and the fast validity check used on the hot path.

Every Highway event is one ``Event`` record (``schemas/envelope.avsc``): ten common attributes and a
``properties`` map of event-specific scalars.

Choices, in one place:

* ``properties`` is a flat map of ``null | boolean | long | double | string`` (in that union order, so a
  Python ``bool`` is written as boolean, not long). Nested objects and arrays are rejected: every
  property becomes one typed lake column. Each event type keeps one type per property name (the
  simulator guarantees it; the lake's schema merging handles drift). ``properties`` may be absent
  (it defaults to ``{}``) but, when present, must be an object.
* Timestamps (``client_ts``, ``server_ts``) are integer epoch milliseconds in JSON and Avro alike.
* ``event_id`` is a UUID in its canonical 36-character text form.
* Top-level keys that are not in the schema are ignored (the Avro encoding drops them).

:func:`validate_event` is a hand-written check of exactly what ``fastavro.validation.validate``
checks for this schema (a unit test holds the two in agreement over good and bad events); it is about
three times faster (5 µs vs 15 µs per event measured on this machine) and names the offending
field and reason in a :class:`~core.errors.SchemaError`.
"""

from __future__ import annotations

import json
import re
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
"""Python types a property value may have (Avro null, boolean, long, double, string)."""

_LONG_MIN = -(2**63)
_LONG_MAX = 2**63 - 1
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_JSON_TYPE_NAMES = {
    type(None): "null",
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    dict: "object",
    list: "array",
}


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
    return SchemaError("bad_type", field, f"expected {expected}, got {_type_name(value)} {shown}")


def validate_event(event: dict[str, Any]) -> None:
    """Raise SchemaError (``missing_field`` / ``bad_type``, naming the field) unless ``event`` fits."""
    if type(event) is not dict:
        raise SchemaError("not_an_object", None, f"the event is a {_type_name(event)}, not an object")
    _check_common(event)
    _check_properties(event)


def _check_common(event: dict[str, Any]) -> None:
    for name in STRING_FIELDS:
        value = event.get(name)
        if type(value) is not str:
            if value is None and name not in event:
                raise SchemaError("missing_field", name, f"required field {name!r} is absent")
            raise _bad(name, "string", value)
    if not _UUID_RE.fullmatch(event["event_id"]):
        raise _bad("event_id", "a UUID string (8-4-4-4-12 hex digits)", event["event_id"])
    for name in TIMESTAMP_FIELDS:
        value = event.get(name)
        if type(value) is not int or not _LONG_MIN <= value <= _LONG_MAX:
            if value is None and name not in event:
                raise SchemaError("missing_field", name, f"required field {name!r} is absent")
            raise _bad(name, "integer epoch milliseconds", value)


def _check_properties(event: dict[str, Any]) -> None:
    properties = event.get("properties")
    if properties is None:
        if "properties" in event:
            raise _bad("properties", "an object of scalars", None)
        return
    if type(properties) is not dict:
        raise _bad("properties", "an object of scalars", properties)
    for key, value in properties.items():
        kind = type(value)
        if kind not in PROPERTY_TYPES or (kind is int and not _LONG_MIN <= value <= _LONG_MAX):
            raise _bad(f"properties.{key}", "null, boolean, 64-bit integer, number or string", value)


def common_projection(event: dict[str, Any]) -> dict[str, Any]:
    """The envelope without ``properties`` (what the common-attributes topic carries)."""
    return {name: event[name] for name in COMMON_FIELDS}


def encode_json(event: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON (orjson)."""
    return orjson.dumps(event)
