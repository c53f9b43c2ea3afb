"""One warm flush of the lake's buffers, timed in-process: to compare two versions of a commit path.

``highway bench lake`` measures the lake end to end against the passthrough; there a flush is one
phase beside consuming and the broker's work. This isolates it: simulator events over ``--types``
event types, held in buffers as ``streams.lake`` holds them (raw records per topic-partition), are
flushed into tables that already exist, against a local S3 server (moto), by the commit path of
``--format``, the way the lake's handler calls it. Each flush reports its wall time and this
process's CPU time.

Comparing two versions: run this script from one checkout against each checkout's code in turn,
interleaved (the machine is shared; only interleaved runs cancel its drift)::

    PYTHONPATH=/path/to/other-checkout python bench/flush_profile.py --events 1000000 --types 250
    PYTHONPATH=. python bench/flush_profile.py --events 1000000 --types 250

With ``PYTHONPATH`` set, the imports below resolve in that checkout. A checkout from before
``core.lake.flush.collector_skipping_buffers`` existed flushes without it, as its lake did.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.events import simulate
from connectors.lake_fs import LakeStore
from connectors.local.s3 import ACCESS_KEY_ID, SECRET_ACCESS_KEY, S3Server, ensure_bucket
from core.lake.flush import PartitionBuffer
from core.lake.records import RawRecord
from core.routing.naming import event_topic_for
from core.settings import Settings
from streams.lake_iceberg import commit_path_for

try:
    from core.lake.flush import collector_skipping_buffers
except ImportError:  # an older checkout: its lake flushed without it
    collector_skipping_buffers = contextlib.nullcontext  # type: ignore[assignment]

TP = tuple[str, int]


class _NoOffsets:
    """The consumer's offsets: not what is measured."""

    def commit(self, offsets: Any) -> None:
        pass


def _buffers(
    values: dict[TP, list[bytes]], next_offset: dict[TP, int], per_partition: int
) -> list[PartitionBuffer]:
    """One buffer per topic-partition holding ``per_partition`` of its events (0: all of them)."""
    buffers = []
    now_ms = int(time.time() * 1000)
    for tp, raws in values.items():
        buffer = PartitionBuffer(*tp)
        for raw in raws[:per_partition] if per_partition else raws:
            buffer.add(RawRecord(tp[1], next_offset[tp], now_ms, raw), time.monotonic())
            next_offset[tp] += 1
        buffers.append(buffer)
    return buffers


def run(events: int, types: int, lake_format: str, flushes: int) -> list[tuple[float, float]]:
    """(wall s, CPU s) of each warm flush."""
    state = Path(tempfile.mkdtemp(prefix="flush-profile-"))
    server = S3Server(state / "s3").start()
    try:
        ensure_bucket(server.endpoint, "profile", ACCESS_KEY_ID, SECRET_ACCESS_KEY)
        settings = Settings(
            lanes=["p"],
            lake_format=lake_format,
            lake_uri="s3://profile/lake",
            aws_s3_endpoint_url=server.endpoint,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            state_dir=state,
            topic_partitions=2,
        )
        values: dict[TP, list[bytes]] = {}
        for record in simulate(settings, events, types).records:
            topic = event_topic_for(settings, "p", record.event_name)
            values.setdefault((topic, record.partition), []).append(record.value)
        with ThreadPoolExecutor(settings.lake_flush_concurrency) as pool:
            committer = commit_path_for(settings, LakeStore(settings), pool, {})
            committer.recover(list(values))
            next_offset = dict.fromkeys(values, 0)
            committer.flush(_buffers(values, next_offset, 5), _NoOffsets())  # creates every table
            figures = []
            for _ in range(flushes):
                buffers = _buffers(values, next_offset, 0)
                cpu, wall = time.process_time(), time.monotonic()
                with collector_skipping_buffers():
                    committer.flush(buffers, _NoOffsets())
                figures.append((time.monotonic() - wall, time.process_time() - cpu))
                print(
                    f"flush of {events:,} events into {len(values)} partitions: "
                    f"{figures[-1][0]:.2f} s wall, {figures[-1][1]:.2f} s CPU",
                    flush=True,
                )
        return figures
    finally:
        server.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--types", type=int, default=250)
    parser.add_argument("--format", choices=["iceberg", "parquet"], default="iceberg")
    parser.add_argument("--flushes", type=int, default=2)
    options = parser.parse_args(argv)
    figures = run(options.events, options.types, options.format, options.flushes)
    walls, cpus = [f[0] for f in figures], [f[1] for f in figures]
    print(
        f"median of {len(figures)}: {statistics.median(walls):.2f} s wall"
        f" ({min(walls):.2f}-{max(walls):.2f}), {statistics.median(cpus):.2f} s CPU"
        f" ({min(cpus):.2f}-{max(cpus):.2f})"
    )


if __name__ == "__main__":
    main()
