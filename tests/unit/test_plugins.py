"""Plugins without a broker: loading errors, metric helpers, record decoding, the example's counting."""

from __future__ import annotations

import asyncio
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import faust
import orjson
import pytest
from faust.exceptions import ValueDecodeError
from faust.types import Message
from prometheus_client import CollectorRegistry, generate_latest

from core.envelope import common_projection, encode_json
from core.errors import ConfigError
from core.routing.naming import event_topic_for
from core.settings import Settings
from streams.app import create_app
from streams.plugins import CommonAttributes, Event, PluginContext, TolerantTopic, load_plugins
from tests.conftest import isolated_settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))  # what PYTHONPATH=examples does for a worker

from highway_examples.contest_conversion import Conversion  # noqa: E402


def event(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_name": "lobby_view",
        "event_id": str(uuid.uuid4()),
        "user_id": "u1",
        "session_id": "s1",
        "lane": "a",
        "platform": "ios",
        "app_version": "1.0",
        "device_id": "d1",
        "client_ts": 1_700_000_000_000,
        "server_ts": 1_700_000_000_001,
        "properties": {"sport": "cricket"},
    }
    return {**base, **overrides}


def app() -> faust.App:
    return faust.App(f"test-{uuid.uuid4().hex[:6]}", broker="kafka://127.0.0.1:1", autodiscover=False)


def context(name: str = "p1", settings: Settings | None = None, **kw: Any) -> PluginContext:
    settings = settings or isolated_settings(lanes=["a", "b"])
    return PluginContext(app(), settings, CollectorRegistry(), name, **kw)


def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> str:
    name = f"plugin_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def load(*plugins: str) -> CollectorRegistry:
    registry = CollectorRegistry()
    load_plugins(app(), isolated_settings(plugins=list(plugins)), registry)
    return registry


# --- loading ---


def test_missing_module_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"'no_such_pkg\.stats'.*cannot be imported"):
        load("no_such_pkg.stats")


def test_module_without_setup_is_a_config_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = write_module(tmp_path, monkeypatch, "VALUE = 1\n")
    with pytest.raises(ConfigError, match=rf"'{name}' has no setup\(highway\) function"):
        load(name)


def test_failing_setup_and_duplicate_listing_name_the_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = write_module(tmp_path, monkeypatch, "def setup(highway):\n    raise RuntimeError('boom')\n")
    with pytest.raises(ConfigError, match=rf"'{name}': setup failed: RuntimeError: boom"):
        load(name)
    ok = write_module(tmp_path, monkeypatch, "def setup(highway):\n    pass\n")
    with pytest.raises(ConfigError, match=rf"'{ok}' is listed twice"):
        load(ok, ok)


def test_setup_receives_a_context_per_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = "SEEN = []\ndef setup(highway):\n    SEEN.append((highway.name, highway.settings.lanes))\n"
    first, second = write_module(tmp_path, monkeypatch, body), write_module(tmp_path, monkeypatch, body)
    load(first, second)
    for name in (first, second):
        seen = sys.modules[name].SEEN
        assert seen == [(name, ["default"])]


# --- metrics ---


def test_metric_helpers_prefix_names_and_register_on_the_worker_registry() -> None:
    ctx = context()
    ctx.counter("seen", "events seen", ["lane"]).labels("a").inc(3)
    ctx.gauge("ratio", "a ratio").set(0.5)
    ctx.histogram("delay_seconds", "delay", buckets=(1.0, 2.0)).observe(1.5)
    text = generate_latest(ctx.registry).decode()
    assert 'highway_plugin_seen_total{lane="a"} 3.0' in text
    assert "highway_plugin_ratio 0.5" in text
    assert 'highway_plugin_delay_seconds_bucket{le="2.0"} 1.0' in text


def test_a_second_plugin_cannot_register_the_same_metric_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = "def setup(highway):\n    highway.gauge('shared', 'x')\n"
    first, second = write_module(tmp_path, monkeypatch, body), write_module(tmp_path, monkeypatch, body)
    with pytest.raises(ConfigError, match=rf"'{second}'.*'highway_plugin_shared'.*by plugin '{first}'"):
        load(first, second)


def test_duplicate_and_invalid_metric_names_are_config_errors() -> None:
    ctx = context()
    ctx.counter("hits", "x")
    with pytest.raises(ConfigError, match="already registered by plugin 'p1'"):
        ctx.counter("hits_total", "same series")
    with pytest.raises(ConfigError, match="already registered"):
        ctx.gauge("hits", "another kind, same name")
    with pytest.raises(ConfigError, match=r"'highway_plugin_bad name'"):
        ctx.gauge("bad name", "x")


def test_a_worker_without_plugins_shows_no_plugin_metrics_or_agents(tmp_path: Path) -> None:
    settings = isolated_settings(state_dir=tmp_path)
    registry = CollectorRegistry()
    worker = create_app(settings, ["realtime"], registry)
    assert "highway_plugin_" not in generate_latest(registry).decode()
    assert not [name for name in worker.agents if "contest_conversion" in name]


def test_the_example_plugin_declares_an_agent_per_lane(tmp_path: Path) -> None:
    settings = isolated_settings(
        state_dir=tmp_path, lanes=["a", "b"], plugins=["highway_examples.contest_conversion"]
    )
    worker = create_app(settings, ["realtime"], CollectorRegistry())
    agents = {name: agent for name, agent in worker.agents.items() if "contest_conversion" in name}
    assert sorted(agents) == [
        "highway_examples.contest_conversion.a",
        "highway_examples.contest_conversion.b",
    ]
    topics = {agent.channel.get_topic_name() for agent in agents.values()}
    assert topics == {settings.common_topic("a"), settings.common_topic("b")}


# --- topics and decoding ---


def decode(topic: Any, raw: bytes) -> Any:
    return topic.app.serializers.loads_value(topic.value_type, raw, serializer=topic.value_serializer)


def test_common_topic_decodes_what_the_router_writes_and_drops_extra_keys() -> None:
    ctx = context()
    topic = ctx.common_topic("a")
    assert topic.get_topic_name() == ctx.settings.common_topic("a")
    original = event()
    record = decode(topic, encode_json(common_projection(original)))
    assert isinstance(record, CommonAttributes)
    assert record.asdict() == common_projection(original)
    odd = {**common_projection(original), "extra": [1], "asdict": 3, "__faust": {"ns": "x.Y"}}
    record = decode(topic, orjson.dumps(odd))
    assert record.asdict() == common_projection(original)
    assert not hasattr(record, "extra")
    assert callable(record.asdict)


def test_undecodable_values_raise_value_decode_errors() -> None:
    topic = context().common_topic("a")
    with pytest.raises(ValueDecodeError):
        decode(topic, b"not json")
    with pytest.raises(ValueDecodeError):
        decode(topic, orjson.dumps({"user_id": "u1"}))


def test_event_topic_is_named_as_the_router_names_it_and_carries_properties() -> None:
    ctx = context()
    for name in ("contest_join", "Contest.Join"):
        assert ctx.event_topic("b", name).get_topic_name() == event_topic_for(ctx.settings, "b", name)
    topic = ctx.event_topic("a", "lobby_view")
    original = event(unknown_top_level="ignored")
    record = decode(topic, orjson.dumps(original))
    assert isinstance(record, Event)
    assert record.properties == {"sport": "cricket"}
    assert record.user_id == "u1"
    del original["properties"]
    assert decode(topic, orjson.dumps(original)).properties == {}


def test_topics_refuse_unknown_lanes_and_impossible_event_names() -> None:
    ctx = context()
    with pytest.raises(ConfigError, match="lane 'zz'"):
        ctx.common_topic("zz")
    with pytest.raises(ConfigError, match=re.escape("event name '../x'")):
        ctx.event_topic("a", "../x")


def test_a_decode_error_is_counted_and_skipped_not_thrown_at_the_agent() -> None:
    ctx = context()
    topic = ctx.common_topic("a")
    assert isinstance(topic, TolerantTopic)
    clone = topic.clone(is_iterator=True)  # what an agent iterates
    name = topic.get_topic_name()
    message = Message(name, 0, 7, 0.0, 0, [], b"u1", b"not json", None)
    asyncio.run(clone.on_value_decode_error(ValueDecodeError("bad"), message))
    asyncio.run(clone.on_key_decode_error(ValueDecodeError("bad key"), message))
    assert clone.queue.empty()  # nothing was thrown into the agent's stream
    count = ctx.registry.get_sample_value("highway_plugin_undecodable_messages_total", {"topic": name})
    assert count == 2


# --- the example's counting ---


def test_conversion_counts_distinct_users_per_platform() -> None:
    conversion = Conversion()
    seen = [
        ("lobby_view", "ios", "1"),
        ("lobby_view", "ios", "1"),
        ("lobby_view", "ios", "user-2"),
        ("lobby_view", "ios", "3"),
        ("contest_join", "ios", "user-2"),
        ("contest_join", "ios", "user-2"),
        ("contest_join_success", "ios", "1"),
        ("lobby_view", "web", "9"),
        ("contest_join", "android", "5"),
    ]
    changed = [conversion.observe(*row) for row in seen]
    assert changed[6] is None
    assert conversion.figures("ios") == (3, 1)
    assert conversion.figures("web") == (1, 0)
    assert conversion.figures("android") == (0, 1)
