"""The analytics SQL (core.analytics) run by DuckDB over small tables, against hand-worked answers
and the plain-Python reference (tests/analytics_reference.py) on random timelines."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from core.analytics.funnel import funnel_result, funnel_sql
from core.analytics.params import BadParameter, FunnelSpec, PathSpec, TimeRange, parse_duration_s
from core.analytics.paths import paths_result, paths_sql, sankey
from core.analytics.segment import segment_sql
from core.analytics.sql import ATHENA, Source, literal
from core.analytics.users import history_result, last_events_sql, summary_sql
from tests import analytics_reference as reference

T0 = 1_780_000_000_000  # epoch ms


def table(events: list[dict[str, Any]]) -> pa.Table:
    def day(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")

    return pa.table(
        {
            "event_name": [e["event_name"] for e in events],
            "event_id": [e["event_id"] for e in events],
            "user_id": [e["user_id"] for e in events],
            "session_id": [e.get("session_id") for e in events],
            "platform": [e.get("platform") for e in events],
            "app_version": [e.get("app_version") for e in events],
            "lane": ["default"] * len(events),
            "server_ts": pa.array([e["server_ts"] for e in events], pa.timestamp("ms", tz="UTC")),
            "dt": [day(e["server_ts"]) for e in events],
        }
    )


def timeline(user: str, *steps: tuple[str, float], platform: str = "android") -> list[dict[str, Any]]:
    """Events of one user: (name, seconds after T0)."""
    return [
        {
            "user_id": user,
            "event_name": name,
            "event_id": f"{user}-{index:04d}",
            "server_ts": T0 + int(seconds * 1000),
            "platform": platform,
            "session_id": f"{user}-s{int(seconds // 3600)}",
        }
        for index, (name, seconds) in enumerate(steps)
    ]


def run(sql: str, events: list[dict[str, Any]]) -> tuple[list[str], list[tuple[Any, ...]]]:
    connection = duckdb.connect()
    connection.register("events", table(events))
    result = connection.execute(sql)
    return [column[0] for column in result.description or []], result.fetchall()


SOURCE = Source("events")


def funnel(events: list[dict[str, Any]], **params: str) -> dict[str, Any]:
    spec = FunnelSpec.parse(params)
    return funnel_result(spec, *run(funnel_sql(spec, SOURCE), events))


def users(answer: dict[str, Any]) -> list[int]:
    return [step["users"] for step in answer["steps"]]


EVENTS = [
    *timeline("u1", ("a", 0), ("x", 10), ("b", 20), ("c", 50)),  # relaxed a→b→c, not strict
    *timeline("u2", ("a", 0), ("b", 5), ("c", 4000)),  # c outside a 30-minute window
    *timeline("u3", ("b", 0), ("a", 1)),  # b before a: only step 1
    *timeline("u4", ("a", 0), ("b", 30), ("c", 90), platform="ios"),  # strict and relaxed
    *timeline("u5", ("x", 0)),  # never starts
]


def test_relaxed_funnel_counts_users_per_step_conversion_and_median() -> None:
    answer = funnel(EVENTS, steps="a,b,c", within="30m")
    assert users(answer) == [4, 3, 2]
    first, second, third = answer["steps"]
    assert (first["conversion_from_previous"], first["median_seconds_to_convert"]) == (1.0, None)
    assert second["conversion_from_previous"] == pytest.approx(3 / 4)
    assert third["conversion_from_previous"] == pytest.approx(2 / 3)
    assert third["conversion_from_first"] == pytest.approx(2 / 4)
    assert second["median_seconds_to_convert"] == 20  # u1 20 s, u2 5 s, u4 30 s
    assert third["median_seconds_to_convert"] == 45  # u1 30 s, u4 60 s
    assert "groups" not in answer


def test_strict_order_allows_nothing_between_steps() -> None:
    assert users(funnel(EVENTS, steps="a,b,c", within="30m", order="strict")) == [4, 2, 1]


def test_window_counts_from_the_first_step() -> None:
    assert users(funnel(EVENTS, steps="a,b,c", within="40s")) == [4, 3, 0]
    assert users(funnel(EVENTS, steps="a,b,c", within="2h")) == [4, 3, 3]


def test_deepest_attempt_wins_and_repeated_steps_need_separate_events() -> None:
    events = timeline("u", ("a", 0), ("a", 100), ("b", 110), ("a", 120), ("a", 130))
    answer = funnel(events, steps="a,b", within="60s")
    assert users(answer) == [1, 1]
    assert answer["steps"][1]["median_seconds_to_convert"] == 10  # from the a at 100 s, not 0 s
    assert users(funnel(events, steps="a,a,a", within="1h")) == [1, 1, 1]
    assert users(funnel(timeline("v", ("a", 0)), steps="a,a", within="1h")) == [1, 0]


def test_funnel_by_dimension_groups_users_by_their_first_step() -> None:
    answer = funnel(EVENTS, steps="a,b,c", within="30m", by="platform")
    assert users(answer) == [4, 3, 2]
    groups = {name: [step["users"] for step in steps] for name, steps in answer["groups"].items()}
    assert groups == {"android": [3, 2, 1], "ios": [1, 1, 1]}


def test_from_and_to_keep_only_events_inside() -> None:
    iso = datetime.fromtimestamp((T0 + 15_000) / 1000, tz=UTC).isoformat()
    # from 15 s: u1 keeps b, c; u2 keeps c; u4 b, c — nobody starts with a.
    assert users(funnel(EVENTS, steps="a,b,c", within="30m", **{"from": iso})) == [0, 0, 0]
    end = datetime.fromtimestamp((T0 + 40_000) / 1000, tz=UTC).isoformat()
    assert users(funnel(EVENTS, steps="a,b,c", within="30m", to=end)) == [4, 3, 0]


def test_funnel_of_an_empty_lake_is_zeros() -> None:
    answer = funnel([], steps="a,b", within="1h", by="platform")
    assert users(answer) == [0, 0]
    assert answer["steps"][1]["conversion_from_first"] is None
    assert answer["groups"] == {}


@pytest.mark.parametrize("strict", [False, True])
def test_funnel_equals_the_python_reference_on_random_timelines(strict: bool) -> None:
    rng = random.Random(7 + strict)
    events = []
    for user in range(300):
        seconds = 0.0
        steps = []
        for _ in range(rng.randrange(1, 25)):
            seconds += rng.choice([0, 0.5, 3, 30, 400])  # ties in server_ts too
            steps.append((rng.choice("abcdx"), seconds))
        events += timeline(f"u{user:03d}", *steps, platform=rng.choice(["android", "ios", "web"]))
    order = "strict" if strict else "relaxed"
    answer = funnel(events, steps="a,b,c,b", within="10m", by="platform", order=order)
    expected = reference.funnel(events, ["a", "b", "c", "b"], 600_000, strict=strict, by="platform")
    assert users(answer) == expected["users"]
    assert [step["median_seconds_to_convert"] for step in answer["steps"]] == pytest.approx(
        expected["medians_s"]
    )
    assert {name: [s["users"] for s in steps] for name, steps in answer["groups"].items()} == expected[
        "groups"
    ]
    assert expected["users"][2] > 0  # the data reaches deep enough to test something


def test_paths_after_and_before_with_depth_and_top() -> None:
    events = [
        *timeline("u1", ("x", 0), ("a", 1), ("b", 2), ("c", 3), ("a", 4)),
        *timeline("u2", ("y", 0), ("a", 1), ("b", 2)),
        *timeline("u3", ("a", 0)),
        *timeline("u4", ("q", 0)),
    ]

    def paths(**params: str) -> dict[str, Any]:
        spec = PathSpec.parse(params)
        return paths_result(spec, run(paths_sql(spec, SOURCE), events)[1])

    after = paths(event="a", depth="2")
    assert after["users"] == 3
    assert [p["steps"] for p in after["paths"]] == [[], ["b"], ["b", "c"]]  # ties: by path
    assert {tuple(p["steps"]): p["users"] for p in after["paths"]} == {("b", "c"): 1, ("b",): 1, (): 1}
    before = paths(event="a", direction="before", depth="3")
    assert {tuple(p["steps"]): p["users"] for p in before["paths"]} == {("x",): 1, ("y",): 1, (): 1}
    one = paths(event="a", depth="1", top="1")
    assert one["paths"] == [{"steps": ["b"], "users": 2}]
    assert one["users"] == 3


def test_sankey_nodes_are_positions_and_links_sum_users() -> None:
    spec = PathSpec("a", "after", 2, 10)
    graph = sankey(spec, [(["b", "c"], 5), (["b"], 2), (["c", "b"], 1)])
    names = [node["name"] for node in graph["nodes"]]
    assert names == ["a", "+1 b", "+2 c", "+1 c", "+2 b"]
    links = {(names[link["source"]], names[link["target"]]): link["value"] for link in graph["links"]}
    assert links == {("a", "+1 b"): 7, ("+1 b", "+2 c"): 5, ("a", "+1 c"): 1, ("+1 c", "+2 b"): 1}
    before = sankey(PathSpec("a", "before", 2, 10), [(["x", "y"], 3)])
    assert [node["name"] for node in before["nodes"]] == ["a", "-2 x", "-1 y"]
    assert [(link["source"], link["target"], link["value"]) for link in before["links"]] == [
        (1, 2, 3),
        (2, 0, 3),
    ]


def test_paths_equal_the_python_reference() -> None:
    rng = random.Random(3)
    events = []
    for user in range(200):
        events += timeline(
            f"u{user}", *((rng.choice("abcde"), float(i // 2)) for i in range(rng.randrange(1, 12)))
        )
    for direction in ("after", "before"):
        spec = PathSpec.parse({"event": "a", "direction": direction, "depth": "3", "top": "1000"})
        found = paths_result(spec, run(paths_sql(spec, SOURCE), events)[1])
        expected = reference.paths(events, "a", 3, before=direction == "before")
        assert {tuple(p["steps"]): p["users"] for p in found["paths"]} == dict(expected)
        assert found["users"] == sum(expected.values())


def test_user_history_summary_and_last_events() -> None:
    events = [*timeline("u1", ("a", 0), ("b", 4000), ("c", 8000)), *timeline("u2", ("a", 0), platform="web")]
    events[1]["platform"] = "web"
    summary = run(summary_sql("u1", SOURCE), events)[1][0]
    last = run(last_events_sql("u1", 2, SOURCE), events)[1]
    history = history_result(summary, last)
    assert (history["events"], history["sessions"]) == (3, 3)
    assert history["platforms"] == ["android", "web"]
    assert history["first_seen"].startswith(datetime.fromtimestamp(T0 / 1000, tz=UTC).isoformat()[:19])
    assert [event["event_name"] for event in history["last_events"]] == ["c", "b"]
    nobody = history_result(run(summary_sql("o'hara", SOURCE), events)[1][0], [])
    assert nobody == {
        "first_seen": None,
        "last_seen": None,
        "events": 0,
        "sessions": 0,
        "platforms": [],
        "last_events": [],
    }


def test_segment_selects_distinct_user_ids() -> None:
    sql = segment_sql("SELECT user_id, event_name FROM events WHERE event_name = 'a';")
    assert run(sql, EVENTS)[1] == [("u1",), ("u2",), ("u3",), ("u4",)]


def test_parameters_are_checked_and_named() -> None:
    assert parse_duration_s("within", "30m") == 1800
    assert parse_duration_s("within", "1.5h") == 5400
    for params, name in [
        ({"steps": "a"}, "steps"),
        ({"steps": "a,b", "within": "soon"}, "within"),
        ({"steps": "a,b", "within": "0s"}, "within"),
        ({"steps": "a,b", "order": "any"}, "order"),
        ({"steps": "a,b", "by": "user_id"}, "by"),
        ({"steps": "a,b", "from": "yesterday"}, "from"),
        ({"steps": "a,b", "from": "2026-01-02", "to": "2026-01-01"}, "from"),
        ({"steps": "a,\x00"}, "steps"),
    ]:
        with pytest.raises(BadParameter, match=name):
            FunnelSpec.parse(params)
    for params, name in [
        ({}, "event"),
        ({"event": "a", "depth": "0"}, "depth"),
        ({"event": "a", "top": "x"}, "top"),
        ({"event": "a", "direction": "up"}, "direction"),
    ]:
        with pytest.raises(BadParameter, match=name):
            PathSpec.parse(params)


def test_names_are_sql_literals_never_sql() -> None:
    events = timeline("u", ("it's", 0), ("b", 1))
    assert users(funnel(events, steps="it's,b", within="1m")) == [1, 1]
    assert literal("a'; DROP TABLE x; --") == "'a''; DROP TABLE x; --'"


def test_time_range_prunes_days_only_when_partitioned_by_server_time() -> None:
    span = TimeRange.parse("2026-01-01T10:00:00Z", "2026-01-02T00:00:00Z")
    assert "dt >= '2026-01-01'" in Source("t").range_filter(span)
    assert "dt <=" not in Source("t", prune_days=False).range_filter(span)


def test_athena_funnel_sql_uses_athena_functions() -> None:
    spec = FunnelSpec.parse({"steps": "a,b", "within": "30m", "by": "platform"})
    sql = funnel_sql(spec, Source('"highway"."default_events__common"', ATHENA))
    for duckdb_only in ("ASOF", "epoch_ms", "median("):
        assert duckdb_only not in sql
    for athena in ("to_unixtime(server_ts)", "approx_percentile(", "min_by(e.ts, e.seq)"):
        assert athena in sql
    assert 'FROM "highway"."default_events__common"' in sql
