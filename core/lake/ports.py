"""What the lake's commit path needs from the outside world, as small Protocols.

``core.lake.commit`` is written against these (and :class:`core.ports.OffsetStore`); the real
implementations are ``connectors.lake_fs.LakeStore`` (S3 or a local directory) and
``connectors.glue.Catalog``, which satisfy them structurally. Unit tests pass in-memory fakes that
fail at chosen steps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from core.lake.columnar import FlushBatch
from core.lake.layout import PartitionValue
from core.lake.schema import TableSchema
from core.ports import OffsetStore

if TYPE_CHECKING:  # commit.py implements LakeCommitPath and imports this module
    from core.lake.commit import FlushResult, Recovery
    from core.lake.flush import PartitionBuffer
    from core.lake.manifest import Manifest

TP = tuple[str, int]


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


class LakeCommitPath(Protocol):
    """The lake's commit path as ``streams.lake`` drives it — one interface, two implementations:
    ``core.lake.commit.LakeCommitter`` (``lake_format=parquet``: files + manifests) and
    ``core.lake.iceberg_commit.IcebergCommitter`` (``lake_format=iceberg``: table snapshots)."""

    @property
    def manifests(self) -> Mapping[TP, Manifest]:
        """Per assigned partition, what is in the lake (``committed_offset``: the last offset)."""
        ...

    @property
    def unsettled(self) -> bool:
        """Something (catalog, Kafka offsets) waits for :meth:`settle`."""
        ...

    def recover(self, partitions: Sequence[TP]) -> Mapping[TP, Recovery]:
        """Take over newly assigned partitions; where reading resumes for each."""
        ...

    def release(self, partitions: Iterable[TP]) -> None:
        """Partitions now read elsewhere: forget them."""
        ...

    def flush(self, buffers: Iterable[PartitionBuffer], offsets: OffsetStore) -> FlushResult:
        """Commit the buffers' rows; a buffer is emptied once its rows are in the lake."""
        ...

    def settle(self, offsets: OffsetStore) -> str | None:
        """Retry what a flush left pending; the step that still fails, or None."""
        ...

    def take_fenced(self) -> dict[TP, int | None]:
        """Partitions found owned by another writer since the last call, each with where reading
        must resume (None: the beginning); their buffers were dropped."""
        ...


@dataclass(frozen=True)
class TableAppend:
    """The outcome of one table's commit: committed, or refused because partitions were fenced."""

    fenced: tuple[str, ...] = ()
    files: int = 0
    bytes: int = 0

    @property
    def committed(self) -> bool:
        return not self.fenced


class SnapshotTables(Protocol):
    """Tables whose snapshots carry the Kafka offsets (``core.lake.offsets``): the Iceberg lake as
    the commit path needs it (``connectors.iceberg_lake.IcebergLake``)."""

    def head_offsets(self, lane: str, table: str) -> dict[str, int]:
        """The offset map of the table's newest snapshot that has one; empty when none (or no table)."""
        ...

    def append(
        self,
        lane: str,
        table: str,
        batch: FlushBatch,
        expected: Mapping[str, int | None],
        written: Mapping[str, int],
    ) -> TableAppend:
        """Write the batch's rows and commit them in one snapshot whose offset map is the head's moved to
        ``written`` — only if the head's offsets of ``expected``'s partitions still equal it
        (checked on a fresh head right before each commit attempt); else commit nothing."""
        ...
