"""`highway funnel`, `paths`, `segment` and `bench analytics` on a ``file://`` parquet lake written with
the bench's simulator-shaped rows (no broker, no S3 server), and the bench report's formatting."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
from rich.console import Console
from typer.testing import CliRunner

from bench.analytics_data import common_rows, write_lake_files
from bench.analytics_report import render
from core.sim.names import catalogue
from tests import analytics_reference as reference

LANE = "lane1"
START_MS = 1_790_000_000_000


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pa.Table]:
    root = tmp_path_factory.mktemp("lake")
    rows = common_rows(4_000, 100, START_MS, seed=3, rate=5.0)
    write_lake_files(rows, root, LANE)
    return root, rows


def events_of(rows: pa.Table) -> list[dict[str, Any]]:
    events = rows.select(["user_id", "event_name", "event_id", "server_ts", "platform"]).to_pylist()
    for event in events:
        event["server_ts"] = int(event["server_ts"].timestamp() * 1000)
    return events


def cli(root: Path, *args: str) -> Any:
    from highway.cli import app

    env = {"HIGHWAY_LAKE_URI": f"file://{root}", "HIGHWAY_LANES": LANE, "HIGHWAY_LAKE_FORMAT": "parquet"}
    return CliRunner().invoke(app, list(args), env=env)


def test_funnel_command_prints_the_reference_numbers(lake: tuple[Path, pa.Table]) -> None:
    root, rows = lake
    steps = list(catalogue()[:3])
    result = cli(
        root, "funnel", "--steps", ",".join(steps), "--within", "30m", "--by", "platform", "-o", "json"
    )
    assert result.exit_code == 0, result.output
    answer = orjson.loads(result.stdout)
    truth = reference.funnel(events_of(rows), steps, 30 * 60_000, by="platform")
    assert [step["users"] for step in answer["steps"]] == truth["users"]
    assert truth["users"][2] > 0
    table = cli(root, "funnel", "--steps", ",".join(steps), "--within", "30m", "--order", "strict")
    assert table.exit_code == 0, table.output
    assert "from previous" in table.stdout
    assert steps[2] in table.stdout


def test_funnel_sql_athena_prints_sql_over_the_glue_table(lake: tuple[Path, pa.Table]) -> None:
    result = cli(lake[0], "funnel", "--steps", "a,b", "--within", "1h", "--sql", "athena")
    assert result.exit_code == 0, result.output
    assert 'FROM "highway"."lane1_events__common__' in result.stdout
    assert "approx_percentile" in result.stdout


def test_bad_parameters_are_named(lake: tuple[Path, pa.Table]) -> None:
    result = cli(lake[0], "funnel", "--steps", "a,b", "--within", "soon")
    assert result.exit_code == 2
    assert "within" in result.output
    assert cli(lake[0], "paths", "--event", "a", "--depth", "0").exit_code == 2


def test_paths_command_with_sankey(lake: tuple[Path, pa.Table]) -> None:
    root, rows = lake
    anchor = catalogue()[0]
    result = cli(root, "paths", "--event", anchor, "--depth", "2", "--top", "1000", "-o", "json")
    assert result.exit_code == 0, result.output
    answer = orjson.loads(result.stdout)
    truth = reference.paths(events_of(rows), anchor, 2)
    assert {tuple(path["steps"]): path["users"] for path in answer["paths"]} == dict(truth)
    before = cli(root, "paths", "--event", anchor, "--before", "--top", "3")
    assert before.exit_code == 0, before.output
    assert f"users with {anchor}" in before.stdout
    sankey = orjson.loads(cli(root, "paths", "--event", anchor, "--sankey").stdout)
    assert sankey["nodes"][0]["name"] == anchor
    assert sum(link["value"] for link in sankey["links"] if link["source"] == 0) > 0


def test_segment_exports_distinct_user_ids(lake: tuple[Path, pa.Table], tmp_path: Path) -> None:
    root, rows = lake
    out = tmp_path / "segment.txt"
    sql = """SELECT user_id FROM "events--common" WHERE platform = 'ios'"""
    result = cli(root, "segment", sql, "--out", str(out))
    assert result.exit_code == 0, result.output
    expected = sorted({event["user_id"] for event in rows.to_pylist() if event["platform"] == "ios"})
    assert out.read_text().splitlines() == expected
    assert expected
    assert cli(root, "segment", sql).exit_code == 2  # neither --out nor --topic


def test_bench_analytics_runs_at_a_tiny_size(tmp_path: Path) -> None:
    result = cli(
        tmp_path,
        "bench",
        "analytics",
        "--events",
        "3000",
        "--repeat",
        "1",
        "--json",
        str(tmp_path / "b.json"),
    )
    assert result.exit_code == 0, result.output
    figures = orjson.loads((tmp_path / "b.json").read_bytes())
    assert figures["same_answers"] is True
    assert set(figures["seconds"]) == {"funnel ours", "funnel direct", "paths ours", "paths direct"}
    assert set(figures["cpu_seconds"]) == set(figures["seconds"])
    assert "answers ours = direct: yes" in result.stdout


def test_the_report_gives_both_times_the_goal_and_the_bound() -> None:
    def spread(median: float) -> dict[str, float]:
        return {"median": median, "min": median - 0.5, "max": median + 1, "n": 3}

    result = {
        "events": 10_000_000,
        "users": 200_000,
        "files": 100,
        "bytes": 300e6,
        "generate_s": 30.0,
        "write_s": 60.0,
        "repeat": 3,
        "cpus": 2,
        "load_average": [3.5, 3, 3],
        "duckdb_threads": 2,
        "funnel": {
            "steps": ["a", "b", "c"],
            "within": "30m",
            "answer": [{"users": 1000}, {"users": 500}, {"users": 20}],
        },
        "paths": {"event": "a", "depth": 3, "top": 10, "users": 1000},
        "same_answers": True,
        "seconds": {
            "funnel ours": spread(6.0),
            "funnel direct": spread(4.0),
            "paths ours": spread(2.0),
            "paths direct": spread(1.0),
        },
        "cpu_seconds": {"funnel ours": spread(3.0), "funnel direct": spread(2.0)},
        "goal_funnel_s": 5.0,
    }
    out = io.StringIO()
    Console(file=out, width=1000).print(render(result))
    text = out.getvalue()
    assert "6.00 s (5.50-7.00, n=3)" in text
    assert "1.50x (+2.00 s)" in text
    assert "3.00 s, 50% of wall" in text
    assert "goal funnel ≤ 5 s over 10,000,000 events: MISSED (6.00 s)" in text
    assert "1,000 → 500 → 20" in text
    assert "bound: CPU" in text
    assert "load 3.5" in text
    assert "no Kafka" in text
