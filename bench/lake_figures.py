"""What the lake's output is worth: files per table-hour, Parquet bytes against gzip JSON, and one
DuckDB aggregation over the lake against the same over gzip JSON of the same events.

Files are taken from whatever the table holds now (:func:`lake_files`): the Hive-layout listing for
``lake_format = "parquet"``, the current snapshot's data files for Iceberg tables — so running the
lake's compaction (:func:`compaction`, when this build has one) and measuring again gives the
"after compaction" figures.
"""

from __future__ import annotations

import gzip
import re
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from bench.stats import spread
from connectors.iceberg_catalog import LakeTables
from connectors.iceberg_maintenance import maintain_lane
from connectors.lake_fs import LakeStore, filesystem_for
from core.settings import Settings

_PARTITION = re.compile(r"/([^/]+)/(?:data/)?dt=([^/]+)/hour=([^/]+)/[^/]+\.parquet$")
AGGREGATION = (
    "SELECT event_name, date_trunc('hour', server_ts) AS hour, count(*) AS events, "
    "count(DISTINCT user_id) AS users FROM events GROUP BY ALL ORDER BY ALL"
)
# The same groups without the distinct count: what reading the rows costs, little else (the grouped
# distinct count is CPU that both formats pay alike).
SCAN = (
    "SELECT event_name, date_trunc('hour', server_ts) AS hour, count(*) AS events "
    "FROM events GROUP BY ALL ORDER BY ALL"
)
IN_MEMORY = "in memory"


@dataclass(frozen=True)
class LakeFile:
    table: str
    dt: str
    hour: str
    size: int
    path: str  # inside the lake's pyarrow filesystem


def lake_files(settings: Settings, lane: str) -> list[LakeFile]:
    """Every data file the lane's tables hold now."""
    if settings.lake_format == "iceberg":
        return _iceberg_files(settings, lane)
    store = LakeStore(settings)
    files = []
    for key, size in store.sizes(f"{lane}/").items():
        match = _PARTITION.search("/" + key)
        if match and not match.group(1).startswith("_"):
            files.append(LakeFile(match.group(1), match.group(2), match.group(3), size, store.path(key)))
    return files


def _iceberg_files(settings: Settings, lane: str) -> list[LakeFile]:
    tables = LakeTables(settings)
    files = []
    for name in tables.names(lane):
        table = tables.load(lane, name)
        for task in table.scan().plan_files() if table is not None else []:
            uri = str(task.file.file_path)
            match = _PARTITION.search(uri)
            dt, hour = (match.group(2), match.group(3)) if match else ("?", "?")
            path = uri.split("://", 1)[-1]
            files.append(LakeFile(name, dt, hour, int(task.file.file_size_in_bytes), path))
    return files


def compaction(settings: Settings, lane: str) -> Callable[[], Any] | None:
    """The lake's compaction of ``lane`` if its format has one (Iceberg), else None."""
    if settings.lake_format != "iceberg":
        return None
    return lambda: maintain_lane(settings, lane, compact=True, clean=False, grace_s=0.0)


def files_per_table_hour(files: list[LakeFile]) -> dict[str, Any]:
    per_hour = Counter((f.table, f.dt, f.hour) for f in files)
    counts = spread([float(n) for n in per_hour.values()])
    return {
        "files": len(files),
        "table_hours": len(per_hour),
        "bytes": sum(f.size for f in files),
        "per_table_hour": counts.as_dict(1) if counts else None,
        "mean": round(len(files) / len(per_hour), 2) if per_hour else None,
    }


def write_json_gzip(events_by_table: dict[str, list[bytes]], into: Path) -> int:
    """One gzip (level 6) newline-delimited JSON file per event type; their total bytes."""
    into.mkdir(parents=True, exist_ok=True)
    total = 0
    for table, lines in events_by_table.items():
        data = gzip.compress(b"\n".join(lines) + b"\n", 6)
        (into / f"{table}.json.gz").write_bytes(data)
        total += len(data)
    return total


def download(settings: Settings, files: list[LakeFile], into: Path) -> Path:
    """Copy the lake's files to local disk (Hive layout), so both formats are read from the same medium."""
    fs, _ = filesystem_for(settings)

    def copy(item: tuple[int, LakeFile]) -> None:
        index, file = item
        target = into / file.table / f"dt={file.dt}" / f"hour={file.hour}" / f"f{index:06d}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        with fs.open_input_stream(file.path) as stream:
            target.write_bytes(stream.read())

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(copy, enumerate(files)))
    return into


def _views(parquet_root: Path, json_root: Path) -> dict[str, str]:
    json_columns = "{'event_name': 'VARCHAR', 'user_id': 'VARCHAR', 'server_ts': 'BIGINT'}"
    parquet = (
        "SELECT event_name, user_id, server_ts FROM read_parquet("
        f"'{parquet_root}/*/*/*/*.parquet', union_by_name = true)"
    )
    return {
        "parquet": f"CREATE VIEW events AS {parquet}",
        "gzip JSON": "CREATE VIEW events AS SELECT event_name, user_id, to_timestamp(server_ts / 1000.0) "
        f"AS server_ts FROM read_json('{json_root}/*.json.gz', format = 'newline_delimited', "
        f"columns = {json_columns})",
        # The same rows already decoded into DuckDB's own table before the clock starts: what the query
        # costs with no file format at all, so the most any format can be faster than gzip JSON here.
        IN_MEMORY: f"CREATE TABLE events AS {parquet}",
    }


def query_comparison(
    parquet_root: Path, json_root: Path, repeat: int, query: str = AGGREGATION
) -> dict[str, Any]:
    """``query`` over both formats and over the rows in memory, ``repeat`` interleaved times each (a
    fresh connection each)."""
    views = _views(parquet_root, json_root)
    seconds: dict[str, list[float]] = {name: [] for name in views}
    answers: dict[str, list[tuple[Any, ...]]] = {}
    for rep in range(repeat):
        for name in sorted(views, reverse=rep % 2 == 1):
            connection = duckdb.connect()
            connection.execute("SET TimeZone = 'UTC'")
            connection.execute(views[name])
            started = time.perf_counter()
            answers[name] = connection.execute(query).fetchall()
            seconds[name].append(time.perf_counter() - started)
            connection.close()
    if any(answer != answers["gzip JSON"] for answer in answers.values()):
        raise RuntimeError("the aggregation gave different answers over Parquet, gzip JSON and memory")
    summary = {name: spread(values) for name, values in seconds.items()}
    return {
        "query": query,
        "groups": len(answers["parquet"]),
        "seconds": {name: s.as_dict(4) for name, s in summary.items() if s},
        "speedup": _ratios(seconds["gzip JSON"], seconds["parquet"]),
        "ceiling": _ratios(seconds["gzip JSON"], seconds[IN_MEMORY]),
    }


def _ratios(slow: list[float], fast: list[float]) -> dict[str, float | int] | None:
    # Per repetition: the two ran back to back, so their ratio shares that moment's load.
    ratios = spread([s / f for s, f in zip(slow, fast, strict=True) if f > 0])
    return ratios.as_dict(2) if ratios else None
