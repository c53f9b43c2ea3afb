"""`highway produce --via-collector`: the simulator's events through the Python client, not Kafka."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.sim import load_truth
from highway.cli import app
from tests.collector_support import FakeCollector


@pytest.fixture
def fake() -> Iterator[FakeCollector]:
    server = FakeCollector()
    yield server
    server.close()


def test_simulated_events_go_through_the_collector_once_each(fake: FakeCollector, tmp_path: Path) -> None:
    truth_path = tmp_path / "truth.json"
    fake.script.append((503, {"Retry-After": "0"}, {"error": "broker away"}))
    args = ["produce", "-n", "1200", "--users", "50", "--via-collector", fake.url, "--key", "k1"]
    args += ["--collector-batch", "500", "--truth", str(truth_path)]
    result = CliRunner().invoke(app, args, env={"HIGHWAY_LANES": "web"})
    assert result.exit_code == 0, result.output
    received = fake.received
    assert received[0].answered == 503
    assert received[0].events == received[1].events  # the retry resent the same batch
    assert {r.query["lane"][0] for r in received} == {"web"}
    assert {r.headers["Authorization"] for r in received} == {"Bearer k1"}
    ids = fake.event_ids_answered_ok()
    assert len(ids) == len(set(ids)) == 1200
    assert set(ids) == load_truth(truth_path).all_event_ids()


def test_via_collector_needs_a_key() -> None:
    result = CliRunner().invoke(app, ["produce", "--via-collector", "http://127.0.0.1:9"])
    assert result.exit_code != 0
    assert "--key" in result.output


def test_an_unreachable_collector_fails_the_run_quickly_naming_what_was_not_delivered(tmp_path: Path) -> None:
    gone = FakeCollector()
    gone.close()  # nothing listens on its port any more
    truth_path = tmp_path / "truth.json"
    args = ["produce", "-n", "3000", "--via-collector", gone.url, "--key", "k1", "--collector-timeout", "0.5"]
    result = CliRunner().invoke(app, [*args, "--truth", str(truth_path)], env={"HIGHWAY_LANES": "web"})
    assert result.exit_code != 0
    assert "not delivered to the collector" in result.output
    assert not truth_path.exists()
