"""Simulator-shaped common-table rows for ``highway bench analytics``, written as lake Parquet files.

The match-day simulator (``core.sim``) makes ~25,000 events/s in Python, so 10 million would take
minutes before anything is timed; this draws the same shape with numpy instead: event names from
the simulator's catalogue under its Zipf law (``zipf_s`` 1.1 over the first 300 names), users with
one platform and app version each (the simulator's weights), ``server_ts`` spread over the run at a
steady rate, ``client_ts`` lagging by network latency, a session per user and half hour. The files
go straight into the lake's Hive layout (``<lane>/events--common/dt=…/hour=…/``), 100,000 rows per
file as the lake's default flush makes them — no Kafka is involved, which is not what is measured.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from core.lake.layout import COMMON_TABLE
from core.sim.names import catalogue
from core.sim.simulator import APP_VERSIONS, PLATFORMS, zipf_weights

FILE_ROWS = 100_000  # the lake's default lake_flush_rows
SESSION_MS = 30 * 60_000


def _labels(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    text = pc.utf8_lpad(pa.array(numbers).cast(pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(pa.scalar(prefix), text, "")


def _decoded(indices: np.ndarray, names: list[str]) -> pa.Array:
    """Strings from indices into ``names`` (dictionary-decoded: no Python object per row)."""
    return pa.DictionaryArray.from_arrays(pa.array(indices, pa.int32()), pa.array(names)).cast(pa.string())


def _pick(rng: np.random.Generator, weights: list[float], size: int) -> np.ndarray:
    p = np.array(weights)
    return rng.choice(len(p), size=size, p=p / p.sum())


def common_rows(events: int, users: int, start_ms: int, seed: int = 1, rate: float = 2_000.0) -> pa.Table:
    """``events`` rows of the common table, in ``server_ts`` order, with ``dt``/``hour``."""
    rng = np.random.default_rng(seed)
    names = list(catalogue()[:300])
    event_names = _pick(rng, zipf_weights(len(names), 1.1), events)
    server_ts = start_ms + np.sort(rng.integers(0, int(events / rate * 1000), size=events))
    user = rng.integers(0, users, size=events)
    platforms = [name for name, _ in PLATFORMS]
    user_platform = _pick(rng, [weight for _, weight in PLATFORMS], users)
    versions = [version for platform in platforms for version, _ in APP_VERSIONS[platform]]
    user_version = np.zeros(users, dtype=np.int64)
    for index, platform in enumerate(platforms):
        mine = user_platform == index
        offered = APP_VERSIONS[platform]
        first = versions.index(offered[0][0])
        user_version[mine] = first + _pick(rng, [weight for _, weight in offered], int(mine.sum()))
    session = (server_ts - start_ms) // SESSION_MS
    hours = server_ts // 3_600_000
    hour_list = sorted(set(np.unique(hours).tolist()))
    hour_index = np.searchsorted(np.array(hour_list), hours)
    days = [datetime.fromtimestamp(hour * 3600, tz=UTC) for hour in hour_list]
    stamps = pa.array(server_ts, pa.timestamp("ms", tz="UTC"))
    lag = rng.exponential(150, size=events).astype(np.int64)
    user_ids = _labels("u", user, 7)
    return pa.table(
        {
            "event_name": _decoded(event_names, names),
            "event_id": _labels("e", np.arange(events), 10),
            "user_id": user_ids,
            "session_id": pc.binary_join_element_wise(user_ids, _labels("-s", session, 3), ""),
            "lane": _decoded(np.zeros(events, dtype=np.int64), ["bench"]),
            "platform": _decoded(user_platform[user], platforms),
            "app_version": _decoded(user_version[user], versions),
            "device_id": _labels("d", user, 7),
            "client_ts": pa.array(server_ts - lag, pa.timestamp("ms", tz="UTC")),
            "server_ts": stamps,
            "dt": _decoded(hour_index, [day.strftime("%Y-%m-%d") for day in days]),
            "hour": _decoded(hour_index, [day.strftime("%H") for day in days]),
        }
    )


def write_lake_files(rows: pa.Table, root: Path, lane: str) -> tuple[int, int]:
    """``rows`` as zstd Parquet under ``root/<lane>/events--common/dt=…/hour=…/``; (files, bytes)."""
    base = root / lane / COMMON_TABLE
    written: list[int] = []
    ds.write_dataset(
        rows,
        base,
        format="parquet",
        partitioning=ds.partitioning(pa.schema([("dt", pa.string()), ("hour", pa.string())]), flavor="hive"),
        max_rows_per_file=FILE_ROWS,
        max_rows_per_group=FILE_ROWS,
        basename_template="part-{i}.parquet",
        file_options=ds.ParquetFileFormat().make_write_options(compression="zstd"),
        existing_data_behavior="overwrite_or_ignore",
        file_visitor=lambda written_file: written.append(written_file.size or 0),
    )
    return len(written), sum(written)
