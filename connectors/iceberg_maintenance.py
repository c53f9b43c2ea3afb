"""Iceberg lake maintenance: compaction of closed hours, snapshot expiry, orphan-file removal.

* **Compaction** (:func:`compact_table`): a closed table-hour (its hour ended at least
  ``grace_s`` ago) with ``lake_compact_min_files`` or more data files is rewritten into files of
  about ``lake_compact_target_bytes`` in ONE ``overwrite`` snapshot that deletes exactly the files it
  read and adds the rewritten ones, its summary carrying the head's offset map forward. The commit
  compare-and-swaps the head: an append that raced it (late events of that hour, or any other
  partition) makes it fail, and the hour is read and rewritten again on the new head — no row is
  lost or doubled, and the append is never undone. The rows are written in :data:`COMPACTED_ORDER`
  (event time, then Kafka coordinates): the flush files of both partitions interleave in time, and
  sorted they give each row group a narrow ``server_ts`` range (queries on time skip the rest) and
  runs that compress. pyiceberg measures the target in Arrow bytes, not Parquet bytes: a file on
  disk is several times smaller than ``lake_compact_target_bytes``.
* **Expiry** (:func:`expire_snapshots`): snapshots older than ``lake_snapshot_max_age_s`` go (the
  head never does, so the offset map stays).
* **Orphans** (:func:`remove_orphans`): files under the table's location that no remaining snapshot
  or metadata version references — a flush that died between its data files and its commit, a
  fenced writer's files, compaction inputs of expired snapshots — deleted once older than
  ``lake_orphan_min_age_s``. The window protects files of a commit still in flight.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow.fs as pafs
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table

from connectors.iceberg_catalog import LakeTables
from connectors.iceberg_files import write_data_files
from connectors.iceberg_lake import table_offsets
from connectors.lake_fs import filesystem_for
from core.lake.offsets import OFFSETS_PROPERTY, encode_offsets
from core.settings import Settings

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 20
COMPACTED_ORDER = [
    ("server_ts", "ascending"),
    ("_kafka_partition", "ascending"),
    ("_kafka_offset", "ascending"),
]


@dataclass
class MaintenanceReport:
    hours_compacted: int = 0
    files_before: int = 0
    files_after: int = 0
    retries: int = 0
    snapshots_expired: int = 0
    orphans_removed: int = 0


def closed_hours(table: Table, min_files: int, closed_before_ms: int) -> list[tuple[str, str]]:
    """(dt, hour) partitions that ended before ``closed_before_ms`` and hold ``min_files`` or more files."""
    counts: dict[tuple[str, str], int] = {}
    for task in table.scan().plan_files():
        record = task.file.partition
        key = (str(record[0]), str(record[1]))
        counts[key] = counts.get(key, 0) + 1
    closed = []
    for (dt, hour), files in sorted(counts.items()):
        ends = datetime.strptime(f"{dt} {hour}", "%Y-%m-%d %H").replace(tzinfo=UTC).timestamp() + 3600
        if files >= min_files and ends * 1000 <= closed_before_ms:
            closed.append((dt, hour))
    return closed


def compact_hour(table: Table, dt: str, hour: str, report: MaintenanceReport) -> None:
    """Rewrite one table-hour in one snapshot; retried on the new head when a commit raced it."""
    for attempt in range(MAX_ATTEMPTS):
        head = table.refresh()
        snapshot = head.current_snapshot()
        if snapshot is None:
            return
        scan = head.scan(row_filter=f"dt = '{dt}' AND hour = '{hour}'", snapshot_id=snapshot.snapshot_id)
        inputs = [task.file for task in scan.plan_files()]
        if len(inputs) < 2:
            return
        data = scan.to_arrow().cast(head.schema().as_arrow()).sort_by(COMPACTED_ORDER)
        properties = {OFFSETS_PROPERTY: encode_offsets(table_offsets(head))}
        transaction = head.transaction()
        outputs = write_data_files(transaction.table_metadata, head.io, data)
        with transaction.update_snapshot(snapshot_properties=properties).overwrite() as overwrite:
            for data_file in inputs:
                overwrite.delete_data_file(data_file)
            for data_file in outputs:
                overwrite.append_data_file(data_file)
        try:
            transaction.commit_transaction()
        except CommitFailedException:
            report.retries += 1
            log.info("lake: compaction of %s/%s met a concurrent commit; redoing it", dt, hour)
            time.sleep(min(0.05 * 2**attempt, 1.0))
            continue
        report.hours_compacted += 1
        report.files_before += len(inputs)
        report.files_after += len(outputs)
        return
    raise CommitFailedException(f"compaction of {dt}/{hour}: no commit after {MAX_ATTEMPTS} attempts")


def compact_table(
    settings: Settings, table: Table, report: MaintenanceReport, grace_s: float = 600.0
) -> None:
    closed_before = int((time.time() - grace_s) * 1000)
    for dt, hour in closed_hours(table, settings.lake_compact_min_files, closed_before):
        compact_hour(table, dt, hour, report)


def expire_snapshots(settings: Settings, table: Table, report: MaintenanceReport) -> None:
    cutoff = datetime.fromtimestamp(time.time() - settings.lake_snapshot_max_age_s, tz=UTC)
    for _ in range(MAX_ATTEMPTS):
        head = table.refresh()
        before = len(head.metadata.snapshots)
        try:
            head.maintenance.expire_snapshots().older_than(cutoff).commit()
        except CommitFailedException:
            report.retries += 1
            continue
        report.snapshots_expired += before - len(table.refresh().metadata.snapshots)
        return


def referenced_files(table: Table) -> set[str]:
    """Every file a snapshot or a kept metadata version of the table points to."""
    metadata = table.metadata
    paths = {table.metadata_location, *(entry.metadata_file for entry in metadata.metadata_log)}
    for snapshot in metadata.snapshots:
        paths.add(snapshot.manifest_list)
        for manifest in snapshot.manifests(table.io):
            paths.add(manifest.manifest_path)
            paths.update(entry.data_file.file_path for entry in manifest.fetch_manifest_entry(table.io))
    return {_strip_scheme(path) for path in paths}


def _strip_scheme(uri: str) -> str:
    for scheme in ("s3://", "s3a://", "file://"):
        if uri.startswith(scheme):
            return uri[len(scheme) :]
    return uri


def remove_orphans(
    settings: Settings, table: Table, report: MaintenanceReport, now: float | None = None
) -> None:
    """Delete the table's unreferenced files older than the safety window.

    Only under ``data/`` and ``metadata/``: whatever else shares the table's prefix (the Hive-layout
    files of a lake that was ``parquet`` before, ``_schema.json``) is not the table's to delete."""
    fs, _ = filesystem_for(settings)
    base = _strip_scheme(table.location()).rstrip("/")
    infos = [
        info
        for folder in ("data", "metadata")
        for info in fs.get_file_info(
            pafs.FileSelector(f"{base}/{folder}", recursive=True, allow_not_found=True)
        )
    ]
    cutoff = (time.time() if now is None else now) - settings.lake_orphan_min_age_s
    referenced = referenced_files(table.refresh())
    for info in infos:
        if info.type != pafs.FileType.File or info.path in referenced:
            continue
        if info.mtime is None or info.mtime.timestamp() > cutoff:
            continue
        log.info("lake: removing orphan %s", info.path)
        fs.delete_file(info.path)
        report.orphans_removed += 1


def maintain_lane(
    settings: Settings, lane: str, compact: bool = True, clean: bool = True, grace_s: float = 600.0
) -> MaintenanceReport:
    """Compaction (``compact``), then expiry and orphan removal (``clean``) for every table of a lane."""
    tables = LakeTables(settings)
    report = MaintenanceReport()
    for name in tables.names(lane):
        table = tables.load(lane, name)
        if table is None:
            continue
        if compact:
            compact_table(settings, table, report, grace_s)
        if clean:
            expire_snapshots(settings, table, report)
            remove_orphans(settings, table, report)
    return report
