"""The route bench's pure parts: summaries, rotation, goals and ratios, CPU verdicts, /proc parsing."""

from __future__ import annotations

import math

from bench.cpu import CpuUse, bound_verdict, listening_inodes, parse_proc_stat
from bench.events import BenchEvents, BenchRecord
from bench.route_report import Measured, bound_lines, plan, render, summarize
from bench.stats import percentile, ratio, rotated, spread
from core.envvars import with_overrides
from core.settings import Settings


def test_spread_is_median_and_range_of_finite_values() -> None:
    value = spread([3.0, None, 1.0, math.nan, 10.0])
    assert value is not None
    assert (value.median, value.low, value.high, value.count) == (3.0, 1.0, 10.0, 3)
    assert value.format(",.0f") == "3 (1-10)"
    assert spread([None, math.inf]) is None
    single = spread([2.5])
    assert single is not None
    assert single.format(".1f", "x") == "2.5x"


def test_percentile_and_ratio() -> None:
    assert percentile([5.0, 1.0, 3.0], 0.5) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.99) == 4.0
    assert math.isnan(percentile([], 0.5))
    assert ratio(1.0, 4.0) == 0.25
    assert ratio(1.0, 0.0) is None
    assert ratio(None, 2.0) is None


def test_rotation_moves_every_measurement_through_every_position() -> None:
    keys = plan(["exactly_once"])
    assert keys == [
        "passthrough",
        "fanout:exactly_once",
        "steady:exactly_once",
        "burst:exactly_once",
        "naive",
    ]
    orders = [rotated(keys, rep) for rep in range(len(keys))]
    assert orders[0] == keys
    assert orders[1][0] == "fanout:exactly_once"
    assert orders[1][-1] == "passthrough"
    for position in range(len(keys)):
        assert sorted(order[position] for order in orders) == sorted(keys)
    assert rotated(keys, len(keys)) == keys
    assert rotated([], 3) == []


def _rep(
    steady: float, fanout: float, passthrough: float, naive: float, burst_s: float
) -> dict[str, Measured]:
    cpu = CpuUse(seconds=1.0, process_cores=0.95, processes=1, broker_cores=0.4, machine_share=0.7, cpus=2)
    return {
        "passthrough": Measured("passthrough", 1000, 1000 / passthrough, cpu),
        "fanout:at_least_once": Measured("fanout:at_least_once", 1000, 1000 / fanout),
        "steady:at_least_once": Measured("steady:at_least_once", 1000, 1000 / steady, cpu, {"inject_s": 0.1}),
        "burst:at_least_once": Measured("burst:at_least_once", 500, burst_s),
        "naive": Measured("naive", 100, 100 / naive),
    }


def test_summary_takes_ratios_within_a_repetition_then_median_and_range() -> None:
    reps = [
        _rep(8_000, 10_000, 40_000, 500, 4.0),
        _rep(4_000, 8_000, 20_000, 800, 12.0),
        _rep(9_000, 9_000, 30_000, 900, 6.0),
    ]
    summary = summarize(reps, ["at_least_once"], processes=2, event_types=250)
    steady = summary["measurements"]["steady:at_least_once"]
    assert steady["rate"] == {"median": 8000.0, "min": 4000.0, "max": 9000.0, "n": 3}
    assert steady["label"] == "router steady state (at_least_once, 2 processes)"
    assert steady["bound"] == "its own process's CPU"
    assert steady["extra"]["inject_s"]["median"] == 0.1
    goals = {row["name"]: row for row in summary["goals"]}
    fan = goals["router / matched fan-out (at_least_once)"]
    # per repetition: 0.8, 0.5, 1.0 — not the ratio of the medians (8000 / 9000)
    assert fan["value"] == {"median": 0.8, "min": 0.5, "max": 1.0, "n": 3}
    assert fan["met"] is True
    assert fan["goal"] == "≥ 0.8"
    assert goals["router / single passthrough (at_least_once)"]["value"]["median"] == 0.2
    assert goals["router / single passthrough (at_least_once)"]["met"] is False
    assert goals["router / naive agent (at_least_once)"]["value"]["median"] == 10.0
    burst = goals["burst fully routed, seconds (at_least_once)"]
    assert burst["value"]["median"] == 6.0
    assert burst["met"] is True


def test_missing_measurements_leave_goals_open_and_render_anyway() -> None:
    summary = summarize([{"passthrough": Measured("passthrough", 10, 1.0)}], ["exactly_once"])
    assert list(summary["measurements"]) == ["passthrough"]
    assert all(row["met"] is None for row in summary["goals"])
    assert render(summary, "t").row_count == 1 + 4
    lines = bound_lines(summary, 2)
    assert "measured -, broker -, other -" in lines[1]


def test_bound_verdicts() -> None:
    def use(process: float | None, broker: float | None, machine: float | None, processes: int = 1) -> CpuUse:
        return CpuUse(1.0, process, processes, broker, machine, cpus=2)

    assert bound_verdict(use(0.97, 0.5, 0.8)) == "its own process's CPU"
    assert bound_verdict(use(1.2, 0.5, 0.8, processes=2)) == "waiting on the broker (no CPU saturated)"
    assert bound_verdict(use(0.4, 0.5, 0.95)) == "machine CPU (all cores busy)"
    assert bound_verdict(use(0.4, 0.9, 0.7)) == "the broker's CPU"
    assert bound_verdict(use(None, None, None)) == "unknown (no /proc)"


def test_proc_parsing() -> None:
    assert parse_proc_stat("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n") == (150, 1000)
    table = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 0100007F:5E5F 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1\n"
        "   1: 0100007F:5E5F 0100007F:A000 01 00000000:00000000 00:00000000 00000000  1000        0 4343 1\n"
    )
    assert listening_inodes([table], 0x5E5F) == {"4242"}
    assert listening_inodes([table], 9092) == set()


def test_offset_layout_follows_load_order_per_partition() -> None:
    settings = with_overrides(Settings(), lanes=["l1"])
    records = [
        BenchRecord(1, b"u1", b"{}", "contest_join"),
        BenchRecord(0, b"u2", b"{}", "Odd Name"),
        BenchRecord(1, b"u1", b"{}", "app_open"),
    ]
    events = BenchEvents(records, partitions=2)
    layout = events.topics_by_offset(settings, "l1")
    assert [topic for topic, _ in layout[1]] == ["l1.event.contest_join", "l1.event.app_open"]
    assert layout[0][0][1] == b"Odd Name"
    assert layout[0][0][0].startswith("l1.event.odd_name--")
    assert events.event_names == ["Odd Name", "app_open", "contest_join"]
    assert len(events.head(2)) == 2
    assert events.head(2).partitions == 2
