"""Analytics end to end: simulator events → router → lake (both formats) → the common table, the
funnel and path queries and the worker's HTTP API, against values computed in plain Python from the
simulator's own events (tests/analytics_reference.py, not the SQL)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import httpx
import orjson
import pytest
from typer.testing import CliRunner

from bench.analytics_data import common_rows, write_lake_files
from connectors.lake_query import run_query
from connectors.simulator_feed import produce_simulated_traffic
from core.lake.layout import COMMON_TABLE
from core.settings import Settings
from core.sim import MatchDaySimulator, SimConfig
from highway.cli import app
from tests import analytics_reference as reference
from tests.support import TEST_API_TOKEN, WorkerProcess, settings_env, wait_until

pytestmark = pytest.mark.integration

ANALYTICS_SETTINGS: dict[str, Any] = {
    "lake_flush_age_s": 1.0,
    "lake_flush_rows": 2_000,
    "lake_topic_rescan_s": 2.0,
    "topic_partitions": 2,
    "api_token": TEST_API_TOKEN,
}
WITHIN_MS = 5 * 60_000


def simulated(lane: str) -> tuple[SimConfig, list[dict[str, Any]]]:
    config = SimConfig(
        start_ms=(int(time.time() * 1000) // 60_000 - 120) * 60_000,
        seed=11,
        users=400,
        event_types=8,
        events=6_000,
        base_rate=50.0,
        lane=lane,
        mean_session_events=12.0,
        mean_gap_s=30.0,
    )
    return config, [event for batch in MatchDaySimulator(config).batches(1_000) for event in batch]


def common_ids(settings: Settings) -> Counter[str]:
    try:
        _, rows = run_query(settings, f'SELECT event_id FROM "{COMMON_TABLE}"', settings.lanes[0])
    except duckdb.CatalogException:  # no flush of the common topic yet
        return Counter()
    return Counter(row[0] for row in rows)


def get(worker: WorkerProcess, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{worker.base_url}{path}", params=params, headers=worker.auth_headers, timeout=60.0)


@pytest.mark.parametrize("lake_format", ["iceberg", "parquet"])
def test_simulator_events_give_the_reference_funnel_paths_and_history(
    make_settings: Any, lake_format: str
) -> None:
    settings = make_settings(**ANALYTICS_SETTINGS, lake_format=lake_format)
    lane = settings.lanes[0]
    config, events = simulated(lane)
    names = [name for name, _ in Counter(event["event_name"] for event in events).most_common(3)]
    with WorkerProcess(settings, roles="router,lake,realtime") as worker:
        worker.wait_healthy()
        produce_simulated_traffic(settings, config, lane)
        expected_ids = {event["event_id"] for event in events}
        stored = wait_until(
            lambda: ids if len(ids := common_ids(settings)) >= len(expected_ids) else None,
            120,
            1.0,
            f"{len(expected_ids)} events in the common table",
        )
        assert set(stored) == expected_ids
        assert max(stored.values()) == 1, "an event_id is in the common table more than once"

        # Funnel: the API against the reference, overall and by platform, both orders.
        for order in ("relaxed", "strict"):
            response = get(
                worker,
                "/api/v1/funnel",
                lane=lane,
                steps=",".join(names),
                within="5m",
                by="platform",
                order=order,
            )
            assert response.status_code == 200, response.text
            answer = response.json()
            truth = reference.funnel(events, names, WITHIN_MS, strict=order == "strict", by="platform")
            assert [step["users"] for step in answer["steps"]] == truth["users"], order
            medians = [step["median_seconds_to_convert"] for step in answer["steps"]]
            assert medians == pytest.approx(truth["medians_s"])
            assert {k: [s["users"] for s in v] for k, v in answer["groups"].items()} == truth["groups"]
        assert truth["users"][0] > 0
        relaxed = reference.funnel(events, names, WITHIN_MS)
        assert relaxed["users"][2] > 0, "the simulated data should reach the last step"

        # Paths after and before the most common event.
        for direction in ("after", "before"):
            response = get(
                worker, "/api/v1/paths", lane=lane, event=names[0], direction=direction, depth=2, top=1000
            )
            assert response.status_code == 200, response.text
            answer = response.json()
            truth_paths = reference.paths(events, names[0], 2, before=direction == "before")
            assert {tuple(path["steps"]): path["users"] for path in answer["paths"]} == dict(truth_paths)
            assert answer["users"] == sum(truth_paths.values())
            assert answer["sankey"]["nodes"][0]["name"] == names[0]

        # A user's history, alone and inside the realtime user view.
        user = events[-1]["user_id"]
        mine = [event for event in events if event["user_id"] == user]
        response = get(worker, f"/api/v1/users/{user}/history", lane=lane, last=3)
        assert response.status_code == 200, response.text
        history = response.json()
        assert history["events"] == len(mine)
        assert history["sessions"] == len({event["session_id"] for event in mine})
        assert history["platforms"] == sorted({event["platform"] for event in mine})
        latest = sorted(mine, key=lambda event: (event["server_ts"], event["event_id"]))[-3:][::-1]
        assert [event["event_id"] for event in history["last_events"]] == [
            event["event_id"] for event in latest
        ]
        combined = get(worker, f"/api/v1/users/{user}", lane=lane, last=1)
        assert combined.status_code == 200, combined.text
        assert combined.json()["history"]["events"] == len(mine)

        # Behind the token; bad parameters are named.
        assert (
            httpx.get(f"{worker.base_url}/api/v1/funnel", params={"steps": "a,b"}, timeout=10).status_code
            == 401
        )
        bad = get(worker, "/api/v1/funnel", lane=lane, steps=",".join(names), within="soon")
        assert bad.status_code == 400
        assert "within" in bad.json()["error"]
        assert "depth" in get(worker, "/api/v1/paths", lane=lane, event="x", depth=0).json()["error"]
        assert "lane" in get(worker, "/api/v1/funnel", lane="nope", steps="a,b").json()["error"]


def test_segment_to_a_kafka_topic_delivers_each_user_id_once(make_settings: Any, tmp_path: Path) -> None:
    from highway.verify.kafka_read import scan_topics

    settings = make_settings(lake_uri=f"file://{tmp_path}/lake", lake_format="parquet")
    lane = settings.lanes[0]
    rows = common_rows(3_000, 200, int(time.time() * 1000) - 3_600_000, seed=2, rate=10.0)
    write_lake_files(rows, tmp_path / "lake", lane)
    topic = f"{lane}.segments.android"
    env = settings_env(settings)
    result = CliRunner().invoke(
        app,
        ["segment", """SELECT user_id FROM "events--common" WHERE platform = 'android'""", "--topic", topic],
        env=env,
    )
    assert result.exit_code == 0, result.output
    expected = Counter(
        {
            user: 1
            for user, platform in zip(rows["user_id"].to_pylist(), rows["platform"].to_pylist(), strict=True)
            if platform == "android"
        }
    )
    delivered: Counter[str] = Counter()

    def take(batch: list[Any]) -> None:
        for message in batch:
            assert message.key().decode() == orjson.loads(message.value())["user_id"]
            delivered[message.key().decode()] += 1

    scan_topics(settings, [topic], take)
    assert delivered == expected
    assert len(expected) > 10
