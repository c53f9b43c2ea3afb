"""The local infrastructure for real: `highway dev up|status|down`, broker restart, S3 outage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import EndpointConnectionError
from confluent_kafka import Consumer, Producer

from connectors.kafka_admin import KafkaAdmin
from connectors.local.kafka import broker_answers
from connectors.local.process import free_ports, owned_pid_alive, process_cmdline
from connectors.local.s3 import s3_client
from connectors.local.stack import ExternalKafka, LocalStack, start_stack
from core.errors import InfrastructureError
from tests.conftest import MakeSettings, isolated_settings
from tests.support import WorkerProcess, wait_until

pytestmark = pytest.mark.integration


def _highway(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HIGHWAY_", "AWS_"))}
    env["HIGHWAY_STATE_DIR"] = str(state_dir)
    return subprocess.run(
        [sys.executable, "-m", "highway.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )


def _exports(stdout: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in stdout.splitlines():
        assert line.startswith("export "), f"stdout must hold only export lines, got {line!r}"
        key, _, value = line.removeprefix("export ").partition("=")
        values[key] = value
    return values


def _round_trip(bootstrap: str, topic: str, count: int) -> list[bytes]:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    for index in range(count):
        producer.produce(topic, key=str(index).encode(), value=f"event-{index}".encode())
    assert producer.flush(30) == 0
    return _consume(bootstrap, topic, count)


def _consume(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    values: list[bytes] = []

    def all_read() -> bool:
        for message in consumer.consume(500, timeout=1.0):
            assert message.error() is None, message.error()
            values.append(message.value() or b"")
        return len(values) >= count

    try:
        wait_until(all_read, 60, 0, f"{count} records from {topic}")
    finally:
        consumer.close()
    return values


def test_dev_up_twice_status_round_trip_and_down_twice(tmp_path: Path, make_settings: MakeSettings) -> None:
    state_dir = tmp_path / "dev-state"
    first = _highway(state_dir, "dev", "up")
    try:
        assert first.returncode == 0, first.stderr
        exports = _exports(first.stdout)
        second = _highway(state_dir, "dev", "up")
        assert second.returncode == 0, second.stderr
        assert _exports(second.stdout) == exports, "a second `up` must reuse the running services"
        assert exports["HIGHWAY_LAKE_URI"] == "s3://highway/lake"
        assert exports["AWS_ACCESS_KEY_ID"] == "testing"

        status = _highway(state_dir, "dev", "status", "--json")
        assert status.returncode == 0, status.stderr
        services = {service["service"]: service for service in json.loads(status.stdout)}
        assert services["kafka"]["running"]
        assert services["s3"]["running"]
        assert services["kafka"]["bootstrap"] == exports["HIGHWAY_KAFKA_BOOTSTRAP"]
        assert Path(services["kafka"]["log"]).read_text().count("Kafka Server started") == 1

        bootstrap = exports["HIGHWAY_KAFKA_BOOTSTRAP"]
        topic = f"dev-up-{uuid.uuid4().hex[:8]}"
        KafkaAdmin(make_settings(kafka_bootstrap=bootstrap)).ensure_topics([topic], partitions=2)
        assert sorted(_round_trip(bootstrap, topic, 100)) == sorted(f"event-{i}".encode() for i in range(100))

        client = s3_client(exports["HIGHWAY_AWS_S3_ENDPOINT_URL"])
        client.put_object(Bucket="highway", Key="lake/hello.txt", Body=b"hello lake")
        assert client.get_object(Bucket="highway", Key="lake/hello.txt")["Body"].read() == b"hello lake"
    finally:
        down = _highway(state_dir, "dev", "down")
    assert down.returncode == 0, down.stderr
    again = _highway(state_dir, "dev", "down")
    assert again.returncode == 0, again.stderr
    assert "nothing was running" in again.stderr
    for service in services.values():
        marker = "kafka.Kafka" if service["service"] == "kafka" else "connectors.local.s3"
        assert marker not in process_cmdline(service["pid"]), f"{service['service']} still runs"
    assert not broker_answers(bootstrap, timeout_s=1.0)
    stopped = _highway(state_dir, "dev", "status", "--json")
    assert stopped.returncode == 3
    assert not any(service["running"] for service in json.loads(stopped.stdout))


def test_broker_restart_keeps_data_and_address(local_stack: LocalStack, make_settings: MakeSettings) -> None:
    if not local_stack.kafka.restartable:
        pytest.skip("the configured external broker (HIGHWAY_KAFKA_BOOTSTRAP) cannot be restarted")
    settings = make_settings()
    topic = settings.all_events_topic(settings.lanes[0])
    KafkaAdmin(settings).ensure_topics([topic])
    assert len(_round_trip(local_stack.bootstrap, topic, 500)) == 500
    bootstrap = local_stack.bootstrap
    pid = local_stack.kafka.describe()["pid"]

    local_stack.kafka.stop()
    assert not owned_pid_alive(pid, "kafka.Kafka")
    assert not broker_answers(bootstrap, timeout_s=1.0)
    local_stack.kafka.start()

    assert local_stack.bootstrap == bootstrap
    values = _consume(bootstrap, topic, 500)
    assert sorted(values) == sorted(f"event-{i}".encode() for i in range(500))


def test_s3_outage_keeps_objects_on_the_same_endpoint(
    local_stack: LocalStack, make_settings: MakeSettings
) -> None:
    if not local_stack.s3.restartable:
        pytest.skip("the configured external S3 endpoint (HIGHWAY_AWS_S3_ENDPOINT_URL) cannot be stopped")
    settings = make_settings()
    bucket = settings.lake_uri.removeprefix("s3://").split("/", 1)[0]
    endpoint = local_stack.s3_endpoint
    client = s3_client(endpoint)
    client.put_object(Bucket=bucket, Key="lake/before.bin", Body=b"x" * 2_000_000)

    local_stack.s3.stop()
    with pytest.raises(EndpointConnectionError):
        client.put_object(Bucket=bucket, Key="lake/during.bin", Body=b"y")
    local_stack.s3.start()

    assert local_stack.s3_endpoint == endpoint
    assert len(client.get_object(Bucket=bucket, Key="lake/before.bin")["Body"].read()) == 2_000_000


def test_make_settings_gives_each_call_its_own_lane_bucket_and_port(
    local_stack: LocalStack, make_settings: MakeSettings
) -> None:
    first, second = make_settings(), make_settings(realtime_window_s=10, realtime_sliding_window_s=30)
    assert first.lanes != second.lanes
    assert first.app_id != second.app_id
    assert first.lake_uri != second.lake_uri
    assert first.http_port != second.http_port
    assert second.realtime_window_s == 10
    assert first.topic_partitions == 3
    assert first.kafka_bootstrap == local_stack.bootstrap
    assert first.aws_s3_endpoint_url == local_stack.s3_endpoint
    buckets = {bucket["Name"] for bucket in s3_client(local_stack.s3_endpoint).list_buckets()["Buckets"]}
    for settings in (first, second):
        assert settings.lake_uri.removeprefix("s3://").split("/", 1)[0] in buckets


def test_worker_answers_health_and_stops_cleanly_on_sigterm(make_settings: MakeSettings) -> None:
    settings = make_settings()
    worker = WorkerProcess(settings).start()
    try:
        worker.wait_healthy(90)

        def every_stage_ok() -> dict[str, Any] | None:
            # Stages start "degraded" (starting, or a broker still electing leaders on a loaded machine).
            body: dict[str, Any] = httpx.get(f"{worker.base_url}/health", timeout=5).json()
            return body if body["status"] == "ok" else None

        health = wait_until(every_stage_ok, 90, 0.5, "every stage ok")
        assert health["roles"] == ["router", "lake", "realtime"]
        lane = settings.lanes[0]
        assert health["stages"] == {
            f"router-{lane}": {"status": "ok", "reason": None},
            "lake": {"status": "ok", "reason": None},
            "lake-maintenance": {"status": "ok", "reason": None},  # Iceberg upkeep (the default format)
            "realtime": {"status": "ok", "reason": None},
        }
        assert worker.proc is not None
        os.killpg(worker.proc.pid, signal.SIGTERM)
        assert worker.proc.wait(60) == 0
    finally:
        worker.kill()
    log = next((settings.state_dir / "logs").glob("worker-*.log")).read_text()
    assert "Traceback" not in log, log[-3000:]


def test_an_explicitly_configured_broker_is_used_and_never_stopped(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap=local_stack.bootstrap)
    stack = start_stack(settings, tmp_path / "stack")
    try:
        assert isinstance(stack.kafka, ExternalKafka)
        assert stack.bootstrap == local_stack.bootstrap
        assert stack.s3_endpoint != local_stack.s3_endpoint  # S3 was not configured: a local one
        assert not (tmp_path / "stack" / "kafka").exists()
    finally:
        stack.close()
    assert broker_answers(local_stack.bootstrap)
    with pytest.raises(InfrastructureError, match="does not answer"):
        ExternalKafka(f"127.0.0.1:{free_ports(1)[0]}", timeout_s=1.0).start()
