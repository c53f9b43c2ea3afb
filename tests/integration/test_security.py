"""A locked-down worker on the real broker and S3 API: HTTPS, the API token, and no secret in its
log, its HTTP answers or a command's output."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from core.envvars import settings_env
from tests.support import WorkerProcess, wait_until

API_TOKEN = "api-token-5f1e0c9a7b3d"
SECRETS = {
    "api_token": API_TOKEN,
    "schema registry password": "registry-pw-8c2d41",
    "S3 secret key": "s3-secret-3b7e9f",
    "kafka_extra_config value": "keystore-pw-91ad2c",
    "unused SASL password": "sasl-pw-77f0e4",
}


def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "web.pem", tmp_path / "web.key"
    subprocess.run(
        [
            *(
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
            ),
            *("-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _leaks(text: str) -> list[str]:
    return [name for name, secret in SECRETS.items() if secret in text]


def test_https_token_and_no_secret_in_logs_or_answers(make_settings: Any, tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    settings = make_settings(
        log_level="DEBUG",  # the most a worker ever writes
        api_token=API_TOKEN,
        http_tls_cert_file=cert,
        http_tls_key_file=key,
        kafka_schema_registry_url="mock://security-test",
        kafka_schema_registry_username="reader",
        kafka_schema_registry_password=SECRETS["schema registry password"],
        aws_secret_access_key=SECRETS["S3 secret key"],
        kafka_extra_config={"ssl.keystore.password": SECRETS["kafka_extra_config value"]},
        kafka_sasl_password=SECRETS["unused SASL password"],
        lake_flush_age_s=1.0,
    )
    assert not _leaks(repr(settings))
    base = f"https://127.0.0.1:{settings.http_port}"
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    answers: dict[str, str] = {}
    with (
        WorkerProcess(settings) as worker,
        httpx.Client(verify=ssl.create_default_context(cafile=str(cert))) as http,
    ):

        def ready() -> bool:
            assert worker.alive(), "the worker exited"
            try:
                return http.get(f"{base}/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 90, 0.5, "worker /ready over HTTPS")
        env = {key: value for key, value in os.environ.items() if not key.startswith("HIGHWAY_")}
        produce = subprocess.run(
            [sys.executable, "-m", "highway.cli", "produce", "-n", "300", "--event-types", "3"],
            env={**env, **settings_env(settings)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert produce.returncode == 0, produce.stderr
        answers["highway produce"] = produce.stdout + produce.stderr

        def lake_rows() -> int:
            # Rows in files and manifest on S3, written with the secret key.
            return int(http.get(f"{base}/lake", headers=auth, timeout=5).json()["rows"])

        wait_until(lambda: lake_rows() >= 300, 120, 0.5, "300 routed events in the lake")
        assert http.get(f"{base}/api/v1/concurrency", timeout=5).status_code == 401
        wrong = http.get(f"{base}/api/v1/users/u1", headers={"Authorization": "Bearer guess"}, timeout=5)
        assert wrong.status_code == 401
        assert wrong.headers["WWW-Authenticate"].startswith("Bearer")
        for path in ("/health", "/ready", "/metrics"):
            response = http.get(f"{base}{path}", timeout=5)
            assert response.status_code == 200, path
            answers[path] = response.text
        for path in ("/api/v1/concurrency", "/api/v1/users/u1", "/lake"):
            response = http.get(f"{base}{path}", headers=auth, timeout=5)
            assert response.status_code == 200, path
            answers[path] = response.text
        answers["401 answer"] = wrong.text
        assert "router" in answers["/health"]
        assert "lake" in answers["/health"]
    log = "\n".join(path.read_text(errors="replace") for path in worker.log_dir.glob("*.log"))
    assert "librdkafka" in log or "highway" in log  # the log is there to search
    answers["worker log"] = log
    leaked = {where: _leaks(text) for where, text in answers.items() if _leaks(text)}
    assert not leaked, f"secrets found: {leaked}"


def test_a_worker_on_a_public_address_without_token_refuses_to_start(make_settings: Any) -> None:
    settings = make_settings(http_host="0.0.0.0")
    env = {key: value for key, value in os.environ.items() if not key.startswith("HIGHWAY_")}
    run = subprocess.run(
        [sys.executable, "-m", "highway.cli", "worker", "--role", "lake"],
        env={**env, **settings_env(settings)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0
    assert "api_token" in run.stderr
    assert "HIGHWAY_API_TOKEN" in run.stderr
    assert "Traceback" not in run.stderr
