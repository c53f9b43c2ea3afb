"""``highway query --tables`` and ``--describe`` on a ``file://`` lake of Iceberg tables (the embedded
SQLite catalog): what they report comes from the catalog and the current snapshot, not the storage."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from connectors.iceberg_lake import IcebergLake
from core.lake.flush import PartitionBuffer
from core.lake.iceberg_commit import IcebergCommitter
from core.lake.records import RawRecord
from core.settings import Settings
from highway.cli import app as cli_app

A0 = ("l.event.a", 0)


class Offsets:
    def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        pass


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as executor:
        yield executor


def query_cli(settings: Settings, *args: str) -> Any:
    env = {"HIGHWAY_LAKE_URI": settings.lake_uri, "HIGHWAY_LANES": "l", "HIGHWAY_LAKE_FORMAT": "iceberg"}
    return CliRunner().invoke(cli_app, ["query", *args], env=env)


def test_tables_and_describe_read_the_catalog_not_the_storage(
    tmp_path: Any, pool: ThreadPoolExecutor
) -> None:
    """Rows, files, bytes and partitions of the current snapshot; a file no snapshot references (a
    crashed flush's) is not counted; columns carry their Iceberg types and the property they hold."""
    settings = Settings(lake_uri=f"file://{tmp_path}/lake", lanes=["l"], lake_format="iceberg")
    hour_ms = 1_790_000_000_000 - 1_790_000_000_000 % 3_600_000
    committer = IcebergCommitter(settings, IcebergLake(settings, {}), pool)
    committer.recover([A0])
    for start in (0, 4):  # two flushes; offsets 6 and 7 in the next hour
        buffer = PartitionBuffer(*A0)
        for offset in range(start, start + 4):
            ts = hour_ms + (3_600_000 if offset >= 6 else 0)
            amount: Any = offset if offset < 5 else f"n{offset}"  # a string: the p_amount__string sibling
            event = {"event_id": f"e{offset}", "server_ts": ts, "properties": {"amount": amount}}
            buffer.add(RawRecord(0, offset, ts, orjson.dumps(event)), 0.0)
        assert committer.flush([buffer], Offsets()).rows == 4
    stray = tmp_path / "lake" / "l" / "a" / "data" / "dt=2020-01-01" / "hour=00" / "stray.parquet"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"x")

    listed = query_cli(settings, "--tables", "-o", "json")
    assert listed.exit_code == 0, listed.output
    rows = [orjson.loads(line) for line in listed.stdout.splitlines()]
    assert [row["table"] for row in rows] == ["a"]
    assert (rows[0]["rows"], rows[0]["files"], rows[0]["partitions"]) == (8, 3, 2)
    assert (rows[0]["first_partition"], rows[0]["last_partition"]) == (
        "dt=2026-09-21/hour=14",
        "dt=2026-09-21/hour=15",
    )
    assert rows[0]["bytes"] > 0

    described = query_cli(settings, "--describe", "a", "-o", "json")
    assert described.exit_code == 0, described.output
    doc = orjson.loads(described.stdout)
    table = IcebergLake(settings, {}).tables.load("l", "a")
    assert table is not None
    snapshot = table.current_snapshot()
    assert snapshot is not None
    assert doc["snapshot_id"] == snapshot.snapshot_id
    assert (doc["rows"], doc["files"], doc["partitions"], doc["max_files_per_partition"]) == (8, 3, 2, 2)
    assert doc["offsets"] == {"l.event.a/0": 8}
    assert doc["location"] == f"file://{tmp_path}/lake/l/a"
    columns = {column["name"]: column for column in doc["columns"]}
    assert columns["p_amount"] == {"name": "p_amount", "type": "long", "property": "amount"}
    assert columns["p_amount__string"] == {"name": "p_amount__string", "type": "string", "property": "amount"}
    assert columns["server_ts"] == {"name": "server_ts", "type": "timestamptz"}

    as_csv = query_cli(settings, "--describe", "a", "-o", "csv")
    assert as_csv.exit_code == 0, as_csv.output
    assert as_csv.stdout.splitlines()[0] == "name,type,property"
    assert "p_amount__string,string,amount" in as_csv.stdout.splitlines()
    human = query_cli(settings, "--describe", "a")
    assert human.exit_code == 0, human.output
    assert "p_amount__string" in human.stdout
    assert str(doc["snapshot_id"]) in human.stdout  # an id, not a number with thousands separators
    missing = query_cli(settings, "--describe", "nope")
    assert missing.exit_code == 1
    assert "no table 'nope' in lane 'l'" in missing.output


def test_an_empty_iceberg_table_is_listed_with_zeros(tmp_path: Any) -> None:
    settings = Settings(lake_uri=f"file://{tmp_path}/lake", lanes=["l"], lake_format="iceberg")
    IcebergLake(settings, {}).tables.ensure("l", "empty")
    listed = query_cli(settings, "--tables", "-o", "json")
    assert listed.exit_code == 0, listed.output
    assert orjson.loads(listed.stdout) == {
        "table": "empty",
        "rows": 0,
        "files": 0,
        "bytes": 0,
        "partitions": 0,
        "first_partition": None,
        "last_partition": None,
    }
