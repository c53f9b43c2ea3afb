"""`highway funnel`, `highway paths`, `highway segment`: product analytics over the lake's common table.

The queries are ``core.analytics``'s, run by DuckDB over the lane's common table through
``connectors.analytics_lake`` — the same answers as the worker's ``/api/v1/funnel`` and
``/api/v1/paths`` — within ``lake_query_timeout_s`` (``--timeout``). ``funnel --sql athena`` prints
the equivalent Athena SQL over the Glue tables instead of running anything.
"""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import Annotated, Any

import duckdb
import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from connectors.analytics_lake import (
    athena_source,
    export_segment,
    run_funnel,
    run_paths,
    segment_user_ids,
)
from connectors.lake_query import QueryTimeout
from core.analytics.funnel import funnel_sql
from core.analytics.params import BadParameter, FunnelSpec, PathSpec
from core.errors import HighwayError
from highway.cli.common import console, print_error, state

TIMEOUT_EXIT_CODE = 124
Timeout = Annotated[
    float | None, typer.Option(help="give up after this many seconds (default lake_query_timeout_s)")
]
Lane = Annotated[str | None, typer.Option(help="lane (default: the first)")]
From = Annotated[str | None, typer.Option("--from", help="events at or after this time (ISO 8601 or epoch)")]
To = Annotated[str | None, typer.Option("--to", help="events before this time")]


class Format(enum.StrEnum):
    table = "table"
    json = "json"


class Engine(enum.StrEnum):
    athena = "athena"


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:,.1f} s"


def funnel_table(answer: dict[str, Any], title: str) -> Table:
    """Steps as rows: users, conversion from the previous and first step, median time to convert."""
    table = Table("step", "users", "from previous", "from first", "median to convert", title=title)
    for step in answer["steps"]:
        table.add_row(
            step["name"],
            f"{step['users']:,}",
            _percent(step["conversion_from_previous"]),
            _percent(step["conversion_from_first"]),
            _seconds(step["median_seconds_to_convert"]),
        )
    return table


def paths_table(answer: dict[str, Any]) -> Table:
    arrow = "→"
    title = f"{answer['users']:,} users with {answer['event']}; paths {answer['direction']} it"
    table = Table("path", "users", "share", title=title)
    for path in answer["paths"]:
        steps = path["steps"]
        if answer["direction"] == "after":
            shown = (
                f" {arrow} ".join([answer["event"], *steps]) if steps else f"{answer['event']} (last event)"
            )
        else:
            shown = (
                f" {arrow} ".join([*steps, answer["event"]]) if steps else f"(first event) {answer['event']}"
            )
        share = path["users"] / answer["users"] if answer["users"] else None
        table.add_row(shown, f"{path['users']:,}", _percent(share))
    return table


def _run(work: Any) -> Any:
    """The query's answer; exits 2 on a bad parameter, 124 at the deadline, 1 on a lake error."""
    try:
        return work()
    except BadParameter as exc:
        raise typer.BadParameter(str(exc)) from exc
    except QueryTimeout as exc:
        print_error(exc)
        raise typer.Exit(TIMEOUT_EXIT_CODE) from exc
    except (duckdb.Error, HighwayError, OSError) as exc:
        console.print(f"[red]query failed:[/red] {escape(str(exc))}", soft_wrap=True, highlight=False)
        raise typer.Exit(1) from exc


def _out() -> Console:
    return Console(file=sys.stdout, width=max(Console().width, 120))


def funnel(
    ctx: typer.Context,
    steps: Annotated[str, typer.Option(help="event names in order, comma-separated")],
    within: Annotated[str, typer.Option(help="from the first step to the last: 30m, 2h, 1d")] = "1d",
    by: Annotated[str | None, typer.Option(help="split by platform, app_version or lane")] = None,
    start: From = None,
    end: To = None,
    order: Annotated[str, typer.Option(help="relaxed (others between steps) or strict")] = "relaxed",
    sql: Annotated[
        Engine | None, typer.Option("--sql", help="print the Athena SQL instead of running")
    ] = None,
    lane: Lane = None,
    output: Annotated[Format, typer.Option("--output", "-o")] = Format.table,
    timeout: Timeout = None,
) -> None:
    """Users per step, conversion from the previous and the first step, median time to convert."""
    settings = state(ctx).settings()
    lane = lane or settings.lanes[0]
    params = {
        "steps": steps,
        "within": within,
        "by": by or "",
        "from": start or "",
        "to": end or "",
        "order": order,
    }
    spec = _run(lambda: FunnelSpec.parse(params))
    if sql is Engine.athena:
        typer.echo(funnel_sql(spec, athena_source(settings, lane)))
        return
    answer = _run(lambda: run_funnel(settings, lane, spec, timeout))
    if output is Format.json:
        typer.echo(orjson.dumps(answer).decode())
        return
    out = _out()
    out.print(funnel_table(answer, f"{' → '.join(spec.steps)} within {within} ({spec.order} order)"))
    for group, group_steps in answer.get("groups", {}).items():
        out.print(funnel_table({"steps": group_steps}, f"{by} = {group}"))


def paths(
    ctx: typer.Context,
    event: Annotated[str, typer.Option(help="the event the paths start from (or lead to, --before)")],
    before: Annotated[bool, typer.Option("--before", help="the events before it instead of after")] = False,
    depth: Annotated[int, typer.Option(help="events per path")] = 3,
    top: Annotated[int, typer.Option(help="paths shown")] = 10,
    sankey: Annotated[
        bool, typer.Option("--sankey", help="print the Sankey nodes and links as JSON")
    ] = False,
    start: From = None,
    end: To = None,
    lane: Lane = None,
    output: Annotated[Format, typer.Option("--output", "-o")] = Format.table,
    timeout: Timeout = None,
) -> None:
    """The most common sequences of events after (or before) each user's first EVENT."""
    settings = state(ctx).settings()
    lane = lane or settings.lanes[0]
    params = {
        "event": event,
        "direction": "before" if before else "after",
        "depth": str(depth),
        "top": str(top),
        "from": start or "",
        "to": end or "",
    }
    spec = _run(lambda: PathSpec.parse(params))
    answer = _run(lambda: run_paths(settings, lane, spec, timeout))
    if sankey:
        typer.echo(orjson.dumps(answer["sankey"]).decode())
    elif output is Format.json:
        typer.echo(orjson.dumps(answer).decode())
    else:
        _out().print(paths_table(answer))


def segment(
    ctx: typer.Context,
    sql: Annotated[
        str, typer.Argument(help="SQL over the lake's views (as highway query) with a user_id column")
    ],
    out: Annotated[Path | None, typer.Option("--out", help="write the user ids here, one a line")] = None,
    topic: Annotated[
        str | None, typer.Option("--topic", help="produce the user ids to this Kafka topic")
    ] = None,
    lane: Lane = None,
    timeout: Timeout = None,
) -> None:
    """Export the distinct user ids the SQL selects, to a file or a Kafka topic (for messaging)."""
    if (out is None) == (topic is None):
        raise typer.BadParameter("give exactly one of --out FILE or --topic TOPIC")
    settings = state(ctx).settings()
    lane = lane or settings.lanes[0]
    user_ids: list[str] = _run(lambda: segment_user_ids(settings, lane, sql, timeout))
    if out is not None:
        out.write_text("".join(f"{user_id}\n" for user_id in user_ids))
        console.print(f"{len(user_ids):,} user ids written to {out}")
    else:
        assert topic is not None
        _run(lambda: export_segment(settings, topic, user_ids))
        console.print(f"{len(user_ids):,} user ids produced to {topic}")


def register(app: typer.Typer) -> None:
    app.command("funnel")(funnel)
    app.command("paths")(paths)
    app.command("segment")(segment)
