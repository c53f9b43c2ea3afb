"""The lake stage's format-specific parts: which commit path (and its writer id), Iceberg upkeep.

* :func:`commit_path_for`: ``lake_format = "parquet"`` → ``core.lake.commit.LakeCommitter`` (files +
  manifests, optional Glue registration); ``"iceberg"`` → ``core.lake.iceberg_commit.IcebergCommitter``
  over ``connectors.iceberg_lake.IcebergLake`` (one fenced snapshot per table and flush).
* :class:`LakeMaintenance`: every ``lake_maintenance_interval_s``, compaction of closed hours,
  snapshot expiry and orphan removal (``connectors.iceberg_maintenance``) off the consumer thread.
  Every worker runs it; commits compare-and-swap, so two workers compacting at once only cost a retry.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from concurrent.futures import Executor

import faust
import mode

from connectors.glue import catalog_for
from connectors.iceberg_lake import IcebergLake
from connectors.iceberg_maintenance import MaintenanceReport, maintain_lane
from connectors.lake_fs import LakeStore
from connectors.storage_errors import GuardedCatalog
from connectors.wire import JsonCodec, codec_for
from core.envelope import parse_json_event
from core.lake.commit import LakeCommitter
from core.lake.faults import FaultTracker
from core.lake.iceberg_commit import IcebergCommitter
from core.lake.ports import Catalog, LakeCommitPath
from core.lake.schema import TableSchema
from core.settings import Settings
from streams.health import health_board

log = logging.getLogger(__name__)


def commit_path_for(
    settings: Settings,
    store: LakeStore,
    pool: Executor,
    overrides: dict[str, TableSchema],
    faults: FaultTracker | None = None,
) -> LakeCommitPath:
    """The commit path of ``lake_format``; either decodes records with the wire codec (JSON, or Avro
    through the schema registry)."""
    codec = codec_for(settings)
    # The JSON decoder itself rather than the codec's wrapper of it: a flush then parses whole batches
    # with Arrow's JSON reader (core.lake.columnar), which stands in for exactly this decoder.
    decode_event = parse_json_event if isinstance(codec, JsonCodec) else codec.decode
    if settings.lake_format == "iceberg":
        return IcebergCommitter(settings, IcebergLake(settings, overrides), pool, decode_event=decode_event)
    glue = catalog_for(settings)
    catalog: Catalog | None = glue
    if glue is not None and faults is not None:  # Glue faults show on /health (connectors.storage_errors)
        catalog = GuardedCatalog(glue, faults, settings.lake_glue_database)
    return LakeCommitter(
        settings, store, catalog, pool, overrides, decode_event=decode_event, owner=writer_id()
    )


def writer_id() -> str:
    """This process as a lake writer, as manifests and fencing logs name it."""
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"


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
        health_board(app).add("lake-maintenance", maintenance.health, lambda: maintenance.started)
        app.add_dependency(maintenance)
