"""Event name → topic name: validation, determinism, injectivity, lane confinement."""

from __future__ import annotations

import re

import pytest

from core.errors import SchemaError
from core.routing.naming import (
    MAX_EVENT_NAME_CHARS,
    MAX_TOPIC_CHARS,
    event_topic_for,
    topic_name_for,
    validate_event_name,
)
from core.settings import Settings

LEGAL = re.compile(r"[A-Za-z0-9._-]+")


@pytest.mark.parametrize("name", ["contest_join", "team-create", "wallet_add_cash_v2", "a", "0"])
def test_canonical_names_map_to_themselves(name: str) -> None:
    assert topic_name_for(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "Contest.Join",
        "contest.join",
        "wallet add cash",
        "équipe_créée",
        "支付",
        "a--b",
        "-lead",
        "trail-",
        "🎉",
    ],
)
def test_other_names_map_to_legal_hashed_names(name: str) -> None:
    safe = topic_name_for(name)
    assert safe != name
    assert LEGAL.fullmatch(safe)
    assert "." not in safe
    assert "--" in safe
    assert safe == topic_name_for(name)  # deterministic


def test_mapping_is_injective_over_confusable_names() -> None:
    names = [
        "contest_join",
        "contest.join",
        "Contest_Join",
        "contest join",
        "contest-join",
        "contest--join",
        "contest_join ",
        "CONTEST_JOIN",
        "contest\u00a0join",
    ]
    safes = [topic_name_for(name) for name in names]
    assert len(set(safes)) == len(names)
    # '.' and '_' are the same in Kafka metric names: the safe names must stay distinct there too.
    assert len({safe.replace(".", "_") for safe in safes}) == len(names)


def test_a_crafted_name_cannot_claim_a_mapped_names_topic() -> None:
    mapped = topic_name_for("Contest.Join")
    # Spelling the mapped topic as an event name yields a name with '--', which is hashed again.
    assert topic_name_for(mapped) != mapped


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "empty"),
        ("   ", "whitespace"),
        ("x" * (MAX_EVENT_NAME_CHARS + 1), "characters"),
        ("../../x", "starts with '.'"),
        ("a/../../b", "path"),
        ("..", "starts with '.'"),
        (".hidden", "starts with '.'"),
        ("a\\b", "path"),
        ("bad\x00name", "U+0000"),
        ("bad\nname", "U+000A"),
        ("evil\u202ename", "U+202E"),
        ("zero\u200bwidth", "U+200B"),
    ],
)
def test_invalid_names_are_rejected_with_reason(name: str, fragment: str) -> None:
    with pytest.raises(SchemaError) as info:
        topic_name_for(name)
    assert info.value.reason == "invalid_event_name"
    assert info.value.field == "event_name"
    assert fragment in info.value.detail


def test_longest_valid_name_still_fits_a_topic() -> None:
    settings = Settings(lanes=["a" * 40])
    for name in ("x" * MAX_EVENT_NAME_CHARS, "Ü" * MAX_EVENT_NAME_CHARS, "y" * 120):
        validate_event_name(name)
        topic = event_topic_for(settings, "a" * 40, name)
        assert len(topic) <= MAX_TOPIC_CHARS
        assert topic.startswith("a" * 40 + ".event.")
        assert LEGAL.fullmatch(topic)


def test_names_never_escape_the_lane() -> None:
    settings = Settings()
    for name in ["x", "..x", "x/..", "lane.events.all", "default.events.dlq", "Ω"]:
        try:
            topic = event_topic_for(settings, "default", name)
        except SchemaError:
            continue
        assert topic.startswith("default.event.")
        assert topic.count(".") == 2
