"""The exactly-once argument of the lake, exercised on the pure protocol with an in-memory store.

A flush writes its files, then the manifest. A crash can stop it after any number of file writes.
Replay restarts from the manifest with *different* batch boundaries. Whatever happens, each offset
must end up in exactly one stored file — with recovery deleting orphans, and even without it
(deterministic keys alone make a replay overwrite every orphan).
"""

from __future__ import annotations

import random

import orjson
import pytest

from core.lake.flush import plan_files
from core.lake.layout import PartitionValue, partition_for_ms
from core.lake.manifest import Manifest, orphan_files
from core.lake.records import LakeRow, decode

HOUR_MS = 3_600_000


def make_rows(rng: random.Random, count: int) -> list[LakeRow]:
    base = 1_800_000_000_000
    rows = []
    for offset in range(count):
        ts = base + rng.choice([0, 1, 2, 5]) * HOUR_MS + rng.randrange(HOUR_MS)  # out-of-order hours
        raw = orjson.dumps({"event_id": f"e{offset}", "server_ts": ts, "properties": {}})
        rows.append(decode(0, offset, ts, raw))
    return rows


def run_with_crashes(seed: int, delete_orphans: bool) -> dict[str, list[int]]:
    rng = random.Random(seed)
    rows = make_rows(rng, 400)
    store: dict[str, list[int]] = {}
    manifest_bytes: bytes | None = None
    for _attempt in range(30):
        manifest = Manifest.from_bytes(manifest_bytes) if manifest_bytes else Manifest("t", 0)
        if delete_orphans:
            for orphan in orphan_files(manifest, list(store)):
                del store[orphan]
        position = manifest.next_offset
        crashed = False
        while position < len(rows) and not crashed:
            size = rng.randint(1, 80)
            batch = rows[position : position + size]
            plans = plan_files("lane", "table", batch, "server")
            crash_after = rng.randint(0, len(plans)) if rng.random() < 0.4 else None
            for index, plan in enumerate(plans):
                if crash_after is not None and index == crash_after:
                    crashed = True
                    break
                store[plan.key] = [row.offset for row in plan.rows]
            if crashed or crash_after == len(plans):
                crashed = True  # died after the files, before the manifest
                break
            manifest = manifest.advanced(batch[-1].offset, len(batch), (p.key for p in plans))
            manifest_bytes = manifest.to_bytes()
            position = batch[-1].offset + 1
        if not crashed:
            return store
    raise AssertionError("never finished")


@pytest.mark.parametrize("delete_orphans", [True, False])
@pytest.mark.parametrize("seed", range(40))
def test_every_offset_lands_exactly_once_across_crashes_and_shifted_replays(
    seed: int, delete_orphans: bool
) -> None:
    store = run_with_crashes(seed, delete_orphans)
    offsets = sorted(offset for stored in store.values() for offset in stored)
    assert offsets == list(range(400))


def test_orphans_are_the_files_above_the_manifest() -> None:
    manifest = Manifest("t", 2, committed_offset=99)
    keys = [
        "l/t/dt=2026-01-01/hour=00/part-00002-00000000000000000050.parquet",
        "l/t/dt=2026-01-01/hour=01/part-00002-00000000000000000100.parquet",
        "l/t/dt=2026-01-01/hour=01/part-00001-00000000000000000500.parquet",  # another partition
        "l/t/_schema.json",
    ]
    assert orphan_files(manifest, keys) == [keys[1]]


def test_manifest_never_moves_back_and_round_trips() -> None:
    manifest = Manifest("t", 0).advanced(10, 11, ["a"]).advanced(20, 10, ["b", "c"])
    again = Manifest.from_bytes(manifest.to_bytes())
    assert again == manifest
    assert again.next_offset == 21
    assert again.rows == 21
    with pytest.raises(ValueError, match="cannot move back"):
        again.advanced(20, 1, [])


def test_file_keys_are_a_pure_function_of_the_data() -> None:
    rng = random.Random(3)
    rows = make_rows(rng, 50)
    first = [plan.key for plan in plan_files("l", "t", rows, "server")]
    second = [plan.key for plan in plan_files("l", "t", list(rows), "server")]
    assert first == second
    assert all("part-00000-" in key for key in first)
    value = partition_for_ms(rows[0].kafka_ts_ms)
    assert isinstance(value, PartitionValue)
