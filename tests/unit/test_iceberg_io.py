"""The lake's FileIO answers the Avro metadata it wrote itself from memory: a table's next commit reads
its previous manifest list, and every new manifest's length, without a request to storage."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from pyiceberg.io.pyarrow import PyArrowFile

import connectors.iceberg_io as iceberg_io
from connectors.iceberg_catalog import open_catalog
from connectors.iceberg_io import LakeFileIO, WrittenFiles, written_files
from connectors.iceberg_lake import IcebergLake
from core.lake.columnar import FlushBatch
from core.lake.flush import MemoryBudget, split_memory_cap
from core.lake.records import RawRecord
from core.settings import Settings
from tests.support import contest_join

TS = int(datetime(2026, 3, 1, 12, 30, tzinfo=UTC).timestamp() * 1000)


def test_written_files_keep_the_newest_within_the_budget() -> None:
    files = WrittenFiles(budget=10)
    files.put("a.avro", b"1234")
    files.put("b.avro", b"5678")
    assert files.get("a.avro") == b"1234"  # now the most recently used
    files.put("c.avro", b"90ab")  # 12 bytes: the least recently used (b) leaves
    assert files.get("b.avro") is None
    assert files.get("a.avro") == b"1234"
    assert files.get("c.avro") == b"90ab"
    files.put("huge.avro", b"x" * 11)  # larger than the whole budget: not kept, nothing evicted
    assert files.get("huge.avro") is None
    assert files.get("c.avro") == b"90ab"
    files.forget("a.avro")
    assert files.get("a.avro") is None


def test_a_smaller_budget_drops_the_least_recently_used_at_once() -> None:
    files = WrittenFiles(budget=12)
    for name in ("a", "b", "c"):
        files.put(f"{name}.avro", b"1234")
    assert files.get("a.avro") == b"1234"  # b is now the least recently used
    files.resize(8)
    assert files.total_bytes == 8
    assert files.get("b.avro") is None
    assert files.get("a.avro") == files.get("c.avro") == b"1234"
    files.resize(0)
    files.put("d.avro", b"1")
    assert files.total_bytes == 0


def test_the_metadata_cache_is_carved_out_of_the_lake_memory_cap(tmp_path: Path) -> None:
    assert split_memory_cap(512 << 20, "iceberg") == MemoryBudget(448 << 20, 64 << 20)
    assert split_memory_cap(80 << 20, "iceberg") == MemoryBudget(70 << 20, 10 << 20)
    assert split_memory_cap(80 << 20, "parquet") == MemoryBudget(80 << 20, 0)
    before = written_files.budget
    try:
        settings = Settings(lake_uri=f"file://{tmp_path}/lake", lake_max_buffered_bytes=80 << 20)
        open_catalog(settings)
        assert written_files.budget == 10 << 20
    finally:
        written_files.resize(before)


def test_an_avro_file_it_wrote_is_read_back_from_memory_and_forgotten_on_delete(tmp_path: Path) -> None:
    io = LakeFileIO()
    location = f"file://{tmp_path}/metadata/snap-1.avro"
    output = io.new_output(location)
    with output.create() as stream:
        stream.write(b"Obj\x01")
        stream.write(b"rest")
        assert stream.tell() == 8
    assert len(output) == 8
    on_disk = tmp_path / "metadata" / "snap-1.avro"
    on_disk.unlink()  # only memory can answer now
    with io.new_input(location).open() as stream:
        assert stream.read() == b"Obj\x01rest"
    on_disk.write_bytes(b"Obj\x01rest")
    io.delete(location)
    assert not io.new_input(location).exists()


def test_data_files_are_not_kept(tmp_path: Path) -> None:
    io = LakeFileIO()
    location = f"file://{tmp_path}/data/f.parquet"
    with io.new_output(location).create() as stream:
        stream.write(b"PAR1")
    (tmp_path / "data" / "f.parquet").unlink()
    with pytest.raises(FileNotFoundError):
        io.new_input(location).open()


def test_a_file_whose_write_failed_is_not_remembered(tmp_path: Path) -> None:
    class FailingStream:
        closed = False

        def write(self, data: bytes) -> int:
            return len(data)

        def close(self) -> None:
            raise OSError("PUT refused")

    files = WrittenFiles(budget=1 << 20)
    stream = iceberg_io._RecordingStream(FailingStream(), "s3://b/m.avro", files)
    stream.write(b"abc")
    with pytest.raises(OSError, match="PUT refused"):
        stream.close()
    assert files.get("s3://b/m.avro") is None


def test_a_tables_next_commits_read_no_avro_metadata_from_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_from_storage: list[str] = []
    plain_open, plain_len = PyArrowFile.open, PyArrowFile.__len__

    def recorded_open(self: PyArrowFile, seekable: bool = True) -> Any:
        read_from_storage.append(self.location)
        return plain_open(self, seekable)

    def recorded_len(self: PyArrowFile) -> int:
        read_from_storage.append(self.location)
        return plain_len(self)

    monkeypatch.setattr(PyArrowFile, "open", recorded_open)
    monkeypatch.setattr(PyArrowFile, "__len__", recorded_len)
    settings = Settings(lake_uri=f"file://{tmp_path}/lake", lanes=["l"], lake_format="iceberg")
    lake = IcebergLake(settings, {})
    offset = 0
    for commit in range(3):
        span = range(offset, offset + 50)
        records = [RawRecord(0, n, TS + n, orjson.dumps(contest_join(n, TS + n))) for n in span]
        read_from_storage.clear()
        expected = {"l.event.a/0": offset if commit else None}
        appended = lake.append("l", "a", FlushBatch(records), expected, {"l.event.a/0": offset + 50})
        assert appended.files == 1
        offset += 50
        assert [location for location in read_from_storage if location.endswith(".avro")] == []
    table = lake.tables.load("l", "a")
    assert table is not None
    assert len(table.snapshots()) == 3
    assert table.scan().to_arrow().num_rows == 150  # every commit's manifests still reach every row
