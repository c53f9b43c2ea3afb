"""docker-compose.yml's S3 services, run for real without Docker.

The ``s3`` service is moto's server image: its entrypoint is ``moto_server -H 0.0.0.0`` plus the
service's command, and the same ``moto_server`` is installed here (the ``local`` extra). The test
starts it with the service's arguments (on a free loopback port), waits on the service's healthcheck
URL, then runs the ``s3-init`` one-shot script with the service's environment and checks that the
lake's bucket exists — and that a second run (a ``docker compose up`` on an existing stack) passes.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from connectors.local.process import free_ports
from connectors.local.s3 import s3_client
from tests.support import wait_until

pytestmark = pytest.mark.integration

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
MOTO_SERVER = Path(sys.executable).with_name("moto_server")


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    found = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    assert isinstance(found, dict)
    return found


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture
def s3_service(services: dict[str, Any]) -> Iterator[str]:
    """The ``s3`` service's server on a free port; yields the endpoint as its clients would use it."""
    command = list(services["s3"]["command"])
    compose_port = command[command.index("-p") + 1]
    port = str(free_ports(1)[0])
    command[command.index("-p") + 1] = port
    assert MOTO_SERVER.is_file(), f"{MOTO_SERVER} missing: pip install -e '.[dev]' installs moto's server"
    process = subprocess.Popen(
        [str(MOTO_SERVER), "-H", "127.0.0.1", *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        health = [arg for arg in services["s3"]["healthcheck"]["test"] if arg.startswith("http")]
        assert len(health) == 1, services["s3"]["healthcheck"]
        probe = health[0].replace(f"127.0.0.1:{compose_port}", f"127.0.0.1:{port}")
        assert probe != health[0], "the healthcheck does not probe the port the server listens on"
        wait_until(lambda: process.poll() is not None or answers(probe), 60, what="moto's healthcheck URL")
        assert process.poll() is None, f"moto_server {command} exited with {process.returncode}"
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_s3_init_creates_the_lake_bucket_and_is_idempotent(
    services: dict[str, Any], s3_service: str, tmp_path: Path
) -> None:
    init = services["s3-init"]
    env = {key: str(value) for key, value in init["environment"].items()}
    env["HIGHWAY_AWS_S3_ENDPOINT_URL"] = s3_service  # the compose name `s3` is this loopback port
    env["PATH"] = "/usr/bin:/bin"
    entrypoint = init["entrypoint"]
    assert entrypoint[:2] == ["python", "-c"]
    bucket = urlparse(env["HIGHWAY_LAKE_URI"]).netloc
    client = s3_client(s3_service, env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
    assert bucket not in {b["Name"] for b in client.list_buckets()["Buckets"]}

    for run in ("first", "again"):
        result = subprocess.run(
            [sys.executable, *entrypoint[1:]],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"{run} run: {result.stderr}"
        assert f"bucket {bucket} ready" in result.stdout
        assert bucket in {b["Name"] for b in client.list_buckets()["Buckets"]}
