"""docker-compose.yml: no Docker engine runs here, so the file is checked against the code.

test_compose_go.py loads and validates it with compose-go (the library of Docker Compose itself).
Here: services and pinned images, the KRaft
broker's listeners, every HIGHWAY_* variable against the settings model, Prometheus targets against
the workers' HTTP ports, and every mounted provisioning path against the repository.
tests/integration/test_compose_s3.py runs the s3 and s3-init commands themselves.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import pytest
import typer.main
import yaml
from pydantic import SecretStr

from core.collect.keys import parse_api_keys
from core.errors import ConfigError
from core.settings import ENV_PREFIX, Settings
from highway.cli import app as cli_app
from streams.app import ROLES
from tests.deploy_env import HOST_ENV, environment, settings_from, worker_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
WORKERS = ("worker-1", "worker-2", "collector")  # every service running `highway worker`
HIGHWAY_IMAGE_SERVICES = (*WORKERS, "simulator", "s3-init")
IMAGES = {
    "kafka": "apache/kafka:",
    "s3": "motoserver/moto:",
    "prometheus": "prom/prometheus:",
    "grafana": "grafana/grafana:",
}
KNOWN_ROLES = set(ROLES)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose["services"]
    assert isinstance(found, dict)
    return found


def bind_mounts(service: dict[str, Any]) -> dict[PurePosixPath, Path]:
    """Container path → repository path for every bind mount (``./x:/y[:ro]``) of a service."""
    mounts: dict[PurePosixPath, Path] = {}
    for volume in service.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source.startswith("."):
            mounts[PurePosixPath(target)] = (ROOT / source).resolve()
    return mounts


def in_repo(service: dict[str, Any], container_path: str) -> Path:
    """The repository file a container sees at ``container_path`` through the service's bind mounts."""
    wanted = PurePosixPath(container_path)
    for target, source in bind_mounts(service).items():
        if wanted == target or target in wanted.parents:
            return source / wanted.relative_to(target)
    raise AssertionError(f"{container_path} is not bind-mounted from the repository")


def dockerfile_env() -> dict[str, str]:
    """ENV KEY=VALUE pairs of the Dockerfile (line continuations joined)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(re.findall(r"(\w+)=(\S+)", line))
    return env


def cli_options(command: str) -> set[str]:
    click_group = typer.main.get_command(cli_app)
    sub = click_group.commands[command]  # type: ignore[attr-defined]
    return {opt for param in sub.params for opt in param.opts}


def test_expected_services_and_images(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {*IMAGES, *HIGHWAY_IMAGE_SERVICES}
    for name, prefix in IMAGES.items():
        image = services[name]["image"]
        assert image.startswith(prefix), f"{name}: {image}"
        assert ":latest" not in image, f"{name} must pin a version: {image}"
        assert image != prefix, f"{name} must pin a version: {image}"
        assert re.search(r":v?\d+\.\d+\.\d+$", image), f"{name} must pin a version tag: {image}"
    for name in HIGHWAY_IMAGE_SERVICES:
        assert services[name]["build"] == ".", name


def version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_the_s3_server_is_at_least_the_moto_the_tests_need(services: dict[str, dict[str, Any]]) -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    required = re.search(r'"moto\[server\]>=([\d.]+)"', pyproject)
    assert required, "pyproject.toml no longer names a minimum moto[server]"
    pinned = services["s3"]["image"].rsplit(":", 1)[1]
    assert version(pinned) >= version(required.group(1)), (pinned, required.group(1))


def test_dockerfile_builds_the_package_on_python_311_slim() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\s*$", text, re.M)
    assert re.search(r"pip install (--no-deps )?\.(\s|$)", text)
    assert 'ENTRYPOINT ["highway"]' in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored
    assert ".git" in ignored


def test_kafka_is_a_single_kraft_node_reachable_on_the_compose_network(
    services: dict[str, dict[str, Any]],
) -> None:
    env = environment(services["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "CLUSTER_ID" in env
    advertised = dict(item.split("://", 1) for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert voters.startswith(f"{env['KAFKA_NODE_ID']}@kafka:")
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # Highway creates topics itself
    for name in HIGHWAY_IMAGE_SERVICES:
        bootstrap = environment(services[name])["HIGHWAY_KAFKA_BOOTSTRAP"]
        if name == "s3-init":  # shares the settings, but only talks to S3
            continue
        assert bootstrap in advertised.values(), f"{name}: {bootstrap} is not advertised by kafka"
        assert not bootstrap.startswith("localhost"), name
        assert services[name]["depends_on"]["kafka"]["condition"] == "service_healthy"


def same_value(loaded: Any, raw: str) -> bool:
    """Whether a settings value is what the raw environment string says (numbers compared as numbers)."""
    if isinstance(loaded, dict):  # collector_api_keys: lane:digest,…
        return loaded == parse_api_keys(raw)
    if isinstance(loaded, bool):
        return str(loaded).lower() == raw.lower()
    if isinstance(loaded, SecretStr):
        return loaded.get_secret_value() == raw
    if isinstance(loaded, list):
        return ",".join(map(str, loaded)) == raw
    if isinstance(loaded, int | float) and not isinstance(loaded, bool):
        return float(loaded) == float(raw)
    return str(loaded) == raw.rstrip("/")


def test_every_highway_variable_is_a_settings_field_and_validates(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = {name: environment(service) for name, service in services.items()}
    # The image binds 0.0.0.0: whoever runs it passes the token (see the test below).
    sources["Dockerfile"] = {**dockerfile_env(), "HIGHWAY_API_TOKEN": HOST_ENV["HIGHWAY_API_TOKEN"]}
    checked = 0
    for source, env in sources.items():
        highway_env = {key: value for key, value in env.items() if key.startswith(ENV_PREFIX)}
        for key in highway_env:
            field = key.removeprefix(ENV_PREFIX).lower()
            assert field in Settings.model_fields, f"{source}: {key} is not a field of core.settings"
        settings = settings_from(highway_env, monkeypatch)
        for key, value in highway_env.items():
            field = key.removeprefix(ENV_PREFIX).lower()
            loaded = getattr(settings, field)
            assert same_value(loaded, value), f"{source}: {key}={value} loaded as {loaded!r}"
        checked += len(highway_env)
    assert checked > 20


def test_workers_start_only_with_the_api_token(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers bind 0.0.0.0: the settings they load must carry the token, and without it they stop."""
    for name in WORKERS:
        env = environment(services[name])
        settings = worker_settings(env, monkeypatch)
        assert settings.http_host == "0.0.0.0", name
        assert settings.api_token is not None, name
        assert settings.api_token.get_secret_value() == HOST_ENV["HIGHWAY_API_TOKEN"], name
        assert settings.metrics_require_token is False, f"{name}: Prometheus scrapes /metrics without a token"
        without = {key: value for key, value in env.items() if key != "HIGHWAY_API_TOKEN"}
        with pytest.raises(ConfigError, match="api_token"):
            worker_settings(without, monkeypatch)
    with pytest.raises(ConfigError, match="api_token"):
        worker_settings(dockerfile_env(), monkeypatch)  # the image's worker without a token stops, saying why


def test_secrets_have_no_defaults_in_the_file(services: dict[str, dict[str, Any]]) -> None:
    for name in WORKERS:
        host_env = {key: value for key, value in HOST_ENV.items() if key != "HIGHWAY_API_TOKEN"}
        with pytest.raises(KeyError, match=r"HIGHWAY_API_TOKEN.*docs/security\.md"):
            environment(services[name], host_env)
    with pytest.raises(KeyError, match="HIGHWAY_COLLECTOR_API_KEYS"):
        environment(services["collector"], {"HIGHWAY_API_TOKEN": HOST_ENV["HIGHWAY_API_TOKEN"]})


def test_the_collector_has_its_lane_keys_and_cors_origins(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_from(environment(services["collector"]), monkeypatch)
    lane, digest = HOST_ENV["HIGHWAY_COLLECTOR_API_KEYS"].split(":")
    assert settings.collector_api_keys == {lane: [digest]}
    assert set(settings.collector_api_keys) <= set(settings.lanes)
    assert settings.collector_cors_origins == ["http://localhost:8080"]
    chosen = {**HOST_ENV, "HIGHWAY_COLLECTOR_CORS_ORIGINS": "https://shop.example"}
    settings = settings_from(environment(services["collector"], chosen), monkeypatch)
    assert settings.collector_cors_origins == ["https://shop.example"]


def test_workers_listen_on_all_interfaces_and_their_healthcheck_port(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in WORKERS:
        env = environment(services[name])
        assert env["HIGHWAY_HTTP_HOST"] == "0.0.0.0", name
        port = env["HIGHWAY_HTTP_PORT"]
        probe = " ".join(services[name]["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/health" in probe, name
        assert any(str(mapping).endswith(f":{port}") for mapping in services[name]["ports"]), name
        assert services[name]["command"][0] == "worker"


def test_the_lake_writes_to_the_bucket_s3_init_creates(services: dict[str, dict[str, Any]]) -> None:
    init = services["s3-init"]
    script = " ".join(init["entrypoint"])
    assert 'os.environ["HIGHWAY_LAKE_URI"]' in script
    assert "create_bucket" in script
    assert init["depends_on"]["s3"]["condition"] == "service_healthy"
    s3_port = services["s3"]["command"][services["s3"]["command"].index("-p") + 1]
    assert any(str(mapping).endswith(f":{s3_port}") for mapping in services["s3"]["ports"])
    assert f"127.0.0.1:{s3_port}/" in " ".join(services["s3"]["healthcheck"]["test"])
    init_env = environment(init)
    for name in HIGHWAY_IMAGE_SERVICES:
        env = environment(services[name])
        lake = urlparse(env["HIGHWAY_LAKE_URI"])
        assert lake.scheme == "s3", name
        assert lake.netloc == urlparse(init_env["HIGHWAY_LAKE_URI"]).netloc, name
        assert urlparse(env["HIGHWAY_AWS_S3_ENDPOINT_URL"]).netloc == f"s3:{s3_port}", name
        for prefix in ("HIGHWAY_AWS_", "AWS_"):
            assert env[f"{prefix}ACCESS_KEY_ID"], name  # moto accepts any key; boto3 needs one to sign
            assert env[f"{prefix}SECRET_ACCESS_KEY"], name
    for name in WORKERS:
        assert services[name]["depends_on"]["s3-init"]["condition"] == "service_completed_successfully"


def test_simulator_and_worker_commands_exist_in_the_cli(services: dict[str, dict[str, Any]]) -> None:
    command = services["simulator"]["command"]
    assert command[0] == "produce"
    used = {arg for arg in command[1:] if arg.startswith("--")}
    assert used <= cli_options("produce"), used - cli_options("produce")
    assert "worker" in typer.main.get_command(cli_app).commands  # type: ignore[attr-defined]
    for name in WORKERS:
        worker = services[name]["command"]
        assert worker[:2] == ["worker", "--role"], name
        roles = set(worker[2].split(","))
        assert roles <= KNOWN_ROLES, f"{name}: unknown roles {roles - KNOWN_ROLES}"
    assert "collector" in services["collector"]["command"][2].split(",")


def prometheus_config(services: dict[str, dict[str, Any]]) -> tuple[Path, dict[str, Any]]:
    flag = next(arg for arg in services["prometheus"]["command"] if arg.startswith("--config.file="))
    path = in_repo(services["prometheus"], flag.split("=", 1)[1])
    config = yaml.safe_load(path.read_text())
    assert isinstance(config, dict)
    return path, config


def test_prometheus_scrapes_every_worker_port(services: dict[str, dict[str, Any]]) -> None:
    path, config = prometheus_config(services)
    assert path == ROOT / "deploy/prometheus/prometheus.yml"
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    workers = jobs["highway-worker"]
    assert workers.get("metrics_path", "/metrics") == "/metrics"
    targets = {target for static in workers["static_configs"] for target in static["targets"]}
    expected = {f"{name}:{environment(services[name])['HIGHWAY_HTTP_PORT']}" for name in WORKERS}
    assert targets == expected


def test_prometheus_rules_are_the_repository_alert_file(services: dict[str, dict[str, Any]]) -> None:
    _, config = prometheus_config(services)
    flag = next(arg for arg in services["prometheus"]["command"] if arg.startswith("--config.file="))
    config_dir = PurePosixPath(flag.split("=", 1)[1]).parent
    # Relative rule paths resolve against the config file's directory, in the container and out.
    assert all(not PurePosixPath(rule).is_absolute() for rule in config["rule_files"]), config["rule_files"]
    rule_files = [in_repo(services["prometheus"], str(config_dir / rule)) for rule in config["rule_files"]]
    assert rule_files == [ROOT / "deploy/prometheus/alerts.yml"]
    assert rule_files[0].is_file(), "deploy/prometheus/alerts.yml (the realtime alert rules) is missing"
    groups = yaml.safe_load(rule_files[0].read_text())["groups"]
    assert groups
    assert all(group["rules"] for group in groups)


def test_every_bind_mount_exists_in_the_repository(services: dict[str, dict[str, Any]]) -> None:
    mounted = [(name, source) for name, svc in services.items() for source in bind_mounts(svc).values()]
    assert mounted
    for name, source in mounted:
        assert source.exists(), f"{name} mounts {source}, which is not in the repository"


GRAFANA_BUILTIN_DATASOURCES = {"prometheus", "loki", "tempo", "testdata", "grafana-postgresql-datasource"}


def test_grafana_provisioning_matches_the_stack(services: dict[str, dict[str, Any]]) -> None:
    grafana = services["grafana"]
    datasource_files = sorted(in_repo(grafana, "/etc/grafana/provisioning/datasources").glob("*.yml"))
    datasources = [ds for path in datasource_files for ds in yaml.safe_load(path.read_text())["datasources"]]
    by_type = {ds["type"]: ds for ds in datasources}
    prometheus = by_type["prometheus"]
    assert urlparse(prometheus["url"]).netloc == "prometheus:9090"
    assert any(str(mapping).endswith(":9090") for mapping in services["prometheus"]["ports"])
    # Nothing is downloaded when Grafana starts: only built-in datasource types, no plugin install.
    assert set(by_type) <= GRAFANA_BUILTIN_DATASOURCES, set(by_type) - GRAFANA_BUILTIN_DATASOURCES
    plugin_settings = {
        key for key in environment(grafana) if key.startswith(("GF_INSTALL_PLUGINS", "GF_PLUGINS_"))
    }
    assert not plugin_settings, plugin_settings

    provider_files = sorted(in_repo(grafana, "/etc/grafana/provisioning/dashboards").glob("*.yml"))
    providers = [p for path in provider_files for p in yaml.safe_load(path.read_text())["providers"]]
    assert providers
    for provider in providers:
        dashboards = in_repo(grafana, provider["options"]["path"])
        assert dashboards == ROOT / "deploy/grafana/dashboards"
        assert dashboards.is_dir()
    home = in_repo(grafana, environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert home.is_file(), f"{home} (the Highway dashboard) is missing"


def datasource_uids(node: Any) -> set[str]:
    """Every ``"datasource": {"uid": ...}`` reference in a dashboard, template variables excluded."""
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("datasource")
        if isinstance(ref, dict) and isinstance(ref.get("uid"), str) and not ref["uid"].startswith("$"):
            found.add(ref["uid"])
        for value in node.values():
            found |= datasource_uids(value)
    elif isinstance(node, list):
        for item in node:
            found |= datasource_uids(item)
    return found


def test_dashboard_uses_only_provisioned_datasources(services: dict[str, dict[str, Any]]) -> None:
    grafana = services["grafana"]
    datasource_files = in_repo(grafana, "/etc/grafana/provisioning/datasources").glob("*.yml")
    uids = {ds["uid"] for path in datasource_files for ds in yaml.safe_load(path.read_text())["datasources"]}
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/highway.json").read_text())
    referenced = datasource_uids(dashboard)
    assert referenced, "the dashboard names no datasource uid"
    assert referenced <= uids, referenced - uids


def test_promtool_accepts_the_prometheus_config_from_the_repository() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:  # .ci/run installs Debian's prometheus package, which ships promtool
        pytest.skip("promtool is not installed (the structural checks above still ran)")
    # The file as it is, from the repository root: its rule paths must resolve here too.
    result = subprocess.run(
        [promtool, "check", "config", "deploy/prometheus/prometheus.yml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "alerts.yml" in result.stdout + result.stderr  # the rule file was found and checked
