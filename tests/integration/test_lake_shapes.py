"""Real-world shapes through a real ``highway worker --role lake``: Avro-wire input and a property
whose type changes, on the real broker and moto's S3 server.

The worker is a subprocess, so confluent-kafka's in-process ``mock://`` registry cannot serve it;
:class:`FakeRegistry` answers the two REST calls the codec makes (register a schema under a subject,
fetch a schema by id) over HTTP, like a Confluent Schema Registry.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors.lake_fs import LakeStore
from connectors.lake_reader import lake_columns
from core.envelope import STRING_FIELDS
from core.lake.encode import ARROW_TYPES
from core.lake.layout import schema_key
from tests.conftest import MakeSettings
from tests.integration.test_lake import LAKE_SETTINGS, Produced, produce_events, wait_for_lake
from tests.support import WorkerProcess

pytestmark = pytest.mark.integration


class FakeRegistry:
    """The subset of the Schema Registry REST API the wire codec uses, in memory, over HTTP."""

    def __init__(self) -> None:
        schemas: list[str] = []
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = orjson.dumps(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                schema = orjson.loads(self.rfile.read(length))["schema"]
                if not re.match(r"/subjects/[^/]+/versions", self.path):
                    self._reply(404, {"error_code": 404, "message": "not found"})
                    return
                with lock:
                    if schema not in schemas:
                        schemas.append(schema)
                    self._reply(200, {"id": schemas.index(schema) + 1})

            def do_GET(self) -> None:
                match = re.match(r"/schemas/ids/(\d+)", self.path)
                with lock:
                    known = match is not None and 0 < int(match[1]) <= len(schemas)
                    if match is not None and known:
                        self._reply(200, {"schema": schemas[int(match[1]) - 1]})
                        return
                self._reply(404, {"error_code": 40403, "message": "Schema not found"})

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    fake = FakeRegistry()
    yield fake
    fake.close()


def envelope(name: str, props: dict[str, Any], now: int) -> dict[str, Any]:
    return {
        "event_name": name,
        "event_id": str(uuid.uuid4()),
        "user_id": "u1",
        "session_id": "s1",
        "lane": "x",
        "platform": "android",
        "app_version": "5.1.0",
        "device_id": "d1",
        "client_ts": now - 50,
        "server_ts": now,
        "properties": props,
    }


@pytest.mark.parametrize("lake_format", ["iceberg", "parquet"])
def test_avro_wire_events_land_with_every_column_filled(
    make_settings: MakeSettings, registry: FakeRegistry, lake_format: str
) -> None:
    settings = make_settings(
        **{**LAKE_SETTINGS, "topic_partitions": 1, "lake_format": lake_format},
        kafka_schema_registry_url=registry.url,
        kafka_wire_format="avro",
    )
    now, name = int(time.time() * 1000), "wallet_topup"
    events = [
        {**envelope(name, {"amount": i, "method": "upi", "ok": i % 2 == 0}, now), "lane": settings.lanes[0]}
        for i in range(40)
    ]
    produced = Produced()
    produce_events(settings, events, produced)
    with WorkerProcess(settings, roles="lake") as worker:
        worker.wait_healthy()
        report = wait_for_lake(settings, produced, timeout_s=60)
        assert report.ok, report
    columns = (*STRING_FIELDS, "client_ts", "server_ts", "p_amount", "p_method", "p_ok", "_raw")
    table = lake_columns(settings, settings.lanes[0], columns)
    assert table.num_rows == 40
    for column in (*STRING_FIELDS, "client_ts", "server_ts", "p_amount", "p_method", "p_ok"):
        assert table.column(column).null_count == 0, column
    assert table.column("_raw").null_count == 40
    assert sorted(table.column("p_amount").to_pylist()) == list(range(40))
    assert set(table.column("event_id").to_pylist()) == {e["event_id"] for e in events}


def test_a_property_changing_type_leaves_every_file_readable_with_the_table_types(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings(  # every file's physical types: the parquet format (Iceberg's are the table's)
        **{
            **LAKE_SETTINGS,
            "topic_partitions": 1,
            "lake_max_properties_per_event": 5,
            "lake_format": "parquet",
        }
    )
    now, name = int(time.time() * 1000), "contest_join"
    steps: list[list[dict[str, Any]]] = [
        [{"fee": 10}] * 5,
        [{"fee": 12.5}] * 5,
        [{"fee": "free"}] * 5,
        [{"fee": 11, **{f"k{i}": i for i in range(50)}}] * 5,  # over the per-event cap
    ]
    produced = Produced()
    with WorkerProcess(settings, roles="lake") as worker:
        worker.wait_healthy()
        for props in steps:
            produce_events(settings, [envelope(name, p, now) for p in props], produced)
            wait_for_lake(settings, produced, timeout_s=30)  # one flush (one file) per step
    store = LakeStore(settings)
    schema: dict[str, Any] = orjson.loads(store.get(schema_key(settings.lanes[0], name)) or b"{}")
    assert schema["columns"] == {
        "p_fee": "int64",
        "p_fee__double": "double",
        "p_fee__string": "string",
        "p_k0": "int64",
        "p_k1": "int64",
        "p_k2": "int64",
        "p_k3": "int64",
    }
    files = [key for key in store.list_keys(f"{settings.lanes[0]}/{name}/") if key.endswith(".parquet")]
    assert len(files) >= 4
    for key in files:
        physical = pq.read_schema(pa.BufferReader(store.get(key) or b""))
        for column, kind in schema["columns"].items():
            if column in physical.names:
                assert physical.field(column).type == ARROW_TYPES[kind], (key, column)
    table = store.table_dataset(settings.lanes[0], name).to_table()
    assert table.num_rows == 20
    extras = [orjson.loads(text) for text in table.column("_extra").to_pylist() if text is not None]
    assert extras == [{f"k{i}": i for i in range(4, 50)}] * 5
