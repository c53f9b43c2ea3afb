"""The pure parts of ``highway bench spark``: the drift, the runtime's coordinates, the comparison."""

from __future__ import annotations

from bench.spark_check import compare, drift, drifted_phases
from connectors.local.spark_jars import runtime_artifact
from core.sim import SimConfig


def test_integers_drift_to_floats_then_to_strings_or_objects_and_nothing_else_changes() -> None:
    assert [drift(7, phase, 0) for phase in (0, 1, 2)] == [7, 7.5, {"value": 7}]
    assert drift(7, 2, 1) == "7"
    assert [drift(value, 2, 1) for value in (True, 2.5, "x", None)] == [True, 2.5, "x", None]


def test_the_phases_split_the_simulation_in_order_and_change_the_types() -> None:
    config = SimConfig(start_ms=0, seed=3, users=50, event_types=10, events=900, lane="l")
    phases = drifted_phases(config, batch=100)
    assert [len(phase) for phase in phases] == [300, 300, 300]
    kinds = [
        {type(value).__name__ for event in phase for value in event["properties"].values()}
        for phase in phases
    ]
    assert "int" in kinds[0]
    assert "int" not in kinds[1] | kinds[2]
    assert "float" in kinds[1]
    assert {"str", "dict"} <= kinds[2]


def test_the_runtime_matches_the_spark_minor_and_scala_2_13() -> None:
    assert runtime_artifact("4.1.4", "1.12.0") == "org.apache.iceberg:iceberg-spark-runtime-4.1_2.13:1.12.0"


def test_a_table_of_the_truth_missing_from_the_lake_fails_and_extra_rows_fail() -> None:
    read = [
        {"table": "b", "expected": 3, "rows": 3, "ok": True},
        {"table": "c", "expected": 0, "rows": 2, "ok": False},
    ]
    rows = compare({"a": 1, "b": 3}, read)
    assert [(row["table"], row["ok"]) for row in rows] == [("a", False), ("b", True), ("c", False)]
    assert rows[0]["error"] == "not in the lake"
