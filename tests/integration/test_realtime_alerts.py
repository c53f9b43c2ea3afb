"""The alerting rules load in promtool and their unit tests fire on a drop, stay quiet when steady."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool comes with the Debian package `prometheus` (CI installs it)"
    return subprocess.run([binary, *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=300)


def test_alert_rules_check_and_unit_tests_pass() -> None:
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_a_broken_expectation_fails(tmp_path: Path) -> None:
    """The rule tests can fail: expecting the drop alert on steady traffic is reported."""
    (tmp_path / "alerts.yml").write_text((PROMETHEUS_DIR / "alerts.yml").read_text())
    (tmp_path / "bad_test.yml").write_text(
        """rule_files: [alerts.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'highway_concurrent_users{lane="default",window="1m",state="closed",dimension="all"}'
        values: '1000+0x30'
    alert_rule_test:
      - eval_time: 25m
        alertname: HighwayConcurrencyDrop
        exp_alerts:
          - exp_labels: {lane: default, severity: page}
"""
    )
    binary = shutil.which("promtool")
    assert binary
    result = subprocess.run(
        [binary, "test", "rules", "bad_test.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "HighwayConcurrencyDrop" in result.stdout + result.stderr
