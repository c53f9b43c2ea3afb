"""The ``highway bench analytics`` report: each query, ours next to DuckDB directly, and what bounds it."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

FUNNEL_GOAL_S = 5.0


def _spread(value: dict[str, float] | None) -> str:
    if not value:
        return "—"
    if value["n"] == 1:
        return f"{value['median']:.2f} s"
    return f"{value['median']:.2f} s ({value['min']:.2f}-{value['max']:.2f}, n={value['n']})"


def _overhead(ours: dict[str, float] | None, direct: dict[str, float] | None) -> str:
    if not ours or not direct or not direct["median"]:
        return "—"
    return f"{ours['median'] / direct['median']:.2f}x (+{ours['median'] - direct['median']:.2f} s)"


def _cpu(value: dict[str, float] | None, wall: dict[str, float] | None) -> str:
    if not value:
        return "—"
    share = f", {value['median'] / wall['median']:.0%} of wall" if wall and wall["median"] else ""
    return f"{value['median']:.2f} s{share}"


def bound(result: dict[str, Any]) -> str:
    """What the times are bound by, from what the run saw."""
    load = result["load_average"][0]
    return (
        f"CPU: DuckDB runs {result['duckdb_threads']} threads on {result['cpus']} cores shared with other "
        f"work (1-minute load {load:g} at the end; CPU seconds below wall x threads mean the query waited "
        "for a core); the CPU goes to sorting each user's events (row_number over user_id, server_ts) "
        "and the per-step ASOF merge. Ours adds listing the lake and opening the view (the overhead "
        "column); the files are local, so no S3 latency is in it."
    )


def render(result: dict[str, Any]) -> Group:
    seconds = result["seconds"]
    funnel, paths = result["funnel"], result["paths"]
    title = (
        f"highway bench analytics — {result['events']:,} events, {result['users']:,} users, "
        f"{result['files']} Parquet files ({result['bytes'] / 1e6:,.0f} MB), {result['repeat']} interleaved "
        "repetitions (median (min-max))"
    )
    cpu = result.get("cpu_seconds", {})
    table = Table(
        "query",
        "ours",
        "DuckDB directly",
        "ours / direct",
        "CPU ours",
        "CPU direct",
        title=title,
        title_justify="left",
    )
    for name, label in (
        ("funnel", f"funnel {' → '.join(funnel['steps'])} within {funnel['within']}"),
        ("paths", f"paths after {paths['event']}, depth {paths['depth']}, top {paths['top']}"),
    ):
        ours, direct = seconds.get(f"{name} ours"), seconds.get(f"{name} direct")
        table.add_row(
            label,
            _spread(ours),
            _spread(direct),
            _overhead(ours, direct),
            _cpu(cpu.get(f"{name} ours"), ours),
            _cpu(cpu.get(f"{name} direct"), direct),
        )
    funnel_s = (seconds.get("funnel ours") or {}).get("median")
    goal = result["goal_funnel_s"]
    if funnel_s is None:
        verdict = "funnel: no measurement"
    else:
        met = "met" if funnel_s <= goal else "MISSED"
        verdict = f"goal funnel ≤ {goal:g} s over {result['events']:,} events: {met} ({funnel_s:.2f} s)"
    users = " → ".join(f"{step['users']:,}" for step in funnel["answer"])
    lines = [
        Text(verdict),
        Text(f"funnel users per step: {users}; paths: {paths['users']:,} users with {paths['event']}"),
        Text("answers ours = direct: " + ("yes" if result["same_answers"] else "NO — they differ")),
        Text(
            f"data: generated in {result['generate_s']:g} s, written in {result['write_s']:g} s "
            "(simulator-shaped rows written as lake files directly; no Kafka)"
        ),
        Text("bound: " + bound(result)),
    ]
    return Group(table, *lines)
