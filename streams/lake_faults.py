"""The lake's storage metrics, read when scraped: ``highway_lake_storage_errors_total{source, kind}``
(S3/Glue faults, for alerting) and ``highway_lake_s3_retries_total``.

``source`` is ``storage`` (S3 or the local lake directory) or ``catalog`` (Glue); ``kind`` is
``permanent`` (a missing bucket, denied access, wrong keys: an operator must act; ``/health`` says
degraded at once) or ``transient`` (retried with backoff). Read from the tracker when scraped.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from connectors.lake_fs import LakeStore
from core.lake.faults import FaultTracker


class FaultCounts(Collector):
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
