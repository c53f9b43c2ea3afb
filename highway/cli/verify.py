"""`highway verify --truth FILE`: a pass/fail table of the pipeline's output against a truth file.

Exit code 0 when every present check passes, 1 when one fails (or reading failed), 2 for bad usage.
With ``--wait S`` failing checks are re-run (fresh reads) until they pass or ``S`` seconds are spent.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.table import Table

from core.errors import HighwayError
from core.settings import Settings
from core.sim.truth import Truth, load_truth
from highway.cli.common import console, fail, state
from highway.verify import CheckResult, VerifyContext, overall_passed, registered_checks, run_checks


def verify_once(
    settings: Settings,
    truth: Truth,
    lane: str,
    only: list[str] | None = None,
    allow_duplicates: bool = False,
) -> list[CheckResult]:
    context = VerifyContext(settings=settings, truth=truth, lane=lane, allow_duplicates=allow_duplicates)
    return run_checks(context, registered_checks(only))


def render(results: list[CheckResult], truth_path: Path) -> Table:
    table = Table(title=f"highway verify — {truth_path}")
    for column in ("check", "status", "expected", "actual", "missing", "duplicates", "detail"):
        table.add_column(column, justify="right" if column in ("expected", "actual") else "left")
    styles = {"pass": "green", "FAIL": "bold red", "not present": "dim"}
    for result in results:
        present = result.present
        table.add_row(
            result.name,
            f"[{styles[result.status]}]{result.status}[/]",
            ""
            if result.expected is None
            else f"{result.expected:,}"
            if isinstance(result.expected, int)
            else result.expected,
            ""
            if result.actual is None
            else f"{result.actual:,}"
            if isinstance(result.actual, int)
            else result.actual,
            f"{result.missing:,}" if present else "",
            f"{result.duplicates:,}" if present else "",
            result.detail,
        )
    return table


def verify(
    ctx: typer.Context,
    truth: Annotated[Path, typer.Option(help="truth file written by `highway produce --truth`")],
    lane: Annotated[str | None, typer.Option(help="lane (default: the truth file's)")] = None,
    only: Annotated[str | None, typer.Option(help="comma-separated check names")] = None,
    wait: Annotated[float, typer.Option(help="retry failing checks for up to this many seconds")] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="print results as JSON on stdout")] = False,
    allow_duplicates: Annotated[
        bool, typer.Option(help="at-least-once pipeline: report duplicates without failing")
    ] = False,
) -> None:
    """Reconcile per-event topics, DLQ, common topic (and lake/concurrency when present) with the truth."""
    settings = state(ctx).settings()
    try:
        loaded = load_truth(truth)
    except (OSError, ValueError, KeyError) as exc:
        console.print(f"[red]error:[/red] cannot read truth file {truth}: {exc}")
        raise typer.Exit(2) from exc
    names = [name.strip() for name in only.split(",") if name.strip()] if only else None
    deadline = time.monotonic() + wait
    try:
        while True:
            results = verify_once(settings, loaded, lane or loaded.lane, names, allow_duplicates)
            if overall_passed(results) or time.monotonic() >= deadline:
                break
            time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    except HighwayError as exc:
        raise fail(exc) from exc
    if as_json:
        typer.echo(orjson.dumps([{**r.__dict__, "status": r.status} for r in results]).decode())
    console.print(render(results, truth))
    passed = overall_passed(results)
    console.print("[green]PASS[/green]" if passed else "[bold red]FAIL[/bold red]")
    if not passed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
