"""Read-only probes the demo polls for its progress view: Kafka offsets, lake files, worker HTTP.

Every figure is measured from the outside (broker high watermarks, objects in the lake, the
worker's own HTTP API), so the view shows what the pipeline really produced, whatever each stage
reports about itself. A probe that cannot answer yet returns None ("not yet available"), never
raises: the demo keeps running while capabilities come up.
"""

from __future__ import annotations

import contextlib
import re
import time

import httpx
import pyarrow.parquet as pq
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from pyarrow import fs

from connectors.iceberg_lake import IcebergLake
from connectors.kafka_config import confluent_config, subscription_regex
from connectors.lake_fs import filesystem_for
from connectors.lake_reader import iceberg_totals
from core.lake.layout import COMMON_TABLE, parse_data_file
from core.settings import Settings
from highway.demo.view import ConcurrencyReading, Snapshot, latest_concurrency
from highway.verify.kafka_read import CommittedCounter


class PipelineProbe:
    """Measures one lane of a running pipeline. Not thread-safe; call ``snapshot`` from one loop."""

    def __init__(self, settings: Settings, lane: str, worker_url: str) -> None:
        self.settings = settings
        self.lane = lane
        self.worker_url = worker_url.rstrip("/")
        self._admin = AdminClient(confluent_config(settings, log_level=0))
        self._filesystem, root = filesystem_for(settings)
        self._lane_dir = f"{root}/{lane}"
        self._rows_by_file: dict[str, int] = {}
        self._iceberg: IcebergLake | None = None
        self._http = httpx.Client(timeout=2.0)
        self._event_counts: dict[str, int] = {}
        outputs = [
            settings.event_topic_pattern(lane),
            re.escape(settings.common_topic(lane)),
            re.escape(settings.dlq_topic(lane)),
        ]
        self._output = CommittedCounter(settings, subscription_regex(outputs))

    def close(self) -> None:
        self._http.close()
        self._output.close()

    # --- Kafka ---------------------------------------------------------------------------------
    def topic_counts(self) -> tuple[dict[str, int], list[str]]:
        """Records per topic of this lane, and its event topics.

        The input (written by plain producers) is counted by high watermarks; the router's output by
        a ``read_committed`` consumer that counts what it reads, since the router writes in
        transactions whose commit markers take offsets too.
        """
        settings = self.settings
        metadata = self._admin.list_topics(timeout=5)
        event_regex = re.compile(settings.event_topic_pattern(self.lane))
        event_topics = sorted(name for name in metadata.topics if event_regex.fullmatch(name))
        source = settings.all_events_topic(self.lane)
        counts: dict[str, int] = dict(self._output.poll())
        if source in metadata.topics:
            requests = {
                TopicPartition(source, partition): OffsetSpec.latest()
                for partition in metadata.topics[source].partitions
            }
            counts[source] = 0
            for tp, future in self._admin.list_offsets(requests, request_timeout=5).items():
                # A partition whose leader is not elected yet counts as empty for now.
                with contextlib.suppress(KafkaException):
                    counts[tp.topic] += max(future.result(timeout=10).offset, 0)
        for name in [settings.common_topic(self.lane), settings.dlq_topic(self.lane), *event_topics]:
            if name in metadata.topics:
                counts.setdefault(name, 0)
        self._event_counts = {name: counts.get(name, 0) for name in event_topics}
        return counts, event_topics

    def largest_event_topic(self) -> str | None:
        """The per-event topic with the most records at the last measurement."""
        if not self._event_counts:
            return None
        return max(self._event_counts.items(), key=lambda item: (item[1], item[0]))[0]

    # --- lake ----------------------------------------------------------------------------------
    def lake_files(self, max_footers: int = 200) -> tuple[int, int]:
        """(data files, rows) of this lane's event tables in the lake (not the common table, which
        holds the same events again); rows are read once per file from its footer.

        At most ``max_footers`` new footers are read per call, so that a burst of files (hundreds in
        one flush) does not freeze the view; rows catch up on the following calls.
        """
        if self.settings.lake_format == "iceberg":
            try:  # what the tables' current snapshots hold: files of an unfinished commit do not count
                self._iceberg = self._iceberg or IcebergLake(self.settings, {})
                return iceberg_totals(self._iceberg, self.lane)
            except Exception as exc:  # the catalog or S3 not answering yet: "not yet available"
                raise OSError(f"iceberg lake: {exc}") from exc
        selector = fs.FileSelector(self._lane_dir, allow_not_found=True, recursive=True)
        paths = [
            info.path
            for info in self._filesystem.get_file_info(selector)
            if info.type == fs.FileType.File
            and parse_data_file(info.path) is not None
            and f"/{COMMON_TABLE}/" not in info.path  # the same events again
        ]
        for path in [path for path in paths if path not in self._rows_by_file][:max_footers]:
            with self._filesystem.open_input_file(path) as handle:
                self._rows_by_file[path] = pq.ParquetFile(handle).metadata.num_rows
        return len(paths), sum(self._rows_by_file.get(path, 0) for path in paths)

    def lake_buffered(self) -> int | None:
        """Rows the worker's lake sink holds in memory (its ``/lake`` page), None without one."""
        try:
            response = self._http.get(f"{self.worker_url}/lake")
            value = response.json().get("buffered_rows") if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        return value if isinstance(value, int) else None

    # --- worker HTTP ---------------------------------------------------------------------------
    def worker_healthy(self) -> bool:
        try:
            return self._http.get(f"{self.worker_url}/health").status_code == 200
        except httpx.HTTPError:
            return False

    def concurrency(self) -> ConcurrencyReading | None:
        """The latest concurrency the worker's ``/api/v1/concurrency`` serves, None when it has none."""
        try:
            response = self._http.get(f"{self.worker_url}/api/v1/concurrency", params={"lane": self.lane})
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        try:
            return latest_concurrency(response.json())
        except ValueError:
            return None

    # --- all of it -----------------------------------------------------------------------------
    def snapshot(self, started: float, phase: str, target: int, worker_state: str) -> Snapshot:
        counts: dict[str, int] | None = None
        event_topics: list[str] = []
        with contextlib.suppress(KafkaException):
            counts, event_topics = self.topic_counts()
        lake: tuple[int, int] | None = None
        with contextlib.suppress(OSError):
            lake = self.lake_files()
        settings = self.settings

        def count(topic: str) -> int | None:
            return None if counts is None else counts.get(topic)

        return Snapshot(
            elapsed_s=time.monotonic() - started,
            phase=phase,
            target=target,
            produced=count(settings.all_events_topic(self.lane)),
            event_topics=None if counts is None else len(event_topics),
            routed=None if counts is None else sum(counts[name] for name in event_topics),
            common=count(settings.common_topic(self.lane)),
            dlq=count(settings.dlq_topic(self.lane)),
            lake_files=None if lake is None else lake[0],
            lake_rows=None if lake is None else lake[1],
            lake_buffered=self.lake_buffered(),
            concurrency=self.concurrency(),
            worker=worker_state,
        )
