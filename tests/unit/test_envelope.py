"""Envelope parsing and validation: every error names its field and reason."""

from __future__ import annotations

import copy
from typing import Any

import fastavro
import pytest
from fastavro.validation import validate

from core.envelope import (
    COMMON_FIELDS,
    FLAT,
    PropertyLimits,
    common_projection,
    encode_json,
    envelope_schema,
    normalise_event,
    parse_json_event,
    validate_event,
)
from core.errors import SchemaError


def good_event() -> dict[str, Any]:
    return {
        "event_name": "contest_join",
        "event_id": "0b8f3a52-1c4e-4d6b-9a71-3f2e8c5d7a10",
        "user_id": "u000042",
        "session_id": "s-42-1",
        "lane": "default",
        "platform": "android",
        "app_version": "5.12.0",
        "device_id": "d-42",
        "client_ts": 1_767_225_600_000,
        "server_ts": 1_767_225_600_150,
        "properties": {"contest_id": 77, "entry_fee": 49.5, "is_mega": True, "sport": "cricket", "x": None},
    }


def test_common_fields_follow_schema_order() -> None:
    names = [field["name"] for field in envelope_schema()["fields"]]
    assert tuple(names[:-1]) == COMMON_FIELDS
    assert names[-1] == "properties"


def test_good_event_passes_and_round_trips_json() -> None:
    event = good_event()
    validate_event(event)
    assert parse_json_event(encode_json(event)) == event
    assert common_projection(event) == {name: event[name] for name in COMMON_FIELDS}
    assert "properties" not in common_projection(event)


def test_properties_may_be_absent() -> None:
    event = good_event()
    del event["properties"]
    validate_event(event)


@pytest.mark.parametrize("field", COMMON_FIELDS)
def test_missing_field_is_named(field: str) -> None:
    event = good_event()
    del event[field]
    with pytest.raises(SchemaError) as info:
        validate_event(event)
    assert (info.value.reason, info.value.field) == ("missing_field", field)
    assert field in str(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_name", 42),
        ("user_id", None),
        ("platform", ["android"]),
        ("event_id", "not-a-uuid"),
        ("client_ts", "2026-01-01T00:00:00Z"),
        ("server_ts", 1.5e12),
        ("server_ts", True),
        ("client_ts", 2**63),
        ("properties", [1, 2]),
        ("properties", None),
    ],
)
def test_wrong_type_is_named(field: str, value: object) -> None:
    event = good_event()
    event[field] = value
    with pytest.raises(SchemaError) as info:
        validate_event(event)
    assert (info.value.reason, info.value.field) == ("bad_type", field)
    assert "expected" in info.value.detail


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, b"bytes", object()])
def test_bad_property_value_names_the_property(value: object) -> None:
    event = good_event()
    event["properties"]["bad"] = value
    with pytest.raises(SchemaError) as info:
        validate_event(event)
    assert (info.value.reason, info.value.field) == ("bad_type", "properties.bad")
    assert info.value.detail.startswith("properties.bad: expected ")


def test_nested_properties_are_accepted_and_errors_name_their_path() -> None:
    event = good_event()
    lineup = [{"player_id": f"p{i}", "captain": i == 0, "points": [1, 2.5, None]} for i in range(4)]
    event["properties"]["lineup"] = lineup
    event["properties"]["meta"] = {"source": {"app": "x"}, "tags": []}
    validate_event(event)
    lineup[3]["player_id"] = 2**64
    with pytest.raises(SchemaError) as info:
        validate_event(event)
    assert (info.value.reason, info.value.field) == ("bad_type", "properties.lineup[3].player_id")
    assert info.value.detail.startswith("properties.lineup[3].player_id: expected null, boolean, 64-bit")
    assert "got integer 18446744073709551616" in info.value.detail


def test_depth_limit_has_its_own_reason() -> None:
    event = good_event()
    event["properties"]["a"] = {"b": [{"c": 1}]}  # properties.a.b[0].c is at depth 4
    validate_event(event, PropertyLimits(max_depth=4))
    with pytest.raises(SchemaError) as info:
        validate_event(event, PropertyLimits(max_depth=3))
    assert (info.value.reason, info.value.field) == ("property_too_deep", "properties.a.b[0]")
    assert "router_max_property_depth" in info.value.detail
    with pytest.raises(SchemaError) as info:
        validate_event(event, FLAT)
    assert (info.value.reason, info.value.field) == ("property_too_deep", "properties.a")


def test_key_limit_counts_keys_and_items_over_the_whole_tree() -> None:
    event = good_event()
    event["properties"] = {"a": 1, "b": [10, 20, {"c": 1}]}  # a, b, b[0], b[1], b[2], b[2].c
    validate_event(event, PropertyLimits(max_keys=6))
    with pytest.raises(SchemaError) as info:
        validate_event(event, PropertyLimits(max_keys=5))
    assert (info.value.reason, info.value.field) == ("too_many_properties", "properties.b[2].c")
    assert "router_max_property_keys" in info.value.detail
    event["properties"] = {f"k{i}": i for i in range(10)}
    with pytest.raises(SchemaError) as info:
        validate_event(event, PropertyLimits(max_keys=9))
    assert (info.value.reason, info.value.field) == ("too_many_properties", "properties.k9")


def test_normalise_turns_an_integer_user_id_into_its_decimal_string_and_stamps_server_ts() -> None:
    event = good_event()
    assert normalise_event(event, 5) is False
    event["user_id"] = 123456789
    del event["server_ts"]
    assert normalise_event(event, 5) is True
    assert (event["user_id"], event["server_ts"]) == ("123456789", 5)
    validate_event(event)
    event["user_id"] = True  # a boolean is not an id
    assert normalise_event(event, 5) is False
    with pytest.raises(SchemaError) as info:
        validate_event(event)
    assert info.value.field == "user_id"
    assert info.value.detail.startswith("user_id: expected string or integer")


@pytest.mark.parametrize("raw", [b'{"event_name": ', b"nope", b"", b'{"a": "\xff\xfe"}', b"\xc3\x28"])
def test_malformed_json_and_invalid_utf8(raw: bytes) -> None:
    with pytest.raises(SchemaError) as info:
        parse_json_event(raw)
    assert info.value.reason == "malformed_json"
    assert info.value.field is None


@pytest.mark.parametrize(("raw", "kind"), [(b"[1, 2]", "array"), (b'"x"', "string"), (b"3", "integer")])
def test_not_an_object(raw: bytes, kind: str) -> None:
    with pytest.raises(SchemaError) as info:
        parse_json_event(raw)
    assert info.value.reason == "not_an_object"
    assert kind in info.value.detail


def _variants() -> list[dict[str, Any]]:
    """Good and bad events for the hand check / fastavro agreement test."""
    out = [good_event()]
    for field in COMMON_FIELDS:
        value: object
        for value in (None, 7, 1.0, True, "x", "0b8f3a52-1c4e-4d6b-9a71-3f2e8c5d7a10", [], {}):
            event = good_event()
            event[field] = value
            out.append(event)
        event = good_event()
        del event[field]
        out.append(event)
    for value in (None, True, 3, 2.5, "s", [1], {"k": 1}, 2**70):
        event = good_event()
        event["properties"]["p"] = value
        out.append(event)
    return out


def _stricter_than_fastavro(event: dict[str, Any]) -> bool:
    """Where we reject on purpose what fastavro's validate lets through."""
    event_id = event.get("event_id")
    not_a_uuid = isinstance(event_id, str) and event_id != good_event()["event_id"]  # any str passes there
    huge_int = any(type(v) is int and abs(v) >= 2**63 for v in event.get("properties", {}).values())
    return not_a_uuid or huge_int  # fastavro would silently write an over-long int as a double


def test_hand_check_with_flat_limits_agrees_with_fastavro() -> None:
    parsed = fastavro.parse_schema(copy.deepcopy(envelope_schema()))
    variants = _variants()
    assert sum(map(_stricter_than_fastavro, variants)) == 2
    for event in variants:
        try:
            validate_event(event, FLAT)
            ours = True
        except SchemaError:
            ours = False
        theirs = validate(event, parsed, raise_errors=False) and not _stricter_than_fastavro(event)
        assert ours == theirs, event
