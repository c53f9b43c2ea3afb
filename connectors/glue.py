"""AWS Glue Data Catalog registration of lake tables, so Athena can query them as they appear.

``lake_catalog = "glue"``: one external Parquet table per event type (Parquet SerDe, partition keys
``dt``/``hour``), created on its first write, updated when its schema widens, and each new partition
registered. The client talks to ``aws_glue_endpoint_url`` (None = AWS), never to the S3 endpoint.
``lake_catalog = "projection"``: the same table with Athena partition projection instead of
per-partition registration (``dt`` a date range up to NOW, ``hour`` 00-23). Calls are idempotent;
what this process already registered is cached.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterable
from typing import Any

from botocore.exceptions import ClientError

from connectors.aws import glue_client
from core.lake.encode import envelope_schema
from core.lake.layout import PartitionValue, table_prefix
from core.lake.schema import BOOL, DOUBLE, INT, STRING, TableSchema
from core.settings import Settings

PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
PARTITION_KEYS = [{"Name": "dt", "Type": "string"}, {"Name": "hour", "Type": "string"}]
_GLUE_TYPES = {BOOL: "boolean", INT: "bigint", DOUBLE: "double", STRING: "string"}
_ENVELOPE_GLUE = {"string": "string", "timestamp[ms, tz=UTC]": "timestamp", "int32": "int", "int64": "bigint"}


_PLAIN_LANE = re.compile(r"[a-z0-9]+")
_PLAIN_TABLE = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)*")


def glue_table_name(lane: str, table: str) -> str:
    """The Glue (and Athena) name of a lake table: an injective function of (lane, table).

    Glue allows ``[a-z0-9_]`` only. ``<lane>_<table>`` when that is unambiguous — a lane of
    ``[a-z0-9]`` and a table of ``[a-z0-9]`` words joined by single ``_`` (``default_contest_join``);
    otherwise the same approximation (every other character ``_``) plus ``__`` and 16 hex digits of
    SHA-256 of (lane, table) (``add-cash`` → ``default_add_cash__9c1b…``, while ``add_cash`` is
    ``default_add_cash``). Plain names never contain ``__``, so the two forms never meet."""
    if _PLAIN_LANE.fullmatch(lane) and _PLAIN_TABLE.fullmatch(table):
        return f"{lane}_{table}"
    approx = re.sub(r"[^a-z0-9_]", "_", f"{lane}_{table}".lower())[:200]
    digest = hashlib.sha256(f"{lane}/{table}".encode()).hexdigest()[:16]
    return f"{approx}__{digest}"


def glue_columns(schema: TableSchema) -> list[dict[str, str]]:
    envelope = [{"Name": f.name, "Type": _ENVELOPE_GLUE[str(f.type)]} for f in envelope_schema()]
    props = [{"Name": column.lower(), "Type": _GLUE_TYPES[kind]} for column, kind in schema.columns.items()]
    return envelope + props


class Catalog:
    """Registers tables (and, without projection, partitions) in one Glue database."""

    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        self.settings = settings
        self.database = settings.lake_glue_database
        self.projection = settings.lake_catalog == "projection"
        self.client: Any = client or glue_client(settings)  # or a fake with the same calls
        self._database_ready = False
        self._database_lock = threading.Lock()
        self._tables: dict[tuple[str, str], int] = {}
        self._partitions: set[tuple[str, str, PartitionValue]] = set()

    def location(self, lane: str, table: str) -> str:
        return f"{self.settings.lake_uri}/{table_prefix(lane, table)}/"

    def _table_input(self, lane: str, table: str, schema: TableSchema) -> dict[str, Any]:
        location = self.location(lane, table)
        parameters = {"classification": "parquet", "EXTERNAL": "TRUE", "parquet.compression": "ZSTD"}
        if self.projection:
            parameters.update(
                {
                    "projection.enabled": "true",
                    "projection.dt.type": "date",
                    "projection.dt.format": "yyyy-MM-dd",
                    "projection.dt.range": "2020-01-01,NOW",
                    "projection.dt.interval": "1",
                    "projection.dt.interval.unit": "DAYS",
                    "projection.hour.type": "integer",
                    "projection.hour.range": "0,23",
                    "projection.hour.digits": "2",
                    "storage.location.template": location + "dt=${dt}/hour=${hour}/",
                }
            )
        return {
            "Name": glue_table_name(lane, table),
            "TableType": "EXTERNAL_TABLE",
            "Parameters": parameters,
            "PartitionKeys": PARTITION_KEYS,
            "StorageDescriptor": self._storage(location, glue_columns(schema)),
        }

    @staticmethod
    def _storage(location: str, columns: list[dict[str, str]]) -> dict[str, Any]:
        return {
            "Columns": columns,
            "Location": location,
            "InputFormat": PARQUET_INPUT,
            "OutputFormat": PARQUET_OUTPUT,
            "SerdeInfo": {"SerializationLibrary": PARQUET_SERDE, "Parameters": {"serialization.format": "1"}},
        }

    def _ensure_database(self) -> None:
        if self._database_ready:
            return
        with self._database_lock:  # tables are registered from several threads at once
            if not self._database_ready:
                self._create_database()

    def _create_database(self) -> None:
        try:
            self.client.create_database(DatabaseInput={"Name": self.database})
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "AlreadyExistsException":
                raise
        self._database_ready = True

    def ensure_table(self, lane: str, table: str, schema: TableSchema) -> None:
        """Create the table, or update its columns when the schema grew or widened."""
        signature = hash(tuple(schema.columns.items()))
        if self._tables.get((lane, table)) == signature:
            return
        self._ensure_database()
        table_input = self._table_input(lane, table, schema)
        try:
            self.client.create_table(DatabaseName=self.database, TableInput=table_input)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "AlreadyExistsException":
                raise
            self.client.update_table(DatabaseName=self.database, TableInput=table_input)
        self._tables[(lane, table)] = signature

    def ensure_partitions(self, lane: str, table: str, values: Iterable[PartitionValue]) -> None:
        if self.projection:
            return
        new = sorted({v for v in values if (lane, table, v) not in self._partitions})
        if not new:
            return
        location = self.location(lane, table)
        name = glue_table_name(lane, table)
        columns = glue_columns(TableSchema())
        for start in range(0, len(new), 100):  # the API's batch limit
            chunk = new[start : start + 100]
            result = self.client.batch_create_partition(
                DatabaseName=self.database,
                TableName=name,
                PartitionInputList=[
                    {
                        "Values": [v.dt, v.hour],
                        "StorageDescriptor": self._storage(location + v.path + "/", columns),
                    }
                    for v in chunk
                ],
            )
            failed = [
                e
                for e in result.get("Errors", [])
                if e["ErrorDetail"]["ErrorCode"] != "AlreadyExistsException"
            ]
            if failed:
                raise RuntimeError(f"glue partitions of {name}: {failed[0]['ErrorDetail']}")
            self._partitions.update((lane, table, v) for v in chunk)

    def forget(self, lane: str, table: str) -> None:
        """Drop the cache of one table so the next flush registers it again."""
        self._tables.pop((lane, table), None)
        self._partitions = {p for p in self._partitions if p[:2] != (lane, table)}


def catalog_for(settings: Settings) -> Catalog | None:
    return None if settings.lake_catalog == "none" else Catalog(settings)
