"""Plugins on the real broker: the example contest-conversion plugin in a worker subprocess.

The worker runs only the ``realtime`` role (plugins load whatever the roles) with
``HIGHWAY_PLUGINS=highway_examples.contest_conversion`` and ``examples/`` on ``PYTHONPATH``. Events
are written to the lane's common topic exactly as the router writes them (compact JSON of the common
attributes, key = user id), plus one record with an unknown extra key and one that is not JSON; the
test waits until ``/metrics`` shows exactly the figures computed here from the very events produced.
"""

from __future__ import annotations

import os
import uuid
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from connectors.kafka_admin import KafkaAdmin
from connectors.producer import EventProducer
from core.envelope import common_projection, encode_json
from core.settings import Settings
from tests.support import WorkerProcess, wait_until

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PLUGIN = "highway_examples.contest_conversion"


def envelope(user: str, platform: str, name: str, lane: str) -> dict[str, Any]:
    return {
        "event_name": name,
        "event_id": str(uuid.uuid4()),
        "user_id": user,
        "session_id": f"s-{user}",
        "lane": lane,
        "platform": platform,
        "app_version": "1.0",
        "device_id": f"d-{user}",
        "client_ts": 1_700_000_000_000,
        "server_ts": 1_700_000_000_000,
        "properties": {"sport": "cricket"},
    }


class Truth:
    """Distinct lobby/join users per platform, and events, of everything produced so far."""

    def __init__(self, lane: str) -> None:
        self.lane = lane
        self.users: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.events = 0

    def batch(self, rows: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
        out = []
        for user, platform, name in rows:
            if name in ("lobby_view", "contest_join"):
                self.users[(name, platform)].add(user)
            self.events += 1
            out.append(envelope(user, platform, name, self.lane))
        return out

    def expected(self) -> dict[tuple[str, str], float]:
        figures: dict[tuple[str, str], float] = {}
        for platform in {platform for _, platform in self.users}:
            lobby = len(self.users[("lobby_view", platform)])
            join = len(self.users[("contest_join", platform)])
            figures[("highway_plugin_contest_lobby_users", platform)] = lobby
            figures[("highway_plugin_contest_join_users", platform)] = join
            if lobby:
                figures[("highway_plugin_contest_conversion_ratio", platform)] = join / lobby
        return figures


def rows_for(users: range, platform: str, join_every: int) -> list[tuple[str, str, str]]:
    """Each user views the lobby twice; every ``join_every``-th joins twice; all send other events."""
    rows = []
    for n in users:
        user = str(n) if n % 2 else f"user-{n}"
        rows += [(user, platform, "lobby_view"), (user, platform, "contest_list_view")]
        if n % join_every == 0:
            rows += [(user, platform, "contest_join"), (user, platform, "contest_join_success")]
            rows.append((user, platform, "contest_join"))
        rows.append((user, platform, "lobby_view"))
    return rows


def produce_as_router(settings: Settings, events: list[dict[str, Any]], odd: Sequence[bytes] = ()) -> None:
    topic = settings.common_topic(settings.lanes[0])
    with EventProducer(settings) as producer:
        for event in events:
            producer.produce_raw(topic, encode_json(common_projection(event)), event["user_id"].encode())
        for raw in odd:
            producer.produce_raw(topic, raw, b"odd")


def samples(worker: WorkerProcess) -> dict[tuple[str, str], float]:
    text = httpx.get(f"{worker.base_url}/metrics", timeout=5).text
    lane = worker.settings.lanes[0]
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("highway_plugin_") and sample.labels.get("lane", lane) == lane:
                found[(sample.name, sample.labels.get("platform") or sample.labels.get("topic", ""))] = (
                    sample.value
                )
    return found


def wait_for_events(worker: WorkerProcess, count: int, undecodable: int = 0) -> dict[tuple[str, str], float]:
    """Until the plugin has seen ``count`` events and counted ``undecodable`` bad messages: the bad
    ones sit on other partitions than some good ones, so they may be counted last."""
    bad = (
        "highway_plugin_undecodable_messages_total",
        worker.settings.common_topic(worker.settings.lanes[0]),
    )

    def seen() -> dict[tuple[str, str], float] | None:
        try:
            found = samples(worker)
        except httpx.HTTPError:
            return None
        enough = found.get(("highway_plugin_contest_events_total", ""), 0) >= count
        return found if enough and found.get(bad, 0) >= undecodable else None

    return wait_until(seen, 120, 0.5, f"{count} events seen by the plugin")


def test_contest_conversion_plugin_publishes_exact_figures(make_settings: Any) -> None:
    settings: Settings = make_settings(plugins=[PLUGIN])
    lane = settings.lanes[0]
    KafkaAdmin(settings).ensure_topics([settings.common_topic(lane)], partitions=3)
    pythonpath = os.pathsep.join(filter(None, [str(EXAMPLES), os.environ.get("PYTHONPATH")]))
    truth = Truth(lane)
    first = truth.batch(
        rows_for(range(1, 31), "ios", 3)
        + rows_for(range(31, 51), "android", 4)
        + rows_for(range(51, 58), "web", 7)
    )
    extra_key = {**common_projection(envelope("extra-1", "web", "lobby_view", lane)), "unexpected": {"x": 1}}
    truth.users[("lobby_view", "web")].add("extra-1")
    truth.events += 1

    with WorkerProcess(settings, roles="realtime", extra_env={"PYTHONPATH": pythonpath}) as worker:
        worker.wait_healthy()
        produce_as_router(settings, first, odd=[orjson.dumps(extra_key), b"\xff not json"])
        found = wait_for_events(worker, truth.events, undecodable=1)
        assert found.pop(("highway_plugin_contest_events_total", "")) == truth.events
        assert found.pop(("highway_plugin_undecodable_messages_total", settings.common_topic(lane))) == 1
        assert {
            key: value for key, value in found.items() if not key[0].endswith("_created")
        } == truth.expected()

        # Replays of known users change nothing; new users move the figures.
        second = truth.batch(rows_for(range(1, 11), "ios", 3) + rows_for(range(100, 112), "ios", 2))
        produce_as_router(settings, second)
        found = wait_for_events(worker, truth.events)
        assert found.pop(("highway_plugin_contest_events_total", "")) == truth.events
        found.pop(("highway_plugin_undecodable_messages_total", settings.common_topic(lane)))
        assert {
            key: value for key, value in found.items() if not key[0].endswith("_created")
        } == truth.expected()
        assert truth.expected()[("highway_plugin_contest_conversion_ratio", "ios")] == 16 / 42
