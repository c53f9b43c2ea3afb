"""The match-day simulator and its ground truth: deterministic, Zipf-shaped, surging, schema-valid."""

from __future__ import annotations

import random
import re
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from core.envelope import validate_event
from core.sim import MatchDaySimulator, SimConfig, TruthBuilder, catalogue, load_truth, property_specs
from core.sim.simulator import uuid4_text
from core.sim.truth import parse_window_key, window_key

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def _run(config: SimConfig, batch_size: int = 7_000) -> tuple[list[dict[str, Any]], TruthBuilder]:
    truth = TruthBuilder(config.lane, window_s=10, options={"seed": config.seed})
    events: list[dict[str, Any]] = []
    for batch in MatchDaySimulator(config).batches(batch_size):
        truth.add(batch)
        events.extend(batch)
    return events, truth


def test_catalogue_has_over_300_realistic_unique_topic_safe_names() -> None:
    names = catalogue()
    assert len(names) >= 300
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"[a-z0-9_]+", name) for name in names)
    for core in ("lobby_view", "team_create", "team_edit", "contest_join", "payment_success"):
        assert core in names
    assert "wallet_add_cash_initiated" in names


def test_property_schema_is_a_function_of_the_name() -> None:
    assert property_specs("contest_join") == property_specs("contest_join")
    kinds = {spec.name: spec.kind for spec in property_specs("payment_success")}
    assert kinds["amount"] == "double"
    assert kinds["payment_method"] == "string"


def test_same_seed_gives_byte_identical_truth_whatever_the_batch_size(tmp_path: Path) -> None:
    config = SimConfig(start_ms=START_MS, seed=7, users=2_000, events=20_000, base_rate=2_000)
    events_a, truth_a = _run(config, batch_size=1_000)
    events_b, truth_b = _run(config, batch_size=4_321)
    assert events_a == events_b
    truth_a.write(tmp_path / "a.json.gz")
    truth_b.write(tmp_path / "b.json.gz")
    assert (tmp_path / "a.json.gz").read_bytes() == (tmp_path / "b.json.gz").read_bytes()
    truth_a.write(tmp_path / "a.json")
    assert load_truth(tmp_path / "a.json") == load_truth(tmp_path / "a.json.gz")


def test_different_seed_gives_different_traffic() -> None:
    base = SimConfig(start_ms=START_MS, seed=1, users=2_000, events=5_000)
    events_a, truth_a = _run(base)
    events_b, truth_b = _run(SimConfig(start_ms=START_MS, seed=2, users=2_000, events=5_000))
    assert {e["event_id"] for e in events_a}.isdisjoint({e["event_id"] for e in events_b})
    assert truth_a.to_bytes() != truth_b.to_bytes()


def test_every_event_is_valid_unique_and_types_are_stable() -> None:
    config = SimConfig(start_ms=START_MS, users=3_000, events=30_000, event_types=350)
    events, truth = _run(config)
    seen_types: dict[tuple[object, str], str] = {}
    for event in events:
        validate_event(event)
        assert event["lane"] == "default"
        properties = event["properties"]
        assert isinstance(properties, dict)
        expected = {spec.name for spec in property_specs(str(event["event_name"]))}
        assert set(properties) == expected
        for key, value in properties.items():
            if value is None:
                continue
            kind = type(value).__name__
            assert seen_types.setdefault((event["event_name"], key), kind) == kind
    assert len({e["event_id"] for e in events}) == len(events) == 30_000
    assert sum(truth.build().counts.values()) == 30_000
    server = [e["server_ts"] for e in events]
    assert server == sorted(server)
    assert {e["platform"] for e in events} == {"android", "ios", "web"}


def test_event_names_are_zipf_popular() -> None:
    config = SimConfig(start_ms=START_MS, users=2_000, events=60_000, event_types=100, zipf_s=1.1)
    events, _ = _run(config)
    counts = Counter(e["event_name"] for e in events)
    names = catalogue()[:100]
    assert set(counts) <= set(names)
    first, second, tenth = counts[names[0]], counts[names[1]], counts[names[9]]
    # Zipf with s = 1.1: rank 1 : rank 2 : rank 10 ≈ 1 : 0.47 : 0.079.
    assert second / first == pytest.approx(2**-1.1, rel=0.1)
    assert tenth / first == pytest.approx(10**-1.1, rel=0.2)


def test_surge_at_match_start_raises_events_and_users() -> None:
    config = SimConfig(
        start_ms=START_MS,
        users=20_000,
        events=None,
        duration_s=60,
        base_rate=500,
        surge_at_s=20,
        surge_factor=4,
        surge_decay_s=30,
    )
    events, truth = _run(config)
    per_second = Counter((e["server_ts"] - START_MS) // 1000 for e in events)
    assert max(per_second) == 59
    assert per_second[5] == 500
    assert per_second[25] > 3 * per_second[5]
    built = truth.build()  # 10-second windows
    before = built.distinct_users[START_MS + 0]
    during = built.distinct_users[START_MS + 20_000]
    assert during > 2 * before


def test_clock_is_exact_for_window_tests() -> None:
    config = SimConfig(
        start_ms=START_MS, users=500, events=None, duration_s=30, base_rate=100, surge_factor=1
    )
    events, truth = _run(config)
    assert len(events) == 3_000
    built = truth.build()
    assert built.first_server_ts is not None
    assert built.first_server_ts >= START_MS
    assert built.last_server_ts is not None
    assert built.last_server_ts < START_MS + 30_000
    assert sorted(built.distinct_users) == [START_MS, START_MS + 10_000, START_MS + 20_000]
    platforms = built.distinct_users_by["platform"]
    for window, total in built.distinct_users.items():
        assert sum(platforms[p].get(window, 0) for p in platforms) == total  # a user has one platform


def test_window_keys_are_utc_iso() -> None:
    assert window_key(START_MS + 60_000) == "2026-01-01T00:01:00Z"
    assert parse_window_key("2026-01-01T00:01:00Z") == START_MS + 60_000


def test_event_ids_are_the_seeded_uuid4_text() -> None:
    rng = random.Random(11)
    for _ in range(2_000):
        bits = rng.getrandbits(128)
        assert uuid4_text(bits) == str(uuid.UUID(int=bits, version=4))


def test_sessions_end_and_users_come_back_after_a_gap() -> None:
    config = SimConfig(
        start_ms=START_MS,
        users=300,
        events=None,
        duration_s=900,
        base_rate=40,
        surge_factor=1,
        mean_gap_s=60,
        mean_session_events=10,
    )
    events, _ = _run(config)
    spans: dict[str, list[int]] = {}
    for event in events:
        span = spans.setdefault(event["session_id"], [event["server_ts"], event["server_ts"]])
        span[1] = event["server_ts"]
    by_user: dict[str, list[list[int]]] = {}
    for session_id, span in spans.items():
        by_user.setdefault(session_id.split("-")[0], []).append(span)
    gaps = sorted(
        later[0] - earlier[1]
        for sessions in by_user.values()
        for earlier, later in zip(sorted(sessions), sorted(sessions)[1:], strict=False)
    )
    assert len(gaps) > 500  # users have many sessions
    assert all(gap >= 0 for gap in gaps)  # one session at a time per user
    assert gaps[len(gaps) // 2] >= 30_000  # median gap: exponential(60 s) median is 41.6 s, plus re-entry
    mean_events = len(events) / len(spans)
    assert 5 <= mean_events <= 15
