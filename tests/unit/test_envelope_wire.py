"""Wire formats: JSON and Confluent-framed Avro through an in-memory (``mock://``) schema registry.

There is no schema-registry server on this machine; confluent-kafka's client serves ``mock://`` URLs
from memory with the same API, which is what these tests use.
"""

from __future__ import annotations

import struct
import uuid

import pytest

from connectors.wire import AvroCodec, JsonCodec, RegistryCodec, codec_for, registry_client
from core.envelope import encode_json, envelope_schema_str
from core.errors import SchemaError
from core.settings import Settings
from tests.unit.test_envelope import good_event


def _registry_url() -> str:
    return f"mock://wire-{uuid.uuid4().hex[:8]}"


def test_json_is_the_default() -> None:
    codec = codec_for(Settings())
    assert isinstance(codec, JsonCodec)
    event = good_event()
    assert codec.decode(codec.encode(event)) == event


def test_avro_round_trip_in_confluent_frame() -> None:
    url = _registry_url()
    settings = Settings(kafka_schema_registry_url=url, kafka_wire_format="avro", lanes=["lane1"])
    codec = codec_for(settings)
    assert isinstance(codec, RegistryCodec)
    event = good_event()
    raw = codec.encode(event)
    magic, schema_id = struct.unpack(">bI", raw[:5])
    assert magic == 0
    registered = registry_client(url).get_latest_version("lane1.events.all-value")
    assert registered.schema_id == schema_id
    assert registered.schema.schema_str == envelope_schema_str()
    decoded = codec.decode(raw)
    assert decoded == event
    assert type(decoded["server_ts"]) is int
    assert type(decoded["event_id"]) is str
    # A second codec in the same process shares the registry and reads the first one's bytes.
    assert codec_for(settings).decode(raw) == event


def test_registry_codec_reads_json_too_and_writes_json_by_default() -> None:
    codec = codec_for(Settings(kafka_schema_registry_url=_registry_url()))
    event = good_event()
    raw = codec.encode(event)
    assert raw == encode_json(event)
    assert codec.decode(raw) == event


def test_avro_errors_are_schema_errors() -> None:
    codec = AvroCodec(registry_client(_registry_url()), "t-value")
    raw = codec.encode(good_event())
    with pytest.raises(SchemaError) as info:
        codec.decode(b"\x01\x00")
    assert info.value.reason == "malformed_avro"
    with pytest.raises(SchemaError) as info:
        codec.decode(raw[:20])
    assert info.value.reason == "malformed_avro"
    with pytest.raises(SchemaError) as info:
        codec.decode(b"\x00" + struct.pack(">I", 9999) + raw[5:])
    assert info.value.reason == "unknown_schema_id"


def test_avro_encode_validates_first() -> None:
    codec = AvroCodec(registry_client(_registry_url()), "t-value")
    event = good_event()
    del event["user_id"]
    with pytest.raises(SchemaError) as info:
        codec.encode(event)
    assert (info.value.reason, info.value.field) == ("missing_field", "user_id")
