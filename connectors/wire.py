"""Wire formats for events on Kafka: JSON (default) and Avro in the Confluent wire format.

Avro framing is Confluent's: magic byte ``0``, a 4-byte big-endian schema id, then the fastavro
schemaless body. The envelope schema is registered under subject ``<topic>-value`` through
confluent-kafka's schema-registry client, and writer schemas are fetched by id when decoding.

:func:`codec_for` builds the codec from settings:

* no ``kafka_schema_registry_url`` → :class:`JsonCodec`;
* a registry URL → :class:`RegistryCodec`: ``decode`` reads both formats (a Confluent frame starts
  with byte 0, JSON never does), ``encode`` writes Avro when ``kafka_wire_format = "avro"``, else JSON.

A ``mock://name`` registry URL gives confluent-kafka's in-memory registry. Clients are shared per URL
inside one process, so a producer and a router in the same process (as in the tests) see one registry.

``decode`` only parses; callers run :func:`core.envelope.validate_event` on the result. Avro
timestamps and UUIDs decode as plain ints and strings, exactly like the JSON form. ``reads_json``
tells the router its JSON fast path applies (``core/routing/admit.py``); ``reencode(raw, event)``
writes an event the router changed (normalised or restamped) in the format ``raw`` came in. The
Avro envelope holds flat scalar properties and a string ``user_id`` only, so Avro encoding validates
with :data:`core.envelope.FLAT`.
"""

from __future__ import annotations

import io
import json
import struct
import threading
from collections.abc import Mapping
from functools import cache
from typing import Any, Protocol

import fastavro
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from connectors.kafka_config import registry_config
from core.envelope import (
    FLAT,
    encode_json,
    envelope_schema,
    envelope_schema_str,
    parse_json_event,
    validate_event,
)
from core.errors import SchemaError, TransientError
from core.settings import Settings

MAGIC_BYTE = 0
_HEADER = struct.Struct(">bI")

_clients: dict[str, SchemaRegistryClient] = {}
_clients_lock = threading.Lock()


class WireCodec(Protocol):
    """Bytes on a topic ↔ event dicts."""

    name: str
    reads_json: bool

    def decode(self, raw: bytes) -> dict[str, Any]:
        """Parse one message value; raise SchemaError when it cannot be read."""
        ...

    def reencode(self, raw: bytes, event: dict[str, Any]) -> bytes:
        """Serialise ``event`` (decoded from ``raw`` and changed) in ``raw``'s format."""
        ...

    def encode(self, event: dict[str, Any]) -> bytes:
        """Serialise one event."""
        ...


def _strip_logical_types(schema: Any) -> Any:
    """The same schema without logicalType annotations: identical bytes, plain int/str values."""
    if isinstance(schema, dict):
        return {key: _strip_logical_types(value) for key, value in schema.items() if key != "logicalType"}
    if isinstance(schema, list):
        return [_strip_logical_types(item) for item in schema]
    return schema


@cache
def _parsed_envelope() -> Any:
    return fastavro.parse_schema(_strip_logical_types(envelope_schema()))


def registry_client(url: str, auth: Mapping[str, str] | None = None) -> SchemaRegistryClient:
    """One schema-registry client per URL and credentials in this process (``mock://…`` gives the
    in-memory one); ``auth`` adds client settings such as basic auth and the CA bundle."""
    conf = {**(auth or {}), "url": url}
    key = "\n".join(f"{name}={value}" for name, value in sorted(conf.items()))
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = SchemaRegistryClient.new_client(conf)
            _clients[key] = client
        return client


class JsonCodec:
    """UTF-8 JSON objects (orjson)."""

    name = "json"
    reads_json = True

    def decode(self, raw: bytes) -> dict[str, Any]:
        return parse_json_event(raw)

    def reencode(self, raw: bytes, event: dict[str, Any]) -> bytes:
        return encode_json(event)

    def encode(self, event: dict[str, Any]) -> bytes:
        return encode_json(event)


class AvroCodec:
    """Confluent-framed Avro against a schema registry; encodes under ``subject``."""

    name = "avro"
    reads_json = False

    def __init__(self, registry: SchemaRegistryClient, subject: str) -> None:
        self._registry = registry
        self._subject = subject
        self._schema_id: int | None = None
        self._writers: dict[int, tuple[Any, Any]] = {}
        self._lock = threading.Lock()

    @property
    def schema_id(self) -> int:
        """The envelope's id under the subject, registered on first use (idempotent in the registry)."""
        if self._schema_id is None:
            try:
                self._schema_id = self._registry.register_schema(
                    self._subject, Schema(envelope_schema_str(), "AVRO")
                )
            except SchemaRegistryError as exc:
                raise TransientError(
                    f"could not register the envelope under {self._subject!r}: {exc}"
                ) from exc
        return self._schema_id

    def encode(self, event: dict[str, Any]) -> bytes:
        validate_event(event, FLAT)
        buffer = io.BytesIO()
        buffer.write(_HEADER.pack(MAGIC_BYTE, self.schema_id))
        fastavro.schemaless_writer(buffer, _parsed_envelope(), event)
        return buffer.getvalue()

    def reencode(self, raw: bytes, event: dict[str, Any]) -> bytes:
        return self.encode(event)

    def _writer_schema(self, schema_id: int) -> tuple[Any, Any]:
        writer = self._writers.get(schema_id)
        if writer is not None:
            return writer
        try:
            registered = self._registry.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise SchemaError(
                    "unknown_schema_id", None, f"schema id {schema_id} is not registered"
                ) from None
            raise TransientError(f"schema registry lookup of id {schema_id} failed: {exc}") from exc
        try:
            parsed = fastavro.parse_schema(_strip_logical_types(json.loads(registered.schema_str or "null")))
        except Exception as exc:
            raise SchemaError("bad_writer_schema", None, f"schema id {schema_id}: {exc}") from None
        envelope = _parsed_envelope()
        # Same schema as ours: read without resolution (faster); otherwise resolve into the envelope.
        writer = (parsed, None if parsed == envelope else envelope)
        with self._lock:
            self._writers[schema_id] = writer
        return writer

    def decode(self, raw: bytes) -> dict[str, Any]:
        if len(raw) < _HEADER.size or raw[0] != MAGIC_BYTE:
            raise SchemaError("malformed_avro", None, "not a Confluent Avro frame (magic byte 0 + schema id)")
        _, schema_id = _HEADER.unpack_from(raw)
        writer, reader = self._writer_schema(schema_id)
        try:
            record = fastavro.schemaless_reader(io.BytesIO(raw[_HEADER.size :]), writer, reader)
        except Exception as exc:
            raise SchemaError(
                "malformed_avro", None, f"schema id {schema_id}: {type(exc).__name__}: {exc}"
            ) from None
        if type(record) is not dict:
            raise SchemaError("not_an_object", None, f"schema id {schema_id} does not describe a record")
        return record


class RegistryCodec:
    """Reads JSON and Confluent Avro (told apart by the first byte); writes ``kafka_wire_format``."""

    reads_json = True

    def __init__(self, avro: AvroCodec, write_avro: bool) -> None:
        self.avro = avro
        self.json = JsonCodec()
        self.name = "avro" if write_avro else "json"
        self._writer: WireCodec = avro if write_avro else self.json

    def decode(self, raw: bytes) -> dict[str, Any]:
        if raw[:1] == b"\x00":
            return self.avro.decode(raw)
        return self.json.decode(raw)

    def encode(self, event: dict[str, Any]) -> bytes:
        return self._writer.encode(event)

    def reencode(self, raw: bytes, event: dict[str, Any]) -> bytes:
        if raw[:1] == b"\x00":
            return self.avro.encode(event)
        return self.json.encode(event)


def codec_for(settings: Settings, topic: str | None = None) -> WireCodec:
    """The codec for ``settings``; Avro registers under ``<topic>-value`` (default: first lane's input)."""
    if not settings.kafka_schema_registry_url:
        return JsonCodec()
    subject = f"{topic or settings.all_events_topic(settings.lanes[0])}-value"
    avro = AvroCodec(registry_client(settings.kafka_schema_registry_url, registry_config(settings)), subject)
    return RegistryCodec(avro, write_avro=settings.kafka_wire_format == "avro")
