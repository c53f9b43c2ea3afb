"""With the broker away, the CLI prints one clear line, not librdkafka's reconnect log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from connectors.local.process import free_ports


def _run(args: list[str], tmp_path: Path, timeout_s: float) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HIGHWAY_")}
    env |= {"HIGHWAY_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_ports(1)[0]}", "HIGHWAY_STATE_DIR": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-m", "highway.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=tmp_path,
    )


def test_produce_without_broker_prints_one_error_line(tmp_path: Path) -> None:
    run = _run(["produce", "-n", "100"], tmp_path, 120)
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "no answer from 127.0.0.1:" in errors[0]
    assert "FAIL" not in run.stderr
    assert "Connection refused" not in run.stderr + run.stdout
    assert len(run.stderr.splitlines()) <= 3  # the progress line and the error


@pytest.mark.timeout(120)
def test_worker_without_broker_waits_with_one_line_per_attempt(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HIGHWAY_")}
    env |= {"HIGHWAY_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_ports(1)[0]}", "HIGHWAY_STATE_DIR": str(tmp_path)}
    env |= {"HIGHWAY_HTTP_PORT": str(free_ports(1)[0]), "HIGHWAY_LAKE_URI": f"file://{tmp_path}/lake"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "highway.cli", "worker", "--role", "router"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # ends when the worker exits; the timeout below bounds it
            lines.append(line)
            if line.startswith("waiting for Kafka"):
                break
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    output = "".join(lines)
    assert lines, "the worker printed nothing"
    assert lines[-1].startswith("waiting for Kafka: could not list topics at 127.0.0.1:"), output
    assert "retrying in 1s" in lines[-1]
    assert "FAIL" not in output
    assert "Traceback" not in output
    assert len(lines) <= 4, output  # the worker's start line(s) and the one waiting line
