"""Contest-join conversion by platform, as Prometheus gauges: an example Highway plugin.

What it counts, per lane and platform, from the lane's common-attributes topic:

* ``highway_plugin_contest_lobby_users``: distinct users who sent ``lobby_view`` (the lobby, where
  contests are listed — the top of the funnel);
* ``highway_plugin_contest_join_users``: distinct users who sent ``contest_join``;
* ``highway_plugin_contest_conversion_ratio``: join users ÷ lobby users (absent until a lobby user is
  seen on that platform; a user who joins without a lobby view in the counted span still counts as a
  joiner, so the ratio can exceed 1 on a short span);
* ``highway_plugin_contest_events_total{lane}``: every event the agent has seen on the topic.

State is small: one roaring bitmap of 64-bit user keys (``core.realtime.ids.user_key``) per lane,
platform and event, i.e. a few bytes per distinct user; at most :data:`MAX_PLATFORMS` platform values
per lane are tracked separately, the rest are counted as ``other`` (the platform is client input).

Delivery semantics: a Faust agent, so at-least-once. Faust acks an event when the agent asks for the
next one and commits acked offsets every few seconds; after a crash or restart the agent re-reads from
the last committed offset, so some events are seen twice. Within one process lifetime that is
harmless for the gauges (a user already in a bitmap is not counted again); the events counter, though,
counts a replayed event again. Across a restart the bitmaps start empty and the agent resumes from
the committed offset, not from the beginning of the topic: the gauges then describe the users seen
since (about) that restart. Several workers of the same group split the lane's partitions; events are
keyed by user id, so each user is counted by one worker only and the group's figures are
``sum(join_users) / sum(lobby_users)`` in PromQL, not an average of ratios. When a rebalance moves a
partition, the previous owner keeps the users it had counted and the new owner counts them again as it
sees them. For exact all-time figures that survive restarts, keep the state in a Faust table instead.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge
from pyroaring import BitMap64

from core.realtime.ids import user_key
from streams.plugins import CommonAttributes, PluginContext

LOBBY = "lobby_view"
JOIN = "contest_join"
MAX_PLATFORMS = 32
OTHER = "other"


class Conversion:
    """Distinct lobby and join users per platform of one lane (pure; no I/O)."""

    def __init__(self) -> None:
        self.lobby: dict[str, BitMap64] = {}
        self.join: dict[str, BitMap64] = {}

    def _platform(self, platform: str) -> str:
        if platform in self.lobby or len(self.lobby) < MAX_PLATFORMS:
            return platform
        return OTHER

    def observe(self, event_name: str, platform: str, user_id: str) -> str | None:
        """Count one event; the platform whose figures it may have changed, None when irrelevant."""
        if event_name not in (LOBBY, JOIN):
            return None
        platform = self._platform(platform)
        if platform not in self.lobby:
            self.lobby[platform] = BitMap64()
            self.join[platform] = BitMap64()
        (self.lobby if event_name == LOBBY else self.join)[platform].add(user_key(user_id))
        return platform

    def figures(self, platform: str) -> tuple[int, int]:
        """(lobby users, join users) of ``platform``."""
        return len(self.lobby[platform]), len(self.join[platform])


class ConversionMetrics:
    def __init__(self, highway: PluginContext) -> None:
        labels = ("lane", "platform")
        self.lobby: Gauge = highway.gauge(
            "contest_lobby_users", f"Distinct users who sent {LOBBY} since the worker started", labels
        )
        self.join: Gauge = highway.gauge(
            "contest_join_users", f"Distinct users who sent {JOIN} since the worker started", labels
        )
        self.ratio: Gauge = highway.gauge(
            "contest_conversion_ratio", f"Distinct {JOIN} users / distinct {LOBBY} users", labels
        )
        self.events: Counter = highway.counter(
            "contest_events", "Events seen by the contest conversion plugin", ("lane",)
        )

    def publish(self, lane: str, platform: str, conversion: Conversion) -> None:
        lobby, join = conversion.figures(platform)
        self.lobby.labels(lane, platform).set(lobby)
        self.join.labels(lane, platform).set(join)
        if lobby:
            self.ratio.labels(lane, platform).set(join / lobby)


def _agent(lane: str, metrics: ConversionMetrics) -> Any:
    conversion = Conversion()
    events = metrics.events.labels(lane)

    async def contest_conversion(stream: Any) -> None:
        event: CommonAttributes
        async for event in stream:
            events.inc()
            platform = conversion.observe(event.event_name, event.platform, event.user_id)
            if platform is not None:
                metrics.publish(lane, platform, conversion)

    return contest_conversion


def setup(highway: PluginContext) -> None:
    """One agent per lane over the lane's common-attributes topic."""
    metrics = ConversionMetrics(highway)
    for lane in highway.settings.lanes:
        agent = _agent(lane, metrics)
        highway.app.agent(highway.common_topic(lane), name=f"highway_examples.contest_conversion.{lane}")(
            agent
        )
