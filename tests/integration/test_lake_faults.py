"""A permanent S3 fault under a running lake worker: the bucket disappears mid-stream.

``/health`` must say degraded with the reason (not a silent retry loop), the fault must be counted
as permanent, the group's offsets must not move while it lasts — and once the bucket is back the
worker recovers unattended, with every event exactly once in the lake.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from connectors.aws import create_client
from connectors.local.stack import LocalStack
from core.settings import Settings
from tests.conftest import MakeSettings
from tests.integration.test_lake import LAKE_SETTINGS, BackgroundTraffic, lake_state, wait_for_lake
from tests.support import WorkerProcess, health, wait_until

pytestmark = pytest.mark.integration


def s3(settings: Settings, stack: LocalStack) -> Any:
    return create_client(
        "s3", settings.aws_s3_endpoint_url, settings.aws_region, stack.access_key_id, stack.secret_access_key
    )


def take_bucket_away(client: Any, bucket: str, aside: str) -> None:
    """Move every object to ``aside`` and delete the bucket; the worker may write meanwhile, so
    repeat until the deletion finds the bucket empty."""
    client.create_bucket(Bucket=aside)
    while True:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                try:
                    client.copy_object(
                        Bucket=aside, Key=item["Key"], CopySource={"Bucket": bucket, "Key": item["Key"]}
                    )
                except ClientError as exc:  # the worker deleted it since the listing (a replaced file)
                    if exc.response["Error"]["Code"] != "NoSuchKey":
                        raise
                    continue
                client.delete_object(Bucket=bucket, Key=item["Key"])
        try:
            client.delete_bucket(Bucket=bucket)
            return
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "BucketNotEmpty":
                raise


def bring_bucket_back(client: Any, bucket: str, aside: str) -> None:
    """Recreate the bucket and put the objects back — only where the worker, retrying, has not
    written a newer version first (``If-None-Match: *``: the object must not exist yet)."""
    client.create_bucket(Bucket=bucket)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=aside):
        for item in page.get("Contents", []):
            body = client.get_object(Bucket=aside, Key=item["Key"])["Body"].read()
            try:
                client.put_object(Bucket=bucket, Key=item["Key"], Body=body, IfNoneMatch="*")
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "PreconditionFailed":
                    raise


def metric(worker: WorkerProcess, name: str, **labels: str) -> float:
    text = httpx.get(f"{worker.base_url}/metrics", timeout=5).text
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    match = re.search(rf"^{name}\{{{wanted}\}} ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def committed(settings: Settings) -> dict[tuple[str, int], int]:
    from confluent_kafka import Consumer, TopicPartition

    from connectors.kafka_admin import KafkaAdmin
    from connectors.kafka_config import confluent_config
    from streams.lake_config import lake_group_id

    admin = KafkaAdmin(settings)
    topics = admin.list_topics(settings.event_topic_pattern(settings.lanes[0]))
    partitions = [TopicPartition(topic, p) for topic in topics for p in admin.end_offsets(topic)]
    consumer = Consumer(confluent_config(settings, **{"group.id": lake_group_id(settings)}))
    try:
        return {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(partitions, timeout=10)}
    finally:
        consumer.close()


def test_a_deleted_bucket_degrades_health_and_recovers_exactly_once_when_it_is_back(
    make_settings: MakeSettings, local_stack: LocalStack
) -> None:
    # The parquet format: its store classifies each S3 call (Iceberg's flush errors: the outage test).
    settings = make_settings(**{**LAKE_SETTINGS, "lake_error_retry_s": 1.0, "lake_format": "parquet"})
    bucket = settings.lake_uri.removeprefix("s3://").split("/", 1)[0]
    client = s3(settings, local_stack)
    labels = {"source": "storage", "kind": "permanent"}
    with WorkerProcess(settings, roles="lake") as worker, BackgroundTraffic(settings, 10) as traffic:
        worker.wait_healthy()
        wait_until(lambda: lake_state(worker)["rows"] > 0, 60, 0.5, "a first flush")
        take_bucket_away(client, bucket, f"{bucket}-aside")

        def degraded() -> str | None:
            status, body = health(worker)
            lake = body.get("stages", {}).get("lake", {})
            return lake.get("reason") if status == 200 and lake.get("status") == "degraded" else None

        reason = wait_until(degraded, 60, 0.5, "/health degraded by the missing bucket")
        assert "NoSuchBucket" in reason
        assert f"s3://{bucket}/lake/" in reason
        assert "create it" in reason
        # Retried slowly, counted as permanent — and the group's offsets stay where they were.
        before = committed(settings)
        seen = metric(worker, "highway_lake_storage_errors_total", **labels)
        wait_until(
            lambda: metric(worker, "highway_lake_storage_errors_total", **labels) >= seen + 3,
            60,
            0.5,
            "three more retries",
        )
        assert committed(settings) == before
        assert worker.alive()
        # /metrics says what /health says, as a number an alert compares (1 = degraded).
        assert metric(worker, "highway_stage_state", stage="lake") == 1
        bring_bucket_back(client, bucket, f"{bucket}-aside")
        wait_until(lambda: health(worker)[1].get("status") == "ok", 60, 0.5, "/health ok again")
        wait_until(lambda: metric(worker, "highway_stage_state", stage="lake") == 0, 30, 0.5, "state 0")
        produced = traffic.stop()
        report = wait_for_lake(settings, produced, timeout_s=120)
        assert worker.alive()
    assert report.ok, report
    assert report.found == produced.total
    log = "".join(path.read_text() for path in worker.log_dir.glob("*.log"))
    assert re.search(r"\[ERROR\] lake \w+: NoSuchBucket at s3://", log), "no ERROR line naming the bucket"
