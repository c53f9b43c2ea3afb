"""The collector's per-event checks and stamps."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from core.collect.body import Unparsable
from core.collect.events import problem, reject_reason, screen
from core.errors import SchemaError


def good(**changes: Any) -> dict[str, Any]:
    return {"event_name": "click", "user_id": "u1", "event_id": "e1", "server_ts": 1, **changes}


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ([1], "$"),
        ("text", "$"),
        (Unparsable("bad line"), "$"),
        ({"user_id": "u", "event_id": "e"}, "event_name"),
        (good(event_name=""), "event_name"),
        (good(event_name=5), "event_name"),
        (good(user_id=None), "user_id"),
        (good(user_id=""), "user_id"),
        (good(user_id=True), "user_id"),
        ({"event_name": "x", "event_id": "e"}, "user_id"),
        ({"event_name": "x", "user_id": "u"}, "event_id"),
        (good(event_id=" "), "event_id"),
    ],
)
def test_each_failed_check_names_its_field(event: Any, field: str) -> None:
    found = problem(event)
    assert found is not None
    assert found[0] == field


def test_integer_user_ids_are_accepted() -> None:
    assert problem(good(user_id=42)) is None


def test_screen_stamps_keys_and_keeps_order_and_indices() -> None:
    items = [good(event_id="a", user_id=7), {"bad": 1}, good(event_id="c", server_ts=999)]
    items[2]["lane"] = "own"
    batch = screen(items, "req-1", 123, orjson.dumps, lane="web")
    assert [key for key, _ in batch.accepted] == [b"7", b"u1"]
    decoded = [orjson.loads(value) for _, value in batch.accepted]
    assert [e["event_id"] for e in decoded] == ["a", "c"]
    assert [e["lane"] for e in decoded] == ["web", "own"]  # the key's lane fills a missing one
    assert all(e["server_ts"] == 123 and e["request_id"] == "req-1" for e in decoded)
    assert batch.rejected == [{"index": 1, "field": "event_name", "error": "must be a non-empty string"}]
    assert batch.answer()["accepted"] == 2


def test_an_event_the_codec_refuses_is_rejected_not_raised() -> None:
    def picky(event: dict[str, Any]) -> bytes:
        if event["event_id"] == "bad":
            raise SchemaError("not_flat", "properties.x", "is not flat")
        return orjson.dumps(event)

    batch = screen([good(event_id="bad"), good(event_id="ok")], "r", 1, picky)
    assert len(batch.accepted) == 1
    assert batch.rejected[0]["index"] == 0
    assert batch.rejected[0]["field"] == "properties.x"
    assert "not flat" in batch.rejected[0]["error"]


def test_reject_reasons_are_metric_labels() -> None:
    assert reject_reason({"field": "$"}) == "not_object"
    assert reject_reason({"field": "event_id"}) == "bad_event_id"
