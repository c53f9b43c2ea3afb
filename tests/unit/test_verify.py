"""The verify framework without a broker: reconciliation, registry, pass/fail/not-present rules."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from rich.console import Console

from core.settings import Settings
from core.sim import MatchDaySimulator, SimConfig, TruthBuilder
from highway.cli.verify import render
from highway.verify import (
    CheckResult,
    VerifyContext,
    overall_passed,
    reconcile,
    register_check,
    registered_checks,
    run_checks,
)
from highway.verify.framework import _REGISTRY


def test_reconcile_counts_missing_duplicates_and_unexpected() -> None:
    outcome = reconcile(["a", "b", "c", "d"], Counter({"a": 1, "b": 3, "x": 2}))
    assert outcome.expected == 4
    assert outcome.found == 6
    assert outcome.missing == 2
    assert outcome.missing_sample == ("c", "d")
    assert outcome.duplicates == 3  # b twice extra, x once extra
    assert outcome.unexpected == 1
    assert not outcome.exact
    assert reconcile(["a"], Counter({"a": 1})).exact


def test_not_present_never_fails_but_a_failure_does() -> None:
    ok = CheckResult("a", True, 1, 1)
    absent = CheckResult.not_present("b", "no topic yet")
    failed = CheckResult("c", False, 10, 9, missing=1)
    assert absent.status == "not present"
    assert overall_passed([ok, absent])
    assert not overall_passed([ok, absent, failed])
    assert failed.status == "FAIL"


def test_topic_checks_are_registered_in_order() -> None:
    names = [check.name for check in registered_checks()]
    assert names[:4] == ["input", "per-event-topics", "common", "dlq"]
    assert [check.name for check in registered_checks(["dlq"])] == ["dlq"]
    with pytest.raises(ValueError, match="unknown check"):
        registered_checks(["nope"])


def _truth() -> TruthBuilder:
    builder = TruthBuilder("lane1", options={})
    config = SimConfig(start_ms=1_767_225_600_000, users=100, events=50, event_types=5)
    for batch in MatchDaySimulator(config).batches():
        builder.add(batch)
    return builder


def test_a_plugin_check_registers_runs_and_renders(tmp_path: Path) -> None:
    class CountsCheck:
        name = "unit-test-counts"

        def run(self, context: VerifyContext) -> list[CheckResult]:
            total = sum(context.truth.counts.values())
            calls = context.cached("calls", list)
            calls.append(1)
            return [CheckResult(self.name, total == context.truth.events, context.truth.events, total)]

    register_check(CountsCheck)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_check(type("Other", (), {"name": "unit-test-counts"}))
        context = VerifyContext(Settings(), _truth().build(), "lane1")
        results = run_checks(context, registered_checks(["unit-test-counts"]) * 2)
        assert [r.passed for r in results] == [True, True]
        assert results[0].expected == 50
        assert context.cache["calls"] == [1, 1]
        console = Console(record=True, width=200)
        console.print(render([*results, CheckResult.not_present("lake", "no table")], tmp_path / "t.json"))
        text = console.export_text()
        assert "unit-test-counts" in text
        assert "not present" in text
    finally:
        _REGISTRY.pop("unit-test-counts", None)
