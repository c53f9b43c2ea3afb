"""The lake stage's Prometheus metrics (``highway_lake_*``) and the figures its ``/lake`` page shows."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from connectors.lake_fs import LakeStore
from core.lake.faults import FaultTracker


class LakeMetrics:
    """The lake's Prometheus metrics, on the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, labels: Iterable[str] = ()) -> Counter:
            return Counter(f"highway_lake_{name}", doc, list(labels), registry=registry)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(f"highway_lake_{name}", doc, registry=registry)

        self.rows = counter("rows_flushed", "Rows written to the lake (vouched for by a manifest)")
        self.files = counter("files_flushed", "Parquet files written by completed flushes")
        self.bytes = counter("bytes_flushed", "Parquet bytes written by completed flushes")
        self.flushes = counter("flushes", "Buffers flushed, by reason", ["reason"])
        self.errors = counter("errors", "Failed commit steps (flush, catalog, offsets), retried", ["step"])
        self.orphans = counter("orphans_deleted", "Files above a manifest deleted on assignment")
        self.fenced = counter(
            "fenced", "Partitions this writer was fenced out of (another writer claimed them; rows dropped)"
        )
        self.skipped = counter("replayed_skipped", "Records at or below a manifest seen again")
        self.buffered_rows = gauge("buffered_rows", "Rows buffered, not yet in the lake")
        self.buffered_bytes = gauge("buffered_bytes", "Estimated memory of the buffered rows")
        self.assigned = gauge("assigned_partitions", "Topic-partitions assigned to this worker")
        self.lag = gauge(
            "lag", "Records of this worker's per-event partitions not in the lake yet (unread or buffered)"
        )
        self.commit_seconds = Histogram(
            "highway_lake_commit_seconds",
            "Duration of a flush through the whole commit path",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=registry,
        )


class FaultCounts(Collector):
    """``highway_lake_storage_errors_total{source, kind}``: S3/filesystem (``storage``) and Glue
    (``catalog``) faults, ``permanent`` (an operator must act) or ``transient``, read when scraped."""

    def __init__(self, faults: FaultTracker) -> None:
        self.faults = faults

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "highway_lake_storage_errors",
            "Failed lake S3/filesystem (source=storage) and Glue (source=catalog) calls, by kind",
            labels=["source", "kind"],
        )
        counts = dict(self.faults.counts)
        for source in ("storage", "catalog"):
            for kind in ("permanent", "transient"):
                family.add_metric([source, kind], counts.get((source, kind), 0))
        yield family


class StoreRetries(Collector):
    """``highway_lake_s3_retries_total``, read from the store's own count when scraped."""

    def __init__(self, store: LakeStore) -> None:
        self.store = store

    def collect(self) -> Iterable[Metric]:
        doc = "Lake storage calls retried after an error"
        yield CounterMetricFamily("highway_lake_s3_retries", doc, self.store.retries)


@dataclass
class LakeStats:
    """What the ``/lake`` page shows (the metrics hold the same figures for Prometheus)."""

    rows: int = 0
    files: int = 0
    flushes: int = 0
    skipped_replayed: int = 0
    orphans_deleted: int = 0
    fenced: int = 0
    errors: int = 0
    last_flush_monotonic: float = 0.0
    flush_reasons: dict[str, int] = field(default_factory=dict)
