"""pyiceberg's file and catalog access, with the per-commit costs a flush of many tables cannot afford.

Profiled on a flush of 250 tables against moto (docs/lake.md "Where a flush's time goes"), pyiceberg
as shipped spends, per table commit:

* a new ``pyarrow.fs.S3FileSystem`` for every ``FileIO`` it creates — one to read the current
  metadata, one for the table, one for the staged table: 25 to 40 ms of CPU each. :class:`LakeFileIO`
  shares one filesystem per configuration (they are thread-safe) across every FileIO of the process;
* a multipart upload for every file it writes, however small (create, one part, complete: three
  requests where one ``PutObject`` does; pyarrow's ``allow_delayed_open`` uses a single PUT for a
  file that fits one part — measured 47 vs 18 ms per 20 KB file against moto). :class:`LakeFileIO`
  opens its S3 files that way; a failure surfaces when the file is closed, inside the same write;
* an existence probe (a HEAD) before every file it writes. Every path pyiceberg writes is new by
  construction (a UUID in data files, manifests and manifest lists; version and UUID in metadata
  files), so :class:`LakeFileIO` writes without it;
* a read and parse of the table's metadata JSON — which grows with every snapshot kept — to check
  the commit's requirements against the catalog's head, although that head is almost always the
  metadata this process wrote itself. A metadata file never changes once written, so
  :class:`LakeSqlCatalog` keeps each table's newest metadata by location and reads the file only
  when the catalog points elsewhere (another writer committed). The compare-and-swap on the
  metadata location in the catalog row is untouched: fencing does not depend on the cache;
* a HEAD for the length of every manifest it has just written, and a HEAD and a GET of the manifest
  list it wrote in the table's previous commit (a fast append carries the old manifests forward
  from it): three of a commit's seven requests. Avro metadata files never change once written
  either, so :class:`LakeFileIO` keeps the bytes of those it wrote (:class:`WrittenFiles`, newest
  first, within a byte budget) and answers their length and reads from memory. A file it did not
  write, or one pushed out of the budget, is read from storage as before.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import pyarrow as pa
from pyarrow.fs import FileSystem
from pyiceberg.catalog import Catalog
from pyiceberg.catalog.sql import IcebergTables, SqlCatalog
from pyiceberg.io import InputFile, OutputFile
from pyiceberg.io.pyarrow import PyArrowFile, PyArrowFileIO
from pyiceberg.table import CommitTableResponse, Table
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.update import TableRequirement, TableUpdate
from pyiceberg.typedef import EMPTY_DICT, Identifier, Properties

# pyiceberg logs "Loaded FileIO" at INFO for each FileIO a ``py-io-impl`` catalog creates: several per
# commit, thousands of lines a minute at hundreds of tables. Its warnings still come through.
logging.getLogger("pyiceberg.io").setLevel(logging.WARNING)
FILE_IO_IMPL = f"{__name__}.LakeFileIO"  # the catalog property ``py-io-impl`` names this class
FS_PREFIXES = ("s3.", "client.", "gcs.", "adls.", "hdfs.", "oss.", "hf.")
_filesystems: dict[tuple[Any, ...], FileSystem] = {}
_filesystems_lock = threading.Lock()


WRITTEN_BUDGET_BYTES = 64 << 20
"""Avro metadata kept in memory per process until :func:`connectors.iceberg_catalog.open_catalog`
sizes it from the lake's memory cap (``core.lake.flush.split_memory_cap``): at 250 tables, each
table's newest manifest list and manifests take a few hundred KiB at most; older entries leave
first."""


class WrittenFiles:
    """The bytes of the Avro metadata files (manifests, manifest lists) this process wrote, by location.

    They never change once written: every such path holds a UUID, so a location read back is the
    same bytes for as long as the file exists. Least recently used entries leave first once the total
    passes ``budget`` bytes; a deleted file leaves at once."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._files: OrderedDict[str, bytes] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()

    def resize(self, budget: int) -> None:
        """Keep at most ``budget`` bytes from now on, the least recently used leaving first."""
        with self._lock:
            self.budget = budget
            while self._total > budget:
                self._drop(next(iter(self._files)))

    @property
    def total_bytes(self) -> int:
        return self._total

    def put(self, location: str, data: bytes) -> None:
        if len(data) > self.budget:
            return
        with self._lock:
            self._drop(location)
            self._files[location] = data
            self._total += len(data)
            while self._total > self.budget:
                self._drop(next(iter(self._files)))

    def get(self, location: str) -> bytes | None:
        with self._lock:
            data = self._files.get(location)
            if data is not None:
                self._files.move_to_end(location)
            return data

    def forget(self, location: str) -> None:
        with self._lock:
            self._drop(location)

    def _drop(self, location: str) -> None:
        data = self._files.pop(location, None)
        if data is not None:
            self._total -= len(data)


written_files = WrittenFiles(WRITTEN_BUDGET_BYTES)


def _kept(location: str) -> bool:
    return location.endswith(".avro")


class _RecordingStream:
    """An output stream that keeps a copy of what it writes, remembered once the file is stored."""

    def __init__(self, stream: Any, location: str, files: WrittenFiles) -> None:
        self._stream = stream
        self._location = location
        self._files = files
        self._parts: list[bytes] = []
        self._position = 0

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        self._position += len(data)
        return int(self._stream.write(data))

    def tell(self) -> int:
        return self._position

    def close(self) -> None:
        closed = self._stream.closed
        self._stream.close()  # the single PUT happens here (allow_delayed_open): remember only after it
        if not closed:
            self._files.put(self._location, b"".join(self._parts))

    @property
    def closed(self) -> bool:
        return bool(self._stream.closed)

    def __enter__(self) -> _RecordingStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _NewFile(PyArrowFile):
    """A file at a path nobody wrote before: created without probing for it first; Avro metadata
    remembered in :data:`written_files` once stored, so its length needs no HEAD."""

    def create(self, overwrite: bool = False) -> Any:
        stream = super().create(overwrite=True)
        return _RecordingStream(stream, self.location, written_files) if _kept(self.location) else stream

    def __len__(self) -> int:
        data = written_files.get(self.location)
        return len(data) if data is not None else super().__len__()


class _WrittenFile(PyArrowFile):
    """A file this process wrote, read from the copy it kept."""

    def __init__(self, location: str, path: str, fs: FileSystem, data: bytes) -> None:
        super().__init__(location, path, fs)
        self._data = data

    def __len__(self) -> int:
        return len(self._data)

    def exists(self) -> bool:
        return True

    def open(self, seekable: bool = True) -> Any:
        return pa.BufferReader(self._data)


class LakeFileIO(PyArrowFileIO):
    """pyarrow FileIO sharing its filesystems process-wide and writing without existence probes."""

    def __init__(self, properties: Properties = EMPTY_DICT) -> None:
        super().__init__(properties)
        self.fs_by_scheme: Callable[[str, str | None], FileSystem] = self._shared_fs

    def _shared_fs(self, scheme: str, netloc: str | None = None) -> FileSystem:
        # Keyed on what configures a filesystem only: a table's FileIO also carries its table
        # properties (the column decisions among them), which differ per table and per schema change.
        key = (
            tuple(sorted(i for i in self.properties.items() if i[0].startswith(FS_PREFIXES))),
            scheme,
            netloc,
        )
        with _filesystems_lock:
            found = _filesystems.get(key)
            if found is None:
                found = _filesystems[key] = self._initialize_fs(scheme, netloc)
        return found

    def _initialize_s3_fs(self, netloc: str | None) -> FileSystem:
        built = super()._initialize_s3_fs(netloc)
        rebuild, (options,) = built.__reduce__()
        return rebuild({**options, "allow_delayed_open": True})

    def new_output(self, location: str) -> PyArrowFile:
        plain = super().new_output(location)
        return _NewFile(plain.location, plain._path, plain._filesystem, plain._buffer_size)

    def new_input(self, location: str) -> PyArrowFile:
        plain = super().new_input(location)
        data = written_files.get(plain.location) if _kept(plain.location) else None
        if data is None:
            return plain
        return _WrittenFile(plain.location, plain._path, plain._filesystem, data)

    def delete(self, location: str | InputFile | OutputFile) -> None:
        path = location if isinstance(location, str) else location.location
        written_files.forget(path)
        super().delete(location)

    def __setstate__(self, state: dict[str, Any]) -> None:  # a FileIO pickled to another process
        super().__setstate__(state)
        self.fs_by_scheme = self._shared_fs


class LakeSqlCatalog(SqlCatalog):
    """pyiceberg's SQL catalog, remembering each table's newest metadata by its (immutable) location."""

    def __init__(self, name: str, **properties: str) -> None:
        super().__init__(name, **properties)
        self._heads: dict[Identifier, tuple[str, TableMetadata]] = {}
        self._heads_lock = threading.Lock()

    def _convert_orm_to_iceberg(self, orm_table: IcebergTables) -> Table:
        location = orm_table.metadata_location
        identifier = (*Catalog.identifier_to_tuple(orm_table.table_namespace), orm_table.table_name)
        with self._heads_lock:
            known = self._heads.get(identifier)
        if not location or known is None or known[0] != location:
            return self._remember(super()._convert_orm_to_iceberg(orm_table))
        return Table(
            identifier=identifier,
            metadata=known[1],
            metadata_location=location,
            io=self._load_file_io(known[1].properties, location),
            catalog=self,
        )

    def commit_table(
        self, table: Table, requirements: tuple[TableRequirement, ...], updates: tuple[TableUpdate, ...]
    ) -> CommitTableResponse:
        response = super().commit_table(table, requirements, updates)
        with self._heads_lock:
            self._heads[table.name()] = (response.metadata_location, response.metadata)
        return response

    def _remember(self, table: Table) -> Table:
        with self._heads_lock:
            self._heads[table.name()] = (table.metadata_location, table.metadata)
        return table
