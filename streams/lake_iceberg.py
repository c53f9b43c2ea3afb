"""The lake stage's format-specific parts: which commit path, fenced partitions, Iceberg upkeep.

* :func:`commit_path_for`: ``lake_format = "parquet"`` → ``core.lake.commit.LakeCommitter`` (files +
  manifests, optional Glue registration); ``"iceberg"`` → ``core.lake.iceberg_commit.IcebergCommitter``
  over ``connectors.iceberg_lake.IcebergLake`` (one fenced snapshot per table and flush).
* :func:`resume_fenced`: after a flush, partitions whose commit was refused because another writer
  owns them resume reading from that writer's offsets (if this worker still owns them at all).
* :class:`LakeMaintenance`: every ``lake_maintenance_interval_s``, compaction of closed hours,
  snapshot expiry and orphan removal (``connectors.iceberg_maintenance``) off the consumer thread.
  Every worker runs it; commits compare-and-swap, so two workers compacting at once only cost a retry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import MutableMapping
from concurrent.futures import Executor

import faust
import mode
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from connectors.glue import catalog_for
from connectors.iceberg_lake import IcebergLake
from connectors.iceberg_maintenance import MaintenanceReport, maintain_lane
from connectors.lake_fs import LakeStore
from core.lake.commit import LakeCommitter
from core.lake.flush import PartitionBuffer
from core.lake.iceberg_commit import IcebergCommitter
from core.lake.ports import LakeCommitPath
from core.lake.schema import TableSchema
from core.settings import Settings
from streams.health import health_board

log = logging.getLogger(__name__)


def commit_path_for(
    settings: Settings, store: LakeStore, pool: Executor, overrides: dict[str, TableSchema]
) -> LakeCommitPath:
    if settings.lake_format == "iceberg":
        return IcebergCommitter(settings, IcebergLake(settings, overrides), pool)
    return LakeCommitter(settings, store, catalog_for(settings), pool, overrides)


def resume_fenced(
    committer: LakeCommitPath, consumer: Consumer, buffers: MutableMapping[tuple[str, int], PartitionBuffer]
) -> int:
    """Seek each partition fenced by the last flush to the offsets its owner committed; how many."""
    fenced = committer.take_fenced()
    for (topic, partition), start in fenced.items():
        buffers.pop((topic, partition), None)
        try:
            consumer.seek(TopicPartition(topic, partition, OFFSET_BEGINNING if start is None else start))
        except KafkaException as exc:  # not ours any more: the revocation comes with the next poll
            log.info("lake: no seek for fenced %s[%s]: %s", topic, partition, exc)
    return len(fenced)


class LakeMaintenance(mode.Service):
    """Periodic Iceberg upkeep for the configured lanes (a failure is logged and retried next time)."""

    def __init__(self, settings: Settings, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.settings = settings
        self.runs = 0
        self.failures = 0
        self.last: MaintenanceReport | None = None
        self.error: str | None = None

    @mode.Service.task
    async def _periodic(self) -> None:
        while not self.should_stop:
            await self.sleep(self.settings.lake_maintenance_interval_s)
            if self.should_stop:
                return
            try:
                for lane in self.settings.lanes:
                    self.last = await asyncio.to_thread(maintain_lane, self.settings, lane)
                    log.info("lake maintenance of %s: %s", lane, self.last)
                self.runs += 1
                self.error = None
            except Exception as exc:
                self.failures += 1
                self.error = repr(exc)
                log.exception(
                    "lake maintenance failed; next attempt in %ss", self.settings.lake_maintenance_interval_s
                )

    def health(self) -> tuple[str, str | None]:
        """``degraded`` while the last run failed (the lake itself is unaffected; upkeep waits)."""
        if self.error is None:
            return "ok", None
        return "degraded", f"lake maintenance: {self.error}"


def register_maintenance(app: faust.App, settings: Settings) -> None:
    """Run :class:`LakeMaintenance` with the app (Iceberg lake, interval above 0) and report its health."""
    if settings.lake_format == "iceberg" and settings.lake_maintenance_interval_s > 0:
        maintenance = LakeMaintenance(settings, beacon=app.beacon)
        health_board(app).add("lake-maintenance", maintenance.health)
        app.add_dependency(maintenance)
