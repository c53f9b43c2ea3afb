"""The lane's common topic is the lake table COMMON_TABLE, a name no event table can take."""

from __future__ import annotations

import re

from core.lake.layout import COMMON_TABLE, SESSIONS_TABLE, is_event_table, topic_table
from core.routing.naming import is_topic_safe_name, topic_name_for
from core.settings import Settings
from streams.lake_config import topic_regex


def test_common_topic_maps_to_the_reserved_table_of_its_lane() -> None:
    settings = Settings(lanes=["default", "b-2"])
    assert topic_table(settings, "default.events.common") == ("default", COMMON_TABLE)
    assert topic_table(settings, "b-2.events.common") == ("b-2", COMMON_TABLE)
    assert topic_table(settings, "default.event.team_create") == ("default", "team_create")
    assert topic_table(settings, "other.events.common") is None
    assert topic_table(settings, "default.events.all") is None


def test_no_event_name_can_become_the_common_table() -> None:
    assert not is_topic_safe_name(COMMON_TABLE)
    for name in (COMMON_TABLE, "events-common", "events.common", "events__common", "EVENTS--COMMON"):
        assert topic_name_for(name) != COMMON_TABLE
    assert not is_event_table(COMMON_TABLE)
    assert is_event_table("events_common")


def test_no_event_name_can_become_the_sessions_table() -> None:
    assert not is_topic_safe_name(SESSIONS_TABLE)
    for name in (SESSIONS_TABLE, "sessions", "events.sessions", "EVENTS--SESSIONS"):
        assert topic_name_for(name) != SESSIONS_TABLE
    assert not is_event_table(SESSIONS_TABLE)


def test_lake_subscription_takes_each_lane_s_common_topic_but_not_its_other_topics() -> None:
    settings = Settings(lanes=["default", "b-2"])
    regex = re.compile(topic_regex(settings))
    for topic in ("default.events.common", "b-2.events.common", "default.event.x"):
        assert regex.match(topic), topic
    for topic in ("default.events.all", "default.events.dlq", "defaultXevents.common", "c.events.common"):
        assert not regex.match(topic), topic
