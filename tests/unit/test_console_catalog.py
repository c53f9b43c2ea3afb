"""The event catalogue's shaping (core.console.catalog): rates, first/last seen, DLQ grouping."""

from __future__ import annotations

from typing import Any

import orjson

from core.console.catalog import (
    SAMPLES_PER_REASON,
    DeadLetter,
    LakeTable,
    catalog,
    dead_letter,
    partition_ms,
    rates,
)

MIN = 60_000
T0 = 1_764_763_200_000  # 2025-12-03T12:00:00Z
DAY = "dt=2025-12-03"


def window(start: int, complete: bool, **names: int) -> dict[str, Any]:
    return {
        "window_start": start,
        "counts": {"all": sum(names.values()), "by": {"event_name": names}},
        "complete": complete,
    }


def letter(reason: str, name: str | None, offset: int, ts: int | None = None) -> DeadLetter:
    value = orjson.dumps({"event_name": name}) if name else b"\x00not json"
    return dead_letter([("reason", reason.encode()), ("detail", b"why")], value, 0, offset, ts)


def test_rates_take_the_newest_complete_window_and_span_every_window_with_the_type() -> None:
    found = rates(
        [
            window(T0 + 2 * MIN, False, page_view=50),
            window(T0, True, page_view=6, click=2),
            window(T0 + MIN, True, page_view=12),
        ],
        60,
    )
    assert found.last_complete_ms == T0 + MIN
    view, click = found.by_name["page_view"], found.by_name["click"]
    assert (view.last_window_events, view.history_events) == (12, 68)
    assert (view.first_ms, view.last_ms) == (T0, T0 + 3 * MIN)
    assert (click.last_window_events, click.history_events) == (0, 2)
    assert (click.first_ms, click.last_ms) == (T0, T0 + MIN)


def test_a_dead_letter_keeps_its_router_headers_and_finds_its_event_name() -> None:
    named = dead_letter(
        [("reason", b"missing_field"), ("detail", b"user_id: required field is absent"), ("x", None)],
        b'{"event_name": "purchase", "amount": 3}',
        2,
        41,
        T0,
    )
    assert (named.reason, named.detail, named.event_name) == (
        "missing_field",
        "user_id: required field is absent",
        "purchase",
    )
    assert (named.partition, named.offset, named.timestamp_ms) == (2, 41, T0)
    unnamed = dead_letter(None, b"\xff" * 5000, 0, 1, None)
    assert (unnamed.reason, unnamed.event_name) == ("unknown", None)
    assert len(unnamed.sample) == 400


def test_the_catalog_joins_rates_tables_and_dead_letters_by_table_name() -> None:
    found = rates([window(T0, True, page_view=30, **{"Checkout Done": 3})], 60)
    columns = [{"name": "user_id", "type": "string"}]
    tables = {
        "page_view": LakeTable(
            "page_view", columns, 2, 900, 40, "dt=2025-12-03/hour=10", "dt=2025-12-03/hour=11"
        ),
        "old_type": LakeTable(
            "old_type", columns, 1, 10, None, "dt=2025-12-01/hour=00", "dt=2025-12-01/hour=00"
        ),
        "events--common": LakeTable("events--common", columns, 1, 10),  # no one type's table
        "events--sessions": LakeTable("events--sessions", columns, 1, 10),  # the sessions stage's
    }
    letters = [letter("missing_field", "page_view", i, T0 + i) for i in range(5)]
    letters += [letter("bad_type", "page_view", 9), letter("malformed_json", None, 10)]
    answer = catalog("web", found, tables, letters)
    by_name = {t["event_name"]: t for t in answer["types"]}
    assert sorted(by_name) == ["Checkout Done", "old_type", "page_view"]
    view = by_name["page_view"]
    assert view["rate_per_s"] == 0.5
    assert view["events_in_history"] == 30
    assert view["first_seen"] == "2025-12-03T10:00:00+00:00"  # the lake's first hour is older
    assert view["last_seen"] == "2025-12-03T12:01:00+00:00"  # the realtime window's end is newer
    assert view["lake"]["rows"] == 40
    assert view["columns"] == columns
    assert view["dlq"]["count"] == 6
    first = view["dlq"]["reasons"][0]
    assert (first["reason"], first["count"]) == ("missing_field", 5)
    assert [s["offset"] for s in first["samples"]] == [4, 3, 2][:SAMPLES_PER_REASON]
    mapped = by_name["Checkout Done"]
    assert mapped["table"] is not None
    assert mapped["table"].startswith("checkout_done--")
    assert mapped["lake"] is None
    assert mapped["dlq"] == {"count": 0, "reasons": []}
    assert by_name["old_type"]["rate_per_s"] == 0.0
    assert by_name["old_type"]["events_in_history"] == 0
    assert answer["unnamed_dlq"]["count"] == 1
    assert answer["dlq_read"] == 7


def test_a_missing_source_is_null_not_zero() -> None:
    tables = {"page_view": LakeTable("page_view", [], 1, 1)}
    answer = catalog("web", None, tables, None)
    (only,) = answer["types"]
    assert only["rate_per_s"] is None
    assert only["events_in_history"] is None
    assert only["dlq"] is None
    assert answer["unnamed_dlq"] is None
    assert answer["dlq_read"] is None
    assert answer["window_s"] is None


def test_partition_names_map_to_their_hour() -> None:
    assert partition_ms("dt=2025-12-03/hour=12") == T0
    assert partition_ms("dt=2025-12-03") == T0 - 12 * 3_600_000
    assert partition_ms("nonsense") is None
    assert partition_ms(None) is None


def test_the_realtime_window_is_kept_where_the_lake_only_knows_the_same_hour() -> None:
    found = rates([window(T0 + 15 * MIN, True, page_view=3)], 60)
    same_hour = {"page_view": LakeTable("page_view", [], 1, 1, 3, f"{DAY}/hour=12", f"{DAY}/hour=12")}
    (entry,) = catalog("web", found, same_hour, [])["types"]
    assert entry["first_seen"] == "2025-12-03T12:15:00+00:00"
    assert entry["last_seen"] == "2025-12-03T12:16:00+00:00"
    later = {"page_view": LakeTable("page_view", [], 1, 1, 3, f"{DAY}/hour=12", f"{DAY}/hour=13")}
    (entry,) = catalog("web", found, later, [])["types"]
    assert entry["last_seen"] == "2025-12-03T13:00:00+00:00"
