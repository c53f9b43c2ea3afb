"""What the lake's commit path needs from the outside world, as small Protocols.

``core.lake.commit`` is written against these (and :class:`core.ports.OffsetStore`); the real
implementations are ``connectors.lake_fs.LakeStore`` (S3 or a local directory) and
``connectors.glue.Catalog``, which satisfy them structurally. Unit tests pass in-memory fakes that
fail at chosen steps.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from core.lake.layout import PartitionValue
from core.lake.schema import TableSchema


class PreconditionFailed(Exception):
    """A conditional write was refused: the object is not (or no longer) at the version the writer
    expected — another writer changed it (S3's 412)."""


class ObjectStore(Protocol):
    """Objects under the lake root, by key. Each ``put`` is atomic: an object appears whole or not at
    all. Implementations retry transient failures themselves; what they raise is a real failure."""

    def put(self, key: str, data: bytes) -> None: ...

    def get_tagged(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and version tag (S3: its ETag), or None when it does not exist."""
        ...

    def put_if(self, key: str, data: bytes, tag: str | None) -> str:
        """Write only if the object is still at version ``tag`` (None: only if it does not exist),
        atomically with the check; the new tag. Raises :class:`PreconditionFailed` otherwise."""
        ...

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""
        ...

    def list_keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (recursive; empty when there is none)."""
        ...

    def delete(self, key: str) -> None: ...


class Catalog(Protocol):
    """Table metadata for query engines (Glue/Athena). Idempotent; may cache what it registered."""

    def ensure_table(self, lane: str, table: str, schema: TableSchema) -> None: ...

    def ensure_partitions(self, lane: str, table: str, values: Iterable[PartitionValue]) -> None: ...

    def forget(self, lane: str, table: str) -> None:
        """Drop what is cached for the table, so the next registration talks to the catalog again."""
        ...
