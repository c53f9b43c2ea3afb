"""What the router does with real-world events: numeric ids, nested properties, event time."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from core.routing.classify import BatchClassifier
from core.routing.gate import NewTypeGate
from core.settings import Settings
from tests.unit.test_routing_classify import NOW_MS, classifier, event, headers, records

HOUR_MS = 3600_000


def one(raw: bytes, **settings: Any) -> Any:
    return classifier(**settings).classify(records([raw]), NOW_MS)


def test_numeric_user_id_is_routed_as_its_decimal_string() -> None:
    raw = orjson.dumps(event(user_id=123456789, extra_top_level={"kept": True}))
    out = one(raw)
    routed = out.routed[0]
    assert routed.key == b"123456789"
    assert routed.value != raw
    value = orjson.loads(routed.value)
    assert value["user_id"] == "123456789"
    assert value["extra_top_level"] == {"kept": True}  # re-encoding keeps what validation ignores
    assert {k: v for k, v in value.items() if k != "user_id"} == {
        k: v for k, v in orjson.loads(raw).items() if k != "user_id"
    }
    assert orjson.loads(out.projections[0].value)["user_id"] == "123456789"
    assert out.projections[0].key == b"123456789"


@pytest.mark.parametrize("user_id", [True, 1.5, None, {"id": 1}])
def test_other_user_id_types_are_still_dead_lettered(user_id: object) -> None:
    out = one(orjson.dumps(event(user_id=user_id)))
    assert out.routed == []
    detail = headers(out.dead[0])["detail"].decode()
    assert headers(out.dead[0])["reason"] == b"bad_type"
    assert detail.startswith("user_id: expected string or integer, got ")


def test_nested_properties_are_routed_with_their_bytes_unchanged() -> None:
    props = {"lineup": [{"player_id": f"p{i}", "role": ["bat", "bowl"][i % 2]} for i in range(11)]}
    raw = orjson.dumps(event(properties=props))
    out = one(raw)
    assert out.dead == []
    assert out.routed[0].value is raw


def test_nested_property_errors_name_the_path_in_the_dead_letter() -> None:
    props = {"lineup": [{"player_id": "p0"}, {"player_id": "p1"}, {}, {"player_id": 2**63}]}
    too_deep = {"a": {"b": {"c": {"d": 1}}}}
    too_many = {"ids": list(range(20))}
    big = orjson.dumps(event(properties=props | {"lineup": []}))  # orjson writes no integer >= 2**63
    cases = [big.replace(b'"lineup":[]', b'"lineup":' + _json_text(props["lineup"]))]
    cases += [orjson.dumps(event(properties=p)) for p in (too_deep, too_many)]
    out = classifier(router_max_property_depth=3, router_max_property_keys=10).classify(
        records(cases), NOW_MS
    )
    found = [(headers(r)["reason"].decode(), headers(r)["detail"].decode()) for r in out.dead]
    assert [reason for reason, _ in found] == ["bad_type", "property_too_deep", "too_many_properties"]
    assert found[0][1].startswith("properties.lineup[3].player_id: expected null, boolean, 64-bit integer")
    assert found[1][1].startswith("properties.a.b.c: a nested object at depth 3")
    assert found[2][1].startswith("properties.ids[9]: properties hold more than 10 keys")


def _json_text(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def test_absent_server_ts_is_stamped_with_the_router_clock() -> None:
    raw = orjson.dumps({k: v for k, v in event().items() if k != "server_ts"})
    out = one(raw)
    routed = out.routed[0]
    assert orjson.loads(routed.value)["server_ts"] == NOW_MS
    assert routed.timestamp_ms == NOW_MS
    assert orjson.loads(out.projections[0].value)["server_ts"] == NOW_MS
    assert headers(routed) == {"event_name": b"contest_join"}


def test_future_and_stale_server_ts_are_dead_lettered_by_default() -> None:
    week_s = 7 * 24 * 3600
    cases = [
        event(server_ts=NOW_MS + 300_000),  # exactly at the tolerance: routed
        event(server_ts=NOW_MS + 301_000),
        event(server_ts=NOW_MS - week_s * 1000),  # exactly the default age (the topic retention)
        event(server_ts=NOW_MS - week_s * 1000 - 1),
        event(server_ts=-5),
    ]
    out = classifier().classify(records([orjson.dumps(e) for e in cases]), NOW_MS)
    assert [r.timestamp_ms for r in out.routed] == [NOW_MS + 300_000, NOW_MS - week_s * 1000]
    found = [(headers(r)["reason"].decode(), headers(r)["detail"].decode()) for r in out.dead]
    assert [reason for reason, _ in found] == ["future_timestamp", "stale_timestamp", "stale_timestamp"]
    assert found[0][1].startswith("server_ts: ")
    assert "301 s ahead" in found[0][1]
    assert "the tolerance is 300 s (router_future_tolerance_s)" in found[0][1]
    assert f"the limit is {week_s} s (router_max_event_age_s)" in found[1][1]
    assert "before the epoch" in found[2][1]


def test_age_limit_follows_its_setting_then_the_retention() -> None:
    old = orjson.dumps(event(server_ts=NOW_MS - 2 * HOUR_MS))
    assert one(old, router_max_event_age_s=3600).reasons == {"stale_timestamp": 1}
    assert one(old, topic_retention_ms=HOUR_MS).reasons == {"stale_timestamp": 1}
    assert len(one(old, topic_retention_ms=-1).routed) == 1
    assert len(one(old, router_max_event_age_s=3 * 3600, topic_retention_ms=HOUR_MS).routed) == 1


def test_restamp_policy_replaces_server_ts_and_keeps_the_original_in_a_header() -> None:
    future = NOW_MS + 10 * HOUR_MS
    raw = orjson.dumps(event(server_ts=future))
    out = one(raw, router_timestamp_policy="restamp")
    assert out.dead == []
    routed, projection = out.routed[0], out.projections[0]
    assert orjson.loads(routed.value)["server_ts"] == NOW_MS
    assert orjson.loads(projection.value)["server_ts"] == NOW_MS
    assert routed.timestamp_ms == projection.timestamp_ms == NOW_MS
    assert headers(routed) == {"event_name": b"contest_join", "original_server_ts": str(future).encode()}
    assert headers(projection) == {"original_server_ts": str(future).encode()}
    # the per-topic header list is shared by every routed record of the type: it must stay untouched
    again = classifier(router_timestamp_policy="restamp")
    again.classify(records([raw]), NOW_MS)
    assert headers(again.classify(records([orjson.dumps(event())]), NOW_MS).routed[0]) == {
        "event_name": b"contest_join"
    }


def test_avro_events_are_restamped_in_avro() -> None:
    from connectors.wire import codec_for

    settings = Settings(
        kafka_schema_registry_url="mock://router-restamp",
        kafka_wire_format="avro",
        router_timestamp_policy="restamp",
    )
    codec = codec_for(settings, settings.all_events_topic("default"))
    raw = codec.encode(event(server_ts=NOW_MS + 10 * HOUR_MS))
    classify = BatchClassifier(settings, "default", NewTypeGate(1000, 5000), codec.decode).classify
    out = classify(records([raw]), NOW_MS)
    value = out.routed[0].value
    assert value[:1] == b"\x00"
    assert codec.decode(value)["server_ts"] == NOW_MS
