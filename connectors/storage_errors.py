"""Which S3, Glue and filesystem errors are permanent, and what fixes them.

:func:`classify` turns an exception of boto3, pyarrow's filesystem or the local filesystem into a
:class:`core.lake.faults.Fault`. Permanent: a missing bucket, denied access, an unknown access key,
a secret that does not match, missing credentials, any other 4xx rejection. Transient: 5xx,
throttling, timeouts, connection errors, an endpoint that is down — everything that may pass by
itself. :class:`GuardedCatalog` records the catalog's faults the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

from core.lake.faults import Fault, FaultTracker, Kind
from core.lake.layout import PartitionValue
from core.lake.ports import Catalog
from core.lake.schema import TableSchema

log = logging.getLogger(__name__)

_CREDENTIALS = "fix HIGHWAY_AWS_ACCESS_KEY_ID/HIGHWAY_AWS_SECRET_ACCESS_KEY (or the default credential chain)"
_FIXES = {
    "NoSuchBucket": "the bucket does not exist: create it, or fix HIGHWAY_LAKE_URI",
    "AccessDenied": "access denied: allow s3:GetObject/PutObject/DeleteObject/ListBucket on the lake "
    "prefix for these credentials, or " + _CREDENTIALS,
    "AllAccessDisabled": "all access to the bucket is disabled: re-enable it, or fix HIGHWAY_LAKE_URI",
    "InvalidAccessKeyId": "the access key is unknown: " + _CREDENTIALS,
    "SignatureDoesNotMatch": "the secret key does not match the access key: " + _CREDENTIALS,
    "InvalidBucketName": "the bucket name is invalid: fix HIGHWAY_LAKE_URI",
    "ExpiredToken": "the session token expired: refresh the credentials",
    "InvalidToken": "the session token is invalid: " + _CREDENTIALS,
    "RequestTimeTooSkewed": "this machine's clock is off by more than 15 minutes: sync it (NTP)",
    "NoCredentials": "no AWS credentials found: " + _CREDENTIALS,
    "PermissionDenied": "the lake directory is not writable by this process: fix its permissions",
    # Glue
    "AccessDeniedException": "Glue access denied: allow glue:CreateDatabase/CreateTable/UpdateTable/"
    "BatchCreatePartition on the database for these credentials, or " + _CREDENTIALS,
    "UnrecognizedClientException": "the access key is unknown to Glue: " + _CREDENTIALS,
    "InvalidSignatureException": "the secret key does not match the access key: " + _CREDENTIALS,
    "ExpiredTokenException": "the session token expired: refresh the credentials",
}
_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestLimitExceeded",
    "OperationAborted",
    "ConditionalRequestConflict",  # S3 asks to retry a conflicting conditional write
    "ConcurrentModificationException",
    "InternalError",
    "ServiceUnavailable",
}
# pyarrow's S3 filesystem raises OSError whose text carries AWS's error name in upper snake case.
_PYARROW_CODES = {
    "NO_SUCH_BUCKET": "NoSuchBucket",
    "ACCESS_DENIED": "AccessDenied",
    "INVALID_ACCESS_KEY_ID": "InvalidAccessKeyId",
    "SIGNATURE_DOES_NOT_MATCH": "SignatureDoesNotMatch",
}


def classify(exc: BaseException, where: str) -> Fault:
    """The fault ``exc`` is, at ``where`` (an s3:// URL or a path)."""
    if isinstance(exc, ClientError):
        return _client_error(exc, where)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return _fault("permanent", "NoCredentials", where, exc)
    if isinstance(exc, PermissionError):
        return _fault("permanent", "PermissionDenied", where, exc)
    if isinstance(exc, OSError):
        text = str(exc)
        for marker, code in _PYARROW_CODES.items():
            if marker in text:
                return _fault("permanent", code, where, exc)
    return _fault("transient", type(exc).__name__, where, exc)


def _client_error(exc: ClientError, where: str) -> Fault:
    error: dict[str, Any] = dict(exc.response.get("Error", {}))
    code = str(error.get("Code") or "")
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if code in _FIXES:
        return _fault("permanent", code, where, exc)
    if code in _TRANSIENT_CODES or status >= 500 or status in (0, 429):
        return _fault("transient", code or str(status), where, exc)
    # Any other rejection (4xx) repeats identically on every retry: an operator has to look.
    return _fault("permanent", code or str(status), where, exc)


def _fault(kind: Kind, code: str, where: str, exc: BaseException) -> Fault:
    default = "retried with backoff until it passes" if kind == "transient" else "rejected: see the detail"
    fix = _FIXES.get(code) or default
    return Fault(kind, code, where, fix, str(exc))


class GuardedCatalog:
    """A :class:`core.lake.ports.Catalog` whose failures are classified, counted and logged (a
    permanent one at ERROR, naming the table and the fix), and whose successes end the streak."""

    def __init__(self, inner: Catalog, faults: FaultTracker, database: str) -> None:
        self.inner = inner
        self.faults = faults
        self.database = database

    def ensure_table(self, lane: str, table: str, schema: TableSchema) -> None:
        self._guard("table", lane, table, lambda: self.inner.ensure_table(lane, table, schema))

    def ensure_partitions(self, lane: str, table: str, values: Iterable[PartitionValue]) -> None:
        chosen = list(values)
        self._guard("partitions", lane, table, lambda: self.inner.ensure_partitions(lane, table, chosen))

    def forget(self, lane: str, table: str) -> None:
        self.inner.forget(lane, table)

    def _guard(self, operation: str, lane: str, table: str, call: Any) -> None:
        try:
            call()
        except Exception as exc:
            fault = classify(exc, f"glue:{self.database}/{lane}_{table}")
            if self.faults.failed("catalog", operation, fault):
                log.error("lake catalog: %s — %s (offsets wait; retried)", fault.describe(), fault.detail)
            raise
        ended = self.faults.succeeded("catalog", operation)
        if ended is not None:
            log.info("lake catalog: %s works again (was %s)", operation, ended.code)
