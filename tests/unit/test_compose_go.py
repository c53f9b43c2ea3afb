"""docker-compose.yml loaded by compose-go, the library Docker Compose itself is built on.

tools/composecheck (built at test time, see tests/go_tools.py) validates the file against the
Compose Specification schema and its consistency (dependencies, volumes), and prints the normalized
project: the anchors and merge keys resolved by a real implementation rather than by PyYAML.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import ConfigError
from tests.deploy_env import HOST_ENV, worker_settings
from tests.go_tools import go_tool, run_tool
from tests.unit.test_compose import COMPOSE_FILE, HIGHWAY_IMAGE_SERVICES, IMAGES, ROOT, WORKERS

HOST_ARGS = [f"{name}={value}" for name, value in HOST_ENV.items()]


@pytest.fixture(scope="module")
def composecheck() -> Path:
    return go_tool("composecheck")


def test_compose_go_loads_and_validates_the_file(composecheck: Path) -> None:
    result = run_tool(composecheck, str(COMPOSE_FILE), *HOST_ARGS)
    assert result.returncode == 0, result.stderr
    project = json.loads(result.stdout)
    assert project["name"] == "highway"
    loaded = project["services"]
    assert set(loaded) == {*IMAGES, *HIGHWAY_IMAGE_SERVICES}
    # The anchors and merge keys resolved by the real implementation, not by PyYAML.
    for name in WORKERS:
        assert loaded[name]["environment"]["HIGHWAY_KAFKA_BOOTSTRAP"] == "kafka:9092", name
        assert loaded[name]["depends_on"]["s3-init"]["condition"] == "service_completed_successfully"
        assert loaded[name]["healthcheck"]["test"][0] == "CMD", name
        assert loaded[name]["environment"]["HIGHWAY_API_TOKEN"] == HOST_ENV["HIGHWAY_API_TOKEN"], name
    published = {(s["published"], s["target"]) for s in loaded["collector"]["ports"]}
    assert ("6068", 6066) in published
    for name, service in loaded.items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), f"{name} mounts missing {volume['source']}"


def test_workers_as_compose_go_resolves_them_need_the_token(
    composecheck: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_tool(composecheck, str(COMPOSE_FILE), *HOST_ARGS)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)["services"]
    for name in WORKERS:
        env = {key: str(value) for key, value in loaded[name]["environment"].items()}
        settings = worker_settings(env, monkeypatch)
        assert settings.api_token is not None, name
        assert settings.metrics_require_token is False, name
        env.pop("HIGHWAY_API_TOKEN")
        with pytest.raises(ConfigError, match="api_token"):
            worker_settings(env, monkeypatch)
    assert (
        loaded["collector"]["environment"]["HIGHWAY_COLLECTOR_API_KEYS"]
        == HOST_ENV["HIGHWAY_COLLECTOR_API_KEYS"]
    )


@pytest.mark.parametrize("missing", sorted(HOST_ENV))
def test_compose_go_refuses_the_file_without_a_secret(composecheck: Path, missing: str) -> None:
    given = [arg for arg in HOST_ARGS if not arg.startswith(f"{missing}=")]
    result = run_tool(composecheck, str(COMPOSE_FILE), *given)
    assert result.returncode != 0, result.stdout[:500]
    assert f"set {missing}" in result.stderr


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        (('    restart: "no"\n', '    restart: "no"\n    restrat: always\n'), "restrat"),
        (
            (
                "      s3:\n        condition: service_healthy",
                "      s4:\n        condition: service_healthy",
            ),
            "s4",
        ),
        (('      - "9000:9000"', '      - "ninety:9000"'), "ninety"),
    ],
    ids=["unknown-key", "undefined-dependency", "bad-port"],
)
def test_compose_go_rejects_a_broken_file(
    composecheck: Path, tmp_path: Path, mistake: tuple[str, str], message: str
) -> None:
    text = COMPOSE_FILE.read_text()
    assert mistake[0] in text, "the test's mistake no longer applies to docker-compose.yml"
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace(mistake[0], mistake[1], 1))
    for mount in ("deploy", "Dockerfile"):
        (tmp_path / mount).symlink_to(ROOT / mount)
    result = run_tool(composecheck, str(broken), *HOST_ARGS)
    assert result.returncode != 0, result.stdout[:500]
    assert message in result.stderr
