"""The Iceberg catalog of the lake, and its tables' names, schemas and partition spec.

``lake_format = "iceberg"``: one Iceberg table per event type, ``<namespace>.<table>`` with one
namespace per lane, located at ``<lake>/<lane>/<table>`` (data files under ``data/dt=…/hour=…/``,
metadata under ``metadata/``), identity-partitioned on the string columns ``dt`` and ``hour``.

The catalog is pyiceberg's SQL catalog on a SQLite file by default (nothing to run;
``Settings.iceberg_catalog_path``), or AWS Glue with ``lake_catalog = "glue"`` (the namespace is the
Glue database ``<lake_glue_database>_<lane>``; Athena, Trino and Spark read the tables from there).
Both compare-and-swap the table's metadata location on commit, which is what fencing builds on
(``connectors.iceberg_lake``).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlalchemy.exc
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import (
    BooleanType,
    DoubleType,
    FloatType,
    IcebergType,
    IntegerType,
    LongType,
    NestedField,
    StringType,
    TimestamptzType,
)

from connectors.iceberg_io import FILE_IO_IMPL, LakeSqlCatalog, written_files
from core.envelope import STRING_FIELDS
from core.lake.encode import ERROR, EXTRA, RAW
from core.lake.flush import split_memory_cap
from core.lake.records import ENVELOPE_TIMES
from core.lake.schema import BOOL, DOUBLE, INT, PROPERTY_PREFIX, STRING
from core.settings import Settings

log = logging.getLogger(__name__)

PARTITION_COLUMNS = ("dt", "hour")
SQLITE_BUSY_TIMEOUT_S = 60.0
ICEBERG_TYPES: dict[str, IcebergType] = {
    BOOL: BooleanType(),
    INT: LongType(),
    DOUBLE: DoubleType(),
    STRING: StringType(),
}
# Our commits fence themselves and retry on a fresh head (connectors.iceberg_lake); pyiceberg's own
# retry would rebase the same snapshot, offsets included, onto whatever another writer committed.
TABLE_PROPERTIES = {
    "commit.retry.num-retries": "0",
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "20",
}


def lake_root(settings: Settings) -> str:
    """The lake URI as Iceberg locations need it (absolute for ``file://``)."""
    uri = settings.lake_uri
    if uri.startswith("file://"):
        return "file://" + os.path.abspath(uri.removeprefix("file://"))
    return uri


def io_properties(settings: Settings) -> dict[str, str]:
    """pyiceberg FileIO properties: the S3 endpoint and credentials of the settings."""
    properties = {"s3.region": settings.aws_region}
    if settings.aws_s3_endpoint_url:
        properties["s3.endpoint"] = settings.aws_s3_endpoint_url
    if settings.aws_access_key_id and settings.aws_secret_access_key:
        properties["s3.access-key-id"] = settings.aws_access_key_id.get_secret_value()
        properties["s3.secret-access-key"] = settings.aws_secret_access_key.get_secret_value()
    return properties


def catalog_path(settings: Settings) -> Path:
    """The embedded catalog's SQLite file: ``lake_iceberg_catalog_path``, else inside a ``file://``
    lake's root (it travels with the lake), else ``<state_dir>/iceberg_catalog.db``."""
    if settings.lake_iceberg_catalog_path is not None:
        return settings.lake_iceberg_catalog_path
    if settings.lake_uri.startswith("file://"):
        return Path(settings.lake_uri.removeprefix("file://")) / "_iceberg_catalog.db"
    return settings.state_dir / "iceberg_catalog.db"


def open_catalog(settings: Settings) -> Catalog:
    """The SQL catalog on SQLite, or Glue when ``lake_catalog = "glue"``. Sizes the process's cache of
    the Avro metadata its commits wrote to its share of ``lake_max_buffered_bytes``."""
    written_files.resize(split_memory_cap(settings.lake_max_buffered_bytes, "iceberg").metadata_cache)
    properties: dict[str, Any] = {
        **io_properties(settings),
        "warehouse": lake_root(settings),
        "py-io-impl": FILE_IO_IMPL,
    }
    if settings.lake_catalog == "glue":
        from pyiceberg.catalog.glue import GlueCatalog

        glue = {"glue.region": settings.aws_region}
        if settings.aws_glue_endpoint_url:
            glue["glue.endpoint"] = settings.aws_glue_endpoint_url
        if settings.aws_access_key_id and settings.aws_secret_access_key:
            glue["glue.access-key-id"] = settings.aws_access_key_id.get_secret_value()
            glue["glue.secret-access-key"] = settings.aws_secret_access_key.get_secret_value()
        return GlueCatalog("highway", **{**properties, **glue})
    path = catalog_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A flush commits its tables from a pool of threads (and other workers may share the file):
    # SQLite's default 5 s busy wait was seen to run out under that load ("database is locked").
    uri = f"sqlite:///{path.absolute()}?timeout={SQLITE_BUSY_TIMEOUT_S:g}"
    return _open_sql_catalog(uri, properties)


def _open_sql_catalog(uri: str, properties: dict[str, Any], attempts: int = 3) -> Catalog:
    """pyiceberg creates its catalog tables when they are missing, checking first: two workers
    starting on a new catalog file both see them missing and one ``CREATE TABLE`` fails ("table
    iceberg_tables already exists", a worker that exited at start in CI). Opened again, the tables
    are there and the check skips them."""
    for _ in range(attempts - 1):
        try:
            return LakeSqlCatalog("highway", uri=uri, **properties)
        except sqlalchemy.exc.OperationalError as exc:
            if "already exists" not in str(exc):
                raise
            log.info("iceberg catalog: another process created its tables meanwhile; opening again")
    return LakeSqlCatalog("highway", uri=uri, **properties)


def namespace(settings: Settings, lane: str) -> str:
    if settings.lake_catalog == "glue":
        return re.sub(r"[^a-z0-9_]", "_", f"{settings.lake_glue_database}_{lane}".lower())
    return lane


def table_identifier(settings: Settings, lane: str, table: str) -> tuple[str, str]:
    if settings.lake_catalog == "glue":
        return namespace(settings, lane), re.sub(r"[^a-z0-9_]", "_", table.lower())
    return namespace(settings, lane), table


def base_schema(columns: Mapping[str, str] | None = None) -> Schema:
    """Envelope, Kafka coordinates, ``_raw``, the partition columns, then ``columns`` (property
    columns with their lattice types)."""
    fields: list[tuple[str, IcebergType]] = [
        *((name, StringType()) for name in STRING_FIELDS),
        *((name, TimestamptzType()) for name in ENVELOPE_TIMES),
        ("_kafka_partition", IntegerType()),
        ("_kafka_offset", LongType()),
        (RAW, StringType()),
        (ERROR, StringType()),
        (EXTRA, StringType()),
        *((name, StringType()) for name in PARTITION_COLUMNS),
        *((name, ICEBERG_TYPES[kind]) for name, kind in (columns or {}).items()),
    ]
    return Schema(
        *(NestedField(index, name, kind, required=False) for index, (name, kind) in enumerate(fields, 1))
    )


def partition_spec(schema: Schema) -> PartitionSpec:
    return PartitionSpec(
        *(
            PartitionField(schema.find_field(name).field_id, 1000 + index, IdentityTransform(), name)
            for index, name in enumerate(PARTITION_COLUMNS)
        )
    )


def property_kinds(schema: Schema) -> dict[str, str]:
    """The table's property columns with their lattice types (``core.lake.schema``)."""
    kinds: dict[str, str] = {}
    for column in schema.fields:
        if column.name.startswith(PROPERTY_PREFIX):
            kind = column.field_type
            if isinstance(kind, BooleanType):
                kinds[column.name] = BOOL
            elif isinstance(kind, IntegerType | LongType):
                kinds[column.name] = INT
            elif isinstance(kind, FloatType | DoubleType):
                kinds[column.name] = DOUBLE
            else:
                kinds[column.name] = STRING
    return kinds


class LakeTables:
    """The lake's tables in one catalog, loaded once per process (``refresh`` before use)."""

    def __init__(self, settings: Settings, catalog: Catalog | None = None) -> None:
        self.settings = settings
        self.catalog = catalog or open_catalog(settings)
        self.root = lake_root(settings)
        self._tables: dict[tuple[str, str], Table] = {}
        self._namespaces: set[str] = set()
        self._lock = threading.Lock()
        self._namespace_lock = threading.Lock()

    def location(self, lane: str, table: str) -> str:
        return f"{self.root}/{lane}/{table}"

    def known(self, lane: str, table: str) -> Table | None:
        """The table as this process last loaded or committed it (no catalog round trip): possibly
        behind the catalog's head."""
        with self._lock:
            return self._tables.get((lane, table))

    def load(self, lane: str, table: str) -> Table | None:
        """The table (refreshed), or None when it does not exist."""
        key = (lane, table)
        with self._lock:
            cached = self._tables.get(key)
        if cached is not None:
            return cached.refresh()
        try:
            loaded = self.catalog.load_table(table_identifier(self.settings, lane, table))
        except NoSuchTableError:
            return None
        with self._lock:
            self._tables[key] = loaded
        return loaded

    def ensure(
        self,
        lane: str,
        table: str,
        columns: Mapping[str, str] | None = None,
        properties: Mapping[str, str] | None = None,
        schema: Schema | None = None,
    ) -> Table:
        """The table, created on first use with ``columns`` and ``properties`` (a concurrent creator's
        table wins, and is used: its columns may differ); ``schema`` replaces the event tables'
        columns (a derived table: sessions)."""
        found = self.load(lane, table)
        if found is not None:
            return found
        self._ensure_namespace(namespace(self.settings, lane))
        schema = schema or base_schema(columns)
        created = self.catalog.create_table_if_not_exists(
            table_identifier(self.settings, lane, table),
            schema,
            location=self.location(lane, table),
            partition_spec=partition_spec(schema),
            properties={
                **TABLE_PROPERTIES,
                "write.parquet.compression-codec": self.settings.lake_compression,
                "write.target-file-size-bytes": str(self.settings.lake_compact_target_bytes),
                **(properties or {}),
            },
        )
        with self._lock:
            self._tables[(lane, table)] = created
        return created

    def _ensure_namespace(self, space: str) -> None:
        with self._namespace_lock:  # the flush creates tables on several threads at once
            if space in self._namespaces:
                return
            try:
                self.catalog.create_namespace_if_not_exists(space)
            except Exception:  # another process won the race (the SQL catalog says so with an IntegrityError)
                if not self.catalog.namespace_exists(space):
                    raise
            self._namespaces.add(space)

    def names(self, lane: str) -> list[str]:
        """Tables of a lane (catalog names)."""
        space = namespace(self.settings, lane)
        try:
            return sorted(identifier[-1] for identifier in self.catalog.list_tables(space))
        except Exception as exc:  # a lane never written has no namespace
            if type(exc).__name__ == "NoSuchNamespaceError":
                return []
            raise
