"""The lake's storage edge: bytes in and out of ``s3://bucket/prefix`` or ``file:///path`` by URL.

Keys are relative to the lake root. Writes are atomic per object: on S3 an object appears whole
when its upload completes; on a local filesystem a file is written under a temporary name and
renamed. Conditional writes (``put_if``, the manifests' compare-and-swap) are S3's ``If-Match`` /
``If-None-Match: *``; on a local filesystem the check and the rename happen under an exclusive
``flock`` on a lock file next to the object, so they fence writers on one host's filesystem (not
across hosts sharing a network filesystem whose locks are not reliable). Every call retries
transient failures (5xx, SlowDown, connection refused/reset, an endpoint that is down) with capped
exponential backoff for as long as ``should_stop`` says no — the caller blocks (and so stops
consuming) instead of failing or dropping data. Permanent failures (a
missing bucket, denied access, wrong keys: :mod:`connectors.storage_errors`) are logged at ERROR
with the fix, recorded in the :class:`core.lake.faults.FaultTracker` (``/health`` degraded) and
retried every ``retry_s`` — or raised at once with ``fail_on_permanent`` (``highway query``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import TypeVar
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from botocore.exceptions import BotoCoreError, ClientError

from connectors.aws import s3_client, s3_filesystem
from connectors.storage_errors import classify
from core.errors import TerminalError, TransientError
from core.lake.encode import arrow_schema
from core.lake.faults import Fault, FaultTracker
from core.lake.layout import schema_key, table_prefix
from core.lake.ports import PreconditionFailed
from core.lake.schema import TableSchema
from core.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _local_tag(data: bytes) -> str:
    return f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'


def filesystem_for(settings: Settings, uri: str | None = None) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the root path inside it for ``uri`` (default: the lake URI)."""
    uri = uri or settings.lake_uri
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        root = os.path.abspath(parsed.netloc + parsed.path) if parsed.netloc == "." else parsed.path
        return pafs.LocalFileSystem(), root.rstrip("/")
    if parsed.scheme != "s3":
        raise ValueError(f"lake URI {uri!r}: scheme must be s3:// or file://")
    return s3_filesystem(settings), f"{parsed.netloc}{parsed.path}".rstrip("/")


def safe_key(key: str) -> str:
    """``key`` when it stays under the lake root; ValueError for a ``.``/``..`` segment, an empty one
    (``//``, a leading ``/``) or a backslash — on a ``file://`` lake such a key would name another
    directory (table names come from the router's grammar, so this only stops a bug or a rogue topic)."""
    segments = key.split("/")
    if segments and segments[-1] == "":
        segments.pop()  # a prefix may end with "/"
    if "\\" in key or any(segment in ("", ".", "..") for segment in segments):
        raise ValueError(f"lake key {key!r} has a '.', '..' or empty segment or a backslash")
    return key


class LakeStore:
    """Object access under the lake root, with retry-until-stopped for transient errors."""

    def __init__(
        self,
        settings: Settings,
        should_stop: Callable[[], bool] = lambda: False,
        max_backoff_s: float = 5.0,
        faults: FaultTracker | None = None,
        fail_on_permanent: bool = False,
    ) -> None:
        self.fs, self.root = filesystem_for(settings)
        self.uri = settings.lake_uri
        self._local = isinstance(self.fs, pafs.LocalFileSystem)
        # Object calls go through boto3 (one request each, clear error codes); pyarrow's
        # filesystem serves dataset reads.
        self._s3 = None if self._local else s3_client(settings)
        self._bucket, _, self._prefix = self.root.partition("/")
        self._should_stop = should_stop
        self._max_backoff_s = max_backoff_s
        self.faults = faults or FaultTracker(retry_s=settings.lake_error_retry_s)
        self._fail_on_permanent = fail_on_permanent
        self.retries = 0

    def path(self, key: str) -> str:
        return f"{self.root}/{safe_key(key)}"

    def _object(self, key: str) -> str:
        return f"{self._prefix}/{key}" if self._prefix else key

    def url(self, key: str) -> str:
        return f"{self.uri}/{key}"

    def retrying(self, what: str, call: Callable[[], T]) -> T:
        """``call()`` with the store's retries and fault records, for a read the store does not make
        itself (an Iceberg table's metadata, manifests and data files through pyiceberg); ``what`` is
        ``"<operation> <key>"``."""
        return self._retry(what, call)

    def _retry(self, what: str, call: Callable[[], T]) -> T:
        delay = 0.2
        operation, _, key = what.partition(" ")  # one word: log lines and /health name it
        while True:
            try:
                result = call()
            except (OSError, TransientError, BotoCoreError, ClientError) as exc:
                if isinstance(exc, FileNotFoundError):
                    raise
                delay = self._after_failure(operation, key, exc, delay)
                continue
            if self.faults.succeeded("storage", operation) is not None:
                log.info("lake %s works again", operation)
            return result

    def _after_failure(self, operation: str, key: str, exc: BaseException, delay: float) -> float:
        """Record and log one failed call, wait, and return the next delay; raise at shutdown (or
        on a permanent fault with ``fail_on_permanent``)."""
        fault = classify(exc, self.url(key))
        if self._should_stop():
            raise TransientError(f"lake {operation} {key}: gave up at shutdown: {exc}") from exc
        self.retries += 1
        if fault.kind == "permanent":
            return self._permanent(operation, fault, exc)
        self.faults.failed("storage", operation, fault)
        log.warning("lake %s %s failed (%s); retrying in %.1fs", operation, key, exc, delay)
        self._sleep(delay)
        return min(delay * 2, self._max_backoff_s)

    def _permanent(self, operation: str, fault: Fault, exc: BaseException) -> float:
        if self._fail_on_permanent:
            raise TerminalError(f"lake {operation}: {fault.describe()}") from exc
        if self.faults.failed("storage", operation, fault):
            log.error(
                "lake %s: %s — consumption paused, nothing is committed; retried every %.0fs (%s)",
                operation,
                fault.describe(),
                self.faults.retry_s,
                fault.detail,
            )
        self._sleep(self.faults.retry_s)
        return 0.2  # once it passes, a new transient streak starts from a short backoff

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._should_stop() and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.25))

    def put(self, key: str, data: bytes) -> None:
        path = self.path(key)

        def write() -> None:
            if self._s3 is not None:
                self._s3.put_object(Bucket=self._bucket, Key=self._object(key), Body=data)
                return
            self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
            temporary = f"{path}.tmp-{os.getpid()}"
            with self.fs.open_output_stream(temporary) as out:
                out.write(data)
            self.fs.move(temporary, path)

        self._retry(f"put {key}", write)

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""
        found = self.get_tagged(key)
        return None if found is None else found[0]

    def get_tagged(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and version tag (its ETag), or None when it does not exist."""

        def read() -> tuple[bytes, str] | None:
            if self._s3 is not None:
                try:
                    response = self._s3.get_object(Bucket=self._bucket, Key=self._object(key))
                    return bytes(response["Body"].read()), str(response["ETag"])
                except ClientError as exc:
                    if _error_code(exc) in ("NoSuchKey", "404"):
                        return None
                    raise
            try:
                with self.fs.open_input_stream(self.path(key)) as stream:
                    data = bytes(stream.read())
                return data, _local_tag(data)
            except FileNotFoundError:
                return None

        return self._retry(f"get {key}", read)

    def put_if(self, key: str, data: bytes, tag: str | None) -> str:
        """Write ``key`` only if it is still at version ``tag`` (None: only if it does not exist);
        the new tag. :class:`PreconditionFailed` when another write got there first."""

        def write() -> str:
            if self._s3 is None:
                return self._local_put_if(key, data, tag)
            bucket, name = self._bucket, self._object(key)
            try:
                if tag is None:
                    response = self._s3.put_object(Bucket=bucket, Key=name, Body=data, IfNoneMatch="*")
                else:
                    response = self._s3.put_object(Bucket=bucket, Key=name, Body=data, IfMatch=tag)
            except ClientError as exc:
                # If-Match on an object that is gone answers NoSuchKey: not the version expected
                # either. S3's 409 (a concurrent conditional write) is retried: the condition is
                # checked again.
                if _error_code(exc) in ("PreconditionFailed", "412", "NoSuchKey"):
                    raise PreconditionFailed(f"{key}: {exc}") from exc
                raise
            return str(response["ETag"])

        return self._retry(f"put_if {key}", write)

    def _local_put_if(self, key: str, data: bytes, tag: str | None) -> str:
        path = self.path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(f"{path}.lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # held until the file closes: check and rename are one step
            try:
                with open(path, "rb") as current:
                    current_tag: str | None = _local_tag(current.read())
            except FileNotFoundError:
                current_tag = None
            if current_tag != tag:
                raise PreconditionFailed(f"{key}: at version {current_tag}, expected {tag}")
            temporary = f"{path}.tmp-{os.getpid()}"
            with open(temporary, "wb") as out:
                out.write(data)
            os.replace(temporary, path)
        return _local_tag(data)

    def list_keys(self, prefix: str) -> list[str]:
        """Keys of every object under ``prefix`` (recursive; empty when the prefix does not exist).
        A prefix not ending in ``/`` matches the start of a name, as on S3."""
        directory = prefix if prefix.endswith("/") else prefix.rpartition("/")[0]
        base = self.path(directory).rstrip("/")

        def listing() -> list[str]:
            if self._s3 is not None:
                start = len(self._prefix) + 1 if self._prefix else 0
                pages = self._s3.get_paginator("list_objects_v2").paginate(
                    Bucket=self._bucket, Prefix=self._object(prefix)
                )
                return sorted(item["Key"][start:] for page in pages for item in page.get("Contents", []))
            selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
            infos = self.fs.get_file_info(selector)
            start = len(self.root) + 1
            keys = (info.path[start:] for info in infos if info.type == pafs.FileType.File)
            return sorted(key for key in keys if key.startswith(prefix) and not key.endswith(".lock"))

        return self._retry(f"list {prefix}", listing)

    def delete(self, key: str) -> None:
        def remove() -> None:
            if self._s3 is not None:
                self._s3.delete_object(Bucket=self._bucket, Key=self._object(key))
                return
            with contextlib.suppress(FileNotFoundError):
                self.fs.delete_file(self.path(key))

        self._retry(f"delete {key}", remove)

    def read_columns(self, prefix: str, columns: list[str], skip: Sequence[str] = ()) -> pa.Table:
        """``columns`` of every Parquet file under ``prefix`` but those under a ``skip`` prefix (an
        empty table when there are none)."""
        paths = [
            self.path(key)
            for key in self.list_keys(prefix)
            if key.endswith(".parquet") and not key.startswith(tuple(skip))
        ]
        if not paths:
            return pa.table({name: pa.array([], pa.string()) for name in columns})
        dataset = ds.dataset(paths, filesystem=self.fs, format="parquet")
        return self._retry(f"read {prefix}", lambda: dataset.to_table(columns=columns))

    def table_dataset(self, lane: str, table: str) -> ds.Dataset:
        """One lake table as a pyarrow dataset, read with the table's current (widest) schema so
        files written before a column widened are cast on read; ``dt``/``hour`` from the path."""
        stored = self.get(schema_key(lane, table))
        schema = arrow_schema(TableSchema.from_bytes(stored) if stored else TableSchema())
        paths = [
            self.path(k) for k in self.list_keys(f"{table_prefix(lane, table)}/") if k.endswith(".parquet")
        ]
        partitioning = ds.partitioning(pa.schema([("dt", pa.string()), ("hour", pa.string())]), flavor="hive")
        full = schema.append(pa.field("dt", pa.string())).append(pa.field("hour", pa.string()))
        return ds.dataset(
            paths,
            schema=full,
            filesystem=self.fs,
            format="parquet",
            partitioning=partitioning,
            partition_base_dir=self.path(table_prefix(lane, table)),
        )

    def total_bytes(self, prefix: str, suffix: str = "") -> int:
        """Sum of the sizes of the objects under ``prefix`` whose key ends with ``suffix``."""
        if self._s3 is not None:
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=self._object(prefix)
            )
            return sum(
                int(item["Size"])
                for page in pages
                for item in page.get("Contents", [])
                if item["Key"].endswith(suffix)
            )
        selector = pafs.FileSelector(self.path(prefix).rstrip("/"), recursive=True, allow_not_found=True)
        return sum(info.size or 0 for info in self.fs.get_file_info(selector) if info.path.endswith(suffix))

    def sizes(self, prefix: str) -> dict[str, int]:
        """Key → size in bytes of every object under ``prefix`` (``highway query --tables``)."""
        if self._s3 is None:
            selector = pafs.FileSelector(self.path(prefix).rstrip("/"), recursive=True, allow_not_found=True)
            start = len(self.root) + 1

            def local() -> dict[str, int]:
                infos = self.fs.get_file_info(selector)
                return {i.path[start:]: i.size or 0 for i in infos if i.type == pafs.FileType.File}

            return self._retry(f"list {prefix}", local)
        begin = len(self._prefix) + 1 if self._prefix else 0
        s3, bucket, key = self._s3, self._bucket, self._object(prefix)

        def listing() -> dict[str, int]:
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key)
            return {
                item["Key"][begin:]: int(item["Size"]) for page in pages for item in page.get("Contents", [])
            }

        return self._retry(f"list {prefix}", listing)
