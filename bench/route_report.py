"""The route bench's plan, summary and table: pure functions of the measured figures (unit-tested).

A repetition runs every measurement once; :func:`plan` lists them and :func:`bench.stats.rotated`
shifts the order per repetition. Ratios are taken within a repetition (same broker state, same
minute) and then summarised, so a ratio's range shows how much the machine's noise moves it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.table import Table

from bench.cpu import CpuUse, bound_verdict
from bench.stats import Spread, ratio, spread

MODES = ("exactly_once", "at_least_once")


@dataclass(frozen=True)
class Measured:
    """One measurement of one repetition: ``events`` in ``seconds``, and the CPU of that window."""

    key: str
    events: int
    seconds: float
    cpu: CpuUse | None = None
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Goal:
    name: str
    numerator: str
    denominator: str | None  # None: the goal is on the numerator's seconds
    target: float
    at_least: bool


def plan(modes: Sequence[str]) -> list[str]:
    """Every measurement of one repetition, in the order of repetition 0."""
    return [
        "passthrough",
        *(f"fanout:{mode}" for mode in modes),
        *(f"steady:{mode}" for mode in modes),
        *(f"burst:{mode}" for mode in modes),
        "naive",
    ]


def label(key: str, processes: int = 1, event_types: int = 0) -> str:
    kind, _, mode = key.partition(":")
    routers = f"{processes} processes" if processes > 1 else "1 process"
    return {
        "passthrough": "single-topic passthrough (raw)",
        "fanout": f"matched fan-out passthrough ({mode})",
        "steady": f"router steady state ({mode}, {routers})",
        "burst": f"router burst, {event_types} new types ({mode}, {routers})",
        "naive": "naive faust agent",
    }[kind]


def goals(modes: Sequence[str]) -> list[Goal]:
    """The issue's goals at 250 types, per delivery mode."""
    found: list[Goal] = []
    for mode in modes:
        steady = f"steady:{mode}"
        found += [
            Goal(f"router / matched fan-out ({mode})", steady, f"fanout:{mode}", 0.8, True),
            Goal(f"router / single passthrough ({mode})", steady, "passthrough", 0.25, True),
            Goal(f"router / naive agent ({mode})", steady, "naive", 10.0, True),
            Goal(f"burst fully routed, seconds ({mode})", f"burst:{mode}", None, 10.0, False),
        ]
    return found


def _goal_values(goal: Goal, reps: Sequence[dict[str, Measured]]) -> list[float | None]:
    values: list[float | None] = []
    for rep in reps:
        top = rep.get(goal.numerator)
        if goal.denominator is None:
            values.append(top.seconds if top is not None else None)
        else:
            bottom = rep.get(goal.denominator)
            values.append(ratio(top.rate if top else None, bottom.rate if bottom else None))
    return values


def _cpu_spreads(runs: list[Measured]) -> dict[str, Spread | None]:
    uses = [run.cpu for run in runs if run.cpu is not None]
    return {
        "process_cores": spread([use.process_cores for use in uses]),
        "broker_cores": spread([use.broker_cores for use in uses]),
        "machine_share": spread([use.machine_share for use in uses]),
    }


def _dict(value: Spread | None, digits: int = 3) -> dict[str, float | int] | None:
    return value.as_dict(digits) if value is not None else None


def summarize(
    reps: Sequence[dict[str, Measured]], modes: Sequence[str], processes: int = 1, event_types: int = 0
) -> dict[str, Any]:
    """Median and range per measurement, the goals' ratios, and what bounds each figure."""
    measurements: dict[str, Any] = {}
    for key in plan(modes):
        runs = [rep[key] for rep in reps if key in rep]
        if not runs:
            continue
        verdicts = Counter(bound_verdict(run.cpu) for run in runs if run.cpu is not None)
        extras = {name: _dict(spread([run.extra.get(name) for run in runs])) for name in runs[0].extra}
        measurements[key] = {
            "label": label(key, processes, event_types),
            "events": runs[0].events,
            "rate": _dict(spread([run.rate for run in runs]), 1),
            "seconds": _dict(spread([run.seconds for run in runs])),
            **{name: _dict(value) for name, value in _cpu_spreads(runs).items()},
            "bound": verdicts.most_common(1)[0][0] if verdicts else "unknown",
            "extra": extras,
        }
    goal_rows = []
    for goal in goals(modes):
        value = spread(_goal_values(goal, reps))
        met = None
        if value is not None:
            met = value.median >= goal.target if goal.at_least else value.median <= goal.target
        goal_rows.append(
            {
                "name": goal.name,
                "value": _dict(value),
                "goal": f"{'≥' if goal.at_least else '≤'} {goal.target:g}",
                "met": met,
            }
        )
    return {"measurements": measurements, "goals": goal_rows}


def _fmt(value: dict[str, Any] | None, spec: str, suffix: str = "") -> str:
    if value is None:
        return "-"
    return Spread(value["median"], value["min"], value["max"], value["n"]).format(spec, suffix)


def render(summary: dict[str, Any], title: str) -> Table:
    table = Table(title=title)
    table.add_column("measurement")
    table.add_column("events/s median (min-max)", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("CPU cores: measured / broker", justify="right")
    table.add_column("bound by")
    for entry in summary["measurements"].values():
        table.add_row(
            entry["label"],
            _fmt(entry["rate"], ",.0f"),
            _fmt(entry["seconds"], ".2f"),
            f"{_fmt(entry['process_cores'], '.2f')} / {_fmt(entry['broker_cores'], '.2f')}",
            entry["bound"],
        )
    table.add_section()
    for row in summary["goals"]:
        spec = ".3f" if "seconds" not in row["name"] else ".2f"
        met = {True: "[green]met[/green]", False: "[red]not met[/red]", None: "-"}[row["met"]]
        table.add_row(row["name"], _fmt(row["value"], spec), f"goal {row['goal']}", "", met, style="bold")
    return table


def bound_lines(summary: dict[str, Any], cpus: int) -> list[str]:
    """One line per measurement: the CPU figures behind its "bound by" verdict."""
    lines = [
        f"CPU in cores over each timed window (/proc/<pid>/stat; this machine has {cpus}); "
        "'machine' is the share of all cores busy. A Python stage's main thread tops out near 1 core."
    ]
    for entry in summary["measurements"].values():
        lines.append(
            f"  {entry['label']}: measured {_fmt(entry['process_cores'], '.2f')}, "
            f"broker {_fmt(entry['broker_cores'], '.2f')}, other {_other(entry, cpus)}, "
            f"machine {_fmt(entry['machine_share'], '.0%')} → {entry['bound']}"
        )
    return lines


def _other(entry: dict[str, Any], cpus: int) -> str:
    """Median cores busy outside the measured processes and the broker (other work on the machine)."""
    medians = [
        entry[name]["median"] if entry[name] else None
        for name in ("machine_share", "process_cores", "broker_cores")
    ]
    share, measured, broker = medians
    if share is None or measured is None:
        return "-"
    return f"{max(0.0, share * cpus - measured - (broker or 0.0)):.2f}"
