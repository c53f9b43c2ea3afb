"""Permanent vs transient storage/catalog faults: classification, the tracker behind /health, the
store's retry loop (slow for permanent faults, fail-fast for queries), the Glue guard, the metric."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
from prometheus_client import CollectorRegistry

from connectors.lake_fs import LakeStore
from connectors.storage_errors import GuardedCatalog, classify
from core.errors import TerminalError
from core.lake.faults import LOG_EVERY_S, Fault, FaultTracker
from core.lake.layout import PartitionValue
from core.lake.schema import TableSchema
from core.settings import Settings
from streams.lake_metrics import FaultCounts


def client_error(code: str, status: int, operation: str = "PutObject") -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, operation)


@pytest.mark.parametrize(
    ("exc", "kind", "code"),
    [
        (client_error("NoSuchBucket", 404), "permanent", "NoSuchBucket"),
        (client_error("AccessDenied", 403), "permanent", "AccessDenied"),
        (client_error("InvalidAccessKeyId", 403), "permanent", "InvalidAccessKeyId"),
        (client_error("SignatureDoesNotMatch", 403), "permanent", "SignatureDoesNotMatch"),
        (client_error("AccessDeniedException", 400, "CreateTable"), "permanent", "AccessDeniedException"),
        (client_error("EntityTooLarge", 400), "permanent", "EntityTooLarge"),
        (client_error("SlowDown", 503), "transient", "SlowDown"),
        (client_error("InternalError", 500), "transient", "InternalError"),
        (client_error("RequestTimeout", 400), "transient", "RequestTimeout"),
        (client_error("", 502), "transient", "502"),
        (EndpointConnectionError(endpoint_url="http://x"), "transient", "EndpointConnectionError"),
        (NoCredentialsError(), "permanent", "NoCredentials"),
        (OSError("AWS Error NO_SUCH_BUCKET during ListObjectsV2"), "permanent", "NoSuchBucket"),
        (OSError("AWS Error ACCESS_DENIED during PutObject"), "permanent", "AccessDenied"),
        (OSError("Connection refused"), "transient", "OSError"),
        (PermissionError(13, "Permission denied"), "permanent", "PermissionDenied"),
    ],
)
def test_errors_are_classified_with_a_fix(exc: BaseException, kind: str, code: str) -> None:
    fault = classify(exc, "s3://bucket/lake/key")
    assert (fault.kind, fault.code) == (kind, code)
    assert fault.where == "s3://bucket/lake/key"
    assert fault.fix
    if code == "NoSuchBucket":
        assert "create it" in fault.fix
    if code == "InvalidAccessKeyId":
        assert "HIGHWAY_AWS_ACCESS_KEY_ID" in fault.fix


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


PERMANENT = Fault("permanent", "NoSuchBucket", "s3://b/lake/k", "create it")
TRANSIENT = Fault("transient", "SlowDown", "s3://b/lake/k", "retried")


def test_a_permanent_fault_degrades_at_once_and_a_success_of_that_operation_clears_it() -> None:
    clock = Clock()
    tracker = FaultTracker(retry_s=30, clock=clock)
    assert tracker.reason() is None
    assert tracker.failed("storage", "put", PERMANENT)  # logged when it starts
    assert not tracker.failed("storage", "put", PERMANENT)  # ... not on every retry
    clock.now += LOG_EVERY_S
    assert tracker.failed("storage", "put", PERMANENT)  # ... but again while it lasts
    reason = tracker.reason()
    assert reason is not None
    assert "NoSuchBucket" in reason
    assert "s3://b/lake/k" in reason
    assert "create it" in reason
    assert "permanent" in reason
    assert tracker.permanent("storage")
    assert not tracker.permanent("catalog")
    assert tracker.succeeded("storage", "get") is None  # another operation working clears nothing
    assert tracker.reason() is not None
    assert tracker.succeeded("storage", "put") == PERMANENT
    assert tracker.reason() is None
    assert tracker.counts[("storage", "permanent")] == 3


def test_a_transient_fault_degrades_only_once_it_lasts() -> None:
    clock = Clock()
    tracker = FaultTracker(transient_after_s=15, clock=clock)
    assert not tracker.failed("storage", "put", TRANSIENT)  # transient faults are logged as warnings
    assert tracker.reason() is None
    clock.now += 15
    tracker.failed("storage", "put", TRANSIENT)
    reason = tracker.reason()
    assert reason is not None
    assert "transient" in reason
    assert "15s" in reason


def test_the_same_fault_on_several_operations_is_reported_once() -> None:
    tracker = FaultTracker(clock=Clock())
    tracker.failed("storage", "put", PERMANENT)
    tracker.failed("storage", "get", PERMANENT)
    tracker.failed("catalog", "table", Fault("permanent", "AccessDeniedException", "glue:db/t", "allow"))
    reason = tracker.reason()
    assert reason is not None
    assert reason.count("NoSuchBucket") == 1
    assert "storage get/put" in reason
    assert "AccessDeniedException" in reason


class FlakyS3:
    """A boto3 S3 client stand-in whose put_object raises the queued errors first."""

    def __init__(self, errors: list[BaseException]) -> None:
        self.errors = errors
        self.puts: list[str] = []

    def put_object(self, Bucket: str, Key: str, Body: bytes, **condition: str) -> dict[str, str]:
        if self.errors:
            raise self.errors.pop(0)
        self.puts.append(Key)
        return {"ETag": f'"{len(self.puts)}"'}


def s3_store(errors: list[BaseException], **kwargs: Any) -> tuple[LakeStore, FlakyS3]:
    settings = Settings(
        lake_uri="s3://bucket/lake", lake_error_retry_s=0.01, aws_s3_endpoint_url="http://x:1"
    )
    store = LakeStore(settings, **kwargs)
    fake = FlakyS3(errors)
    store._s3 = fake  # type: ignore[assignment]
    return store, fake


def test_the_store_retries_a_permanent_fault_until_it_is_fixed(caplog: pytest.LogCaptureFixture) -> None:
    denied: list[BaseException] = [client_error("NoSuchBucket", 404)] * 3
    store, fake = s3_store([*denied, client_error("SlowDown", 503)])
    store.put("t/a.parquet", b"x")
    assert fake.puts == ["lake/t/a.parquet"]
    assert store.retries == 4
    assert store.faults.counts == {("storage", "permanent"): 3, ("storage", "transient"): 1}
    assert store.faults.reason() is None  # the success ended the streak
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1  # once when it started, not on every retry
    assert "NoSuchBucket at s3://bucket/lake/t/a.parquet" in errors[0].getMessage()
    assert "create it" in errors[0].getMessage()


def test_every_storage_operation_is_one_word_in_its_error_line(caplog: pytest.LogCaptureFixture) -> None:
    # A manifest's conditional write can be the first call to meet a deleted bucket (seen in CI):
    # its ERROR line names the operation as one word, as /health and the other calls do.
    store, fake = s3_store([client_error("NoSuchBucket", 404)])
    assert store.put_if("t/_manifest.json", b"{}", None) == '"1"'
    assert fake.puts == ["lake/t/_manifest.json"]
    [error] = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert error.startswith("lake put_if: NoSuchBucket at s3://bucket/lake/t/_manifest.json: ")


def test_a_query_store_fails_fast_on_a_permanent_fault() -> None:
    store, fake = s3_store([client_error("AccessDenied", 403)], fail_on_permanent=True)
    with pytest.raises(TerminalError, match="AccessDenied at s3://bucket/lake/k"):
        store.put("k", b"x")
    assert fake.puts == []


class FailingCatalog:
    def __init__(self, error: BaseException | None) -> None:
        self.error = error
        self.forgotten: list[str] = []

    def ensure_table(self, lane: str, table: str, schema: TableSchema) -> None:
        if self.error is not None:
            raise self.error

    def ensure_partitions(self, lane: str, table: str, values: Any) -> None:
        list(values)

    def forget(self, lane: str, table: str) -> None:
        self.forgotten.append(table)


def test_glue_access_denied_is_recorded_logged_and_cleared(caplog: pytest.LogCaptureFixture) -> None:
    tracker = FaultTracker(retry_s=30)
    inner = FailingCatalog(client_error("AccessDeniedException", 400, "CreateTable"))
    catalog = GuardedCatalog(inner, tracker, "highway")
    with pytest.raises(ClientError):
        catalog.ensure_table("l", "t", TableSchema())
    assert tracker.permanent("catalog")
    reason = tracker.reason()
    assert reason is not None
    assert "AccessDeniedException at glue:highway/l_t" in reason
    assert any(r.levelname == "ERROR" and "glue:highway/l_t" in r.getMessage() for r in caplog.records)
    inner.error = None
    catalog.ensure_table("l", "t", TableSchema())
    catalog.ensure_partitions("l", "t", [PartitionValue("2026-01-01", "00")])
    assert tracker.reason() is None


def test_fault_counts_are_exported_by_source_and_kind() -> None:
    tracker = FaultTracker()
    registry = CollectorRegistry()
    registry.register(FaultCounts(tracker))
    tracker.failed("storage", "put", PERMANENT)
    tracker.failed("storage", "put", TRANSIENT)
    tracker.failed("storage", "get", TRANSIENT)

    def sample(source: str, kind: str) -> float | None:
        labels = {"source": source, "kind": kind}
        return registry.get_sample_value("highway_lake_storage_errors_total", labels)

    assert sample("storage", "permanent") == 1
    assert sample("storage", "transient") == 2
    assert sample("catalog", "permanent") == 0


def test_the_lake_stage_reports_faults_on_health_and_retries_a_denied_catalog_slowly() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from tests.unit.test_lake_handler import A0, assign, feed, handler_for
    from tests.unit.test_lake_protocol import World

    world = World()
    with ThreadPoolExecutor(2) as pool:
        handler, _ = handler_for(world, pool, max_rows=3)
        handler.faults = FaultTracker(retry_s=30)
        assert handler.degraded() is None
        denied = Fault("permanent", "AccessDeniedException", "glue:x", "allow")
        handler.faults.failed("catalog", "table", denied)
        reason = handler.degraded()
        assert reason is not None
        assert "AccessDeniedException" in reason
        assert handler._settle_retry_s() == 30
        handler.faults.succeeded("catalog", "table")
        assert handler._settle_retry_s() < 30
        assign(handler, A0)
        feed(handler, A0, range(3))
        handler.idle(None)  # type: ignore[arg-type]
        assert world.lake_offsets() == {A0: [0, 1, 2]}
