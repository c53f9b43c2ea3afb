"""Pure parts of the local stack: export lines, settings it produces, process plumbing."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import connectors.local.stack as stack_module
from connectors.local.process import (
    free_ports,
    owned_pid_alive,
    port_answers,
    port_is_free,
    process_cmdline,
    read_state,
    terminate,
    write_state,
)
from connectors.local.s3 import S3Server, require_moto
from connectors.local.stack import (
    ExternalKafka,
    ExternalS3,
    LocalStack,
    glue_endpoint,
    render_exports,
    stack_status,
    start_stack,
    stop_stack,
)
from core.errors import InfrastructureError
from core.settings import Settings
from highway.cli import app as cli_app
from highway.cli.worker import parse_roles
from tests.support import wait_until


class _FakeKafka:
    """Only a bootstrap string: enough for LocalStack's pure properties."""

    bootstrap = "127.0.0.1:40001"
    restartable = True

    def start(self) -> Any:
        return self

    def stop(self) -> None:
        raise AssertionError("not used")

    def is_running(self) -> bool:
        return True

    def describe(self) -> dict[str, Any]:
        return {}


def _stack() -> LocalStack:
    return LocalStack(kafka=_FakeKafka(), s3=ExternalS3("http://127.0.0.1:40002"), bucket="highway")


def test_exports_are_shell_quoted_export_lines() -> None:
    text = render_exports({"A": "plain", "B": "with space", "C": "it's"})
    lines = text.splitlines()
    assert lines[0] == "export A=plain"
    assert all(line.startswith("export ") for line in lines)
    assert [shlex.split(line)[1] for line in lines] == ["A=plain", "B=with space", "C=it's"]
    assert text.endswith("\n")


def test_stack_env_points_highway_and_aws_clients_at_the_stack() -> None:
    env = _stack().env()
    assert env["HIGHWAY_KAFKA_BOOTSTRAP"] == "127.0.0.1:40001"
    assert env["HIGHWAY_AWS_S3_ENDPOINT_URL"] == "http://127.0.0.1:40002"
    assert env["HIGHWAY_LAKE_URI"] == "s3://highway/lake"
    assert env["AWS_ACCESS_KEY_ID"] == env["HIGHWAY_AWS_ACCESS_KEY_ID"] == "testing"
    assert env["AWS_SECRET_ACCESS_KEY"] == env["HIGHWAY_AWS_SECRET_ACCESS_KEY"] == "testing"
    highway_fields = {key.removeprefix("HIGHWAY_").lower() for key in env if key.startswith("HIGHWAY_")}
    assert highway_fields <= set(Settings.model_fields)


def test_stack_settings_overrides_build_valid_settings() -> None:
    settings = Settings(**_stack().settings_overrides())
    assert settings.kafka_bootstrap == "127.0.0.1:40001"
    assert settings.lake_uri == "s3://highway/lake"
    assert settings.aws_access_key_id is not None
    assert settings.aws_access_key_id.get_secret_value() == "testing"


def test_external_services_refuse_to_be_stopped() -> None:
    with pytest.raises(InfrastructureError, match="external"):
        ExternalKafka("127.0.0.1:1").stop()
    with pytest.raises(InfrastructureError, match="external"):
        ExternalS3("http://127.0.0.1:1").stop()
    assert not ExternalKafka("127.0.0.1:1").restartable


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(3)
    assert len(set(ports)) == 3
    assert all(port_is_free(port) for port in ports)
    assert not any(port_answers(port, timeout_s=0.2) for port in ports)


def test_state_files_round_trip_and_tolerate_garbage(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "state.json"
    assert read_state(path) == {}
    write_state(path, {"pid": 12, "port": 34})
    assert read_state(path) == {"pid": 12, "port": 34}
    path.write_text("{not json")
    assert read_state(path) == {}


def test_pid_ownership_needs_the_marker_and_terminate_ends_the_group(tmp_path: Path) -> None:
    marker = str(tmp_path / "marker-for-this-test")
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", marker], start_new_session=True
    )
    try:
        # Linux fills in /proc/<pid>/cmdline a moment after exec: Popen may return before that.
        wait_until(lambda: marker in process_cmdline(proc.pid), 5, 0.01, "the child's command line")
        assert owned_pid_alive(proc.pid, marker)
        assert not owned_pid_alive(proc.pid, marker + "-other")
        assert not owned_pid_alive(os.getpid(), marker)
        terminate(proc.pid + 10_000_000, marker)  # not ours: ignored, no error
        terminate(proc.pid, marker, grace_s=5)
        assert proc.wait(5) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not owned_pid_alive(proc.pid, marker)


def test_worker_roles_parse_in_order_without_duplicates() -> None:
    assert parse_roles("router, lake,router") == ["router", "lake"]
    assert parse_roles("") == []


def test_status_and_down_of_a_stack_that_never_ran(tmp_path: Path) -> None:
    services = stack_status(tmp_path / "dev")
    assert [service["service"] for service in services] == ["kafka", "s3"]
    assert not any(service["running"] for service in services)
    assert stop_stack(tmp_path / "dev") == []
    assert stop_stack(tmp_path / "dev") == []


def test_dev_up_refuses_a_docker_broker_it_could_not_leave_running(tmp_path: Path) -> None:
    settings = Settings(dev_kafka_backend="docker", _env_prefix="HIGHWAY_TEST_UNUSED_")
    with pytest.raises(InfrastructureError, match=r"docker-compose\.yml"):
        start_stack(settings, tmp_path, allow_docker=False)
    assert not (tmp_path / "kafka").exists()


def test_the_stack_sends_glue_to_moto_and_leaves_an_external_s3s_glue_alone(tmp_path: Path) -> None:
    configured = Settings(aws_glue_endpoint_url="https://glue.example", _env_prefix="HIGHWAY_TEST_UNUSED_")
    moto = S3Server(tmp_path / "s3")
    moto.port = 40003
    assert glue_endpoint(configured, moto) == "http://127.0.0.1:40003"
    assert glue_endpoint(configured, ExternalS3("http://minio:9000")) == "https://glue.example"
    plain = Settings(_env_prefix="HIGHWAY_TEST_UNUSED_")
    assert glue_endpoint(plain, ExternalS3("http://minio:9000")) is None  # AWS Glue, not MinIO
    stack = LocalStack(
        kafka=_FakeKafka(), s3=moto, bucket="highway", glue_endpoint=glue_endpoint(plain, moto)
    )
    built = Settings(**stack.settings_overrides())
    assert built.aws_glue_endpoint_url == built.aws_s3_endpoint_url == "http://127.0.0.1:40003"
    assert stack.env()["HIGHWAY_AWS_GLUE_ENDPOINT_URL"] == "http://127.0.0.1:40003"
    assert "HIGHWAY_AWS_GLUE_ENDPOINT_URL" not in _stack().env()


def _refuse_to_launch(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError(f"launched a process without moto: {args}")


def _no_kafka_yet(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("Kafka was chosen before the missing moto was reported")


MISSING_MOTO = "the local S3 API needs moto's server (moto not installed): pip install 'highway[local]'"


def test_the_local_s3_api_names_the_extra_when_moto_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_moto()  # the dev environment has it
    monkeypatch.setitem(sys.modules, "moto", None)  # what `import moto` sees when it is not installed
    monkeypatch.setattr(subprocess, "Popen", _refuse_to_launch)
    with pytest.raises(InfrastructureError) as caught:
        S3Server(tmp_path / "s3").start()
    assert str(caught.value) == MISSING_MOTO
    # Status and down never need moto.
    assert not any(service["running"] for service in stack_status(tmp_path))
    assert stop_stack(tmp_path) == []


def test_dev_up_without_moto_prints_one_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [key for key in os.environ if key.startswith("HIGHWAY_")]:
        monkeypatch.delenv(key)  # an exported S3 endpoint would make the stack skip moto
    monkeypatch.setitem(sys.modules, "moto", None)
    monkeypatch.setattr(subprocess, "Popen", _refuse_to_launch)
    monkeypatch.setattr(stack_module, "_choose_kafka", _no_kafka_yet)
    result = CliRunner().invoke(cli_app, ["dev", "up"], env={"HIGHWAY_STATE_DIR": str(tmp_path)})
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    # Not wrapped at the console width, and `[local]` printed as text, not taken for markup.
    assert errors == [f"error: {MISSING_MOTO}"]
    assert result.stdout == ""  # no export lines for eval
