"""Every alert has promtool cases that fire and that stay quiet, and queries only exported metrics.

The cases themselves run in ``tests/integration/test_realtime_alerts.py`` (``promtool test rules``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tests.unit.test_realtime_exposition import exported_metric_names

PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
SCRAPE_SERIES = {"up"}  # written by Prometheus itself for every target


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    suite = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())
    assert suite["rule_files"] == ["alerts.yml"]
    cases = [case for test in suite["tests"] for case in test.get("alert_rule_test", [])]
    for alert in (rule["alert"] for rule in rules() if "alert" in rule):
        own = [case for case in cases if case["alertname"] == alert]
        assert any(case["exp_alerts"] for case in own), f"{alert}: no case where it fires"
        assert any(not case["exp_alerts"] for case in own), f"{alert}: no case where it stays quiet"


def test_rules_query_only_exported_metrics() -> None:
    exported = exported_metric_names() | SCRAPE_SERIES
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    for rule in rules():
        names = set(re.findall(r"\b(?:highway[_:]\w[\w:]*|up)\b", rule["expr"]))
        metrics = names - recorded
        assert names, rule
        assert metrics <= exported, f"{rule.get('alert') or rule.get('record')}: {sorted(metrics - exported)}"
