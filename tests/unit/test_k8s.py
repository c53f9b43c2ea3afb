"""deploy/k8s/: the Kubernetes manifests, checked offline.

tools/k8scheck (Go, built at test time) decodes every document strictly into the k8s.io/api types —
unknown fields, wrong types and malformed quantities fail — and checks the cross-object rules
(selectors, named ports, referenced ConfigMaps/Secrets, requests within limits). The tests below
then hold the manifests to Highway: one workload per role, probes on pages the worker serves,
settings that the settings model accepts, and enough partitions for every consumer replica.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.errors import ConfigError
from core.settings import ENV_PREFIX, Settings
from streams.app import ROLES
from tests.deploy_env import worker_settings
from tests.go_tools import go_tool, run_tool

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
MANIFESTS = sorted(K8S.glob("*.yaml"))
KNOWN_ROLES = set(ROLES)
# What the operator puts in place of the Secrets' placeholders (the shipped token is refused, below).
REPLACED_SECRETS = {("highway-api-token", "token"): "k8s-test-api-token-0123456789abcdef"}
# Members of a consumer group on the lane's topics.
CONSUMER_ROLES = {"router", "lake", "realtime", "sessions"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet"}


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    found = [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert found
    return found


def of_kind(objects: list[dict[str, Any]], *kinds: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] in kinds]


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [obj for obj in of_kind(objects, kind) if obj["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, workload["metadata"]["name"]
    found = containers[0]
    assert isinstance(found, dict)
    return found


def role_of(workload: dict[str, Any]) -> str:
    args = container(workload)["args"]
    assert args[:2] == ["worker", "--role"], args
    role = str(args[2])
    return role


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


@pytest.fixture(scope="module")
def k8scheck() -> Path:
    return go_tool("k8scheck")


def test_manifests_pass_the_typed_schema_check(k8scheck: Path, objects: list[dict[str, Any]]) -> None:
    result = run_tool(k8scheck, *map(str, MANIFESTS))
    assert result.returncode == 0, result.stderr
    checked = {line for line in result.stdout.splitlines() if "/" in line}
    expected = {f"{obj['kind']}/{obj['metadata']['name']}" for obj in objects}
    assert checked == expected
    assert result.stdout.rstrip().endswith(f"{len(objects)} objects valid")


MISTAKES = {
    "unknown-field": (
        "30-lake.yaml",
        "            periodSeconds: 10\n",
        "            periodSecond: 10\n",
        "periodSecond",
    ),
    "wrong-type": ("30-lake.yaml", "  replicas: 3\n", "  replicas: three\n", "replicas"),
    "bad-quantity": (
        "30-lake.yaml",
        "              memory: 2Gi\n",
        "              memory: 2 GiB\n",
        "quantities",
    ),
    "probe-port": (
        "40-realtime.yaml",
        "              port: http\n",
        "              port: metrics\n",
        "metrics",
    ),
    "no-readiness": (
        "50-collector.yaml",
        "          readinessProbe:\n",
        "          readinessprobe:\n",
        "readinessprobe",
    ),
    "selector": (
        "40-realtime.yaml",
        "        app.kubernetes.io/component: realtime\n",
        "        app.kubernetes.io/component: realtim\n",
        "selector",
    ),
    "pdb": (
        "30-lake.yaml",
        "  name: lake\n  namespace: highway\nspec:\n  # One",
        "  name: lake\n  namespace: highway\nspec:\n  minAvailable: 1\n  # One",
        "exactly one",
    ),
    "missing-token-secret": (
        "30-lake.yaml",
        "            secretName: highway-api-token\n",
        "            secretName: highway-api-tokn\n",
        "highway-api-tokn",
    ),
    "missing-key-secret": (
        "50-collector.yaml",
        "                  name: highway-collector\n",
        "                  name: highway-colector\n",
        "highway-colector",
    ),
    "unmounted-volume": (
        "40-realtime.yaml",
        "            - name: api-token\n              mountPath",
        "            - name: api-tokens\n              mountPath",
        "api-tokens",
    ),
    "missing-config": (
        "10-settings.yaml",
        "  name: highway-settings\n",
        "  name: highway-setting\n",
        "highway-settings",
    ),
    "service-port": (
        "50-collector.yaml",
        "      targetPort: http\n",
        "      targetPort: web\n",
        "targetPort web",
    ),
    "requests-above-limits": (
        "30-lake.yaml",
        "              memory: 1Gi\n",
        "              memory: 3Gi\n",
        "exceeds the limit",
    ),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_the_schema_check_rejects_a_broken_manifest(k8scheck: Path, tmp_path: Path, mistake: str) -> None:
    filename, before, after, message = MISTAKES[mistake]
    text = (K8S / filename).read_text()
    assert before in text, f"{mistake}: the mistake no longer applies to {filename}"
    for path in MANIFESTS:
        (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / filename).write_text(text.replace(before, after, 1))
    result = run_tool(k8scheck, *sorted(str(path) for path in tmp_path.glob("*.yaml")))
    assert result.returncode != 0, f"{mistake} passed:\n{result.stdout}"
    assert message in result.stderr, result.stderr


def test_one_workload_per_role_each_with_a_disruption_budget(objects: list[dict[str, Any]]) -> None:
    workloads = of_kind(objects, *WORKLOAD_KINDS)
    roles = [role_of(workload) for workload in workloads]
    assert sorted(roles) == sorted(CONSUMER_ROLES | {"collector"}), roles
    assert set(roles) <= KNOWN_ROLES
    budgets = of_kind(objects, "PodDisruptionBudget")
    for workload in workloads:
        labels = workload["spec"]["template"]["metadata"]["labels"]
        covering = [pdb for pdb in budgets if selects(pdb["spec"]["selector"]["matchLabels"], labels)]
        assert len(covering) == 1, f"{workload['metadata']['name']}: {len(covering)} disruption budgets"
        assert covering[0]["spec"].get("maxUnavailable") == 1 or covering[0]["spec"].get("minAvailable")


def worker_pages() -> set[str]:
    """The HTTP pages every worker registers (streams/app.py), whatever its roles."""
    source = (ROOT / "streams" / "app.py").read_text()
    return set(re.findall(r'@app\.page\("(/[^"]*)"\)', source))


def test_probes_ask_the_worker_health_page_on_its_http_port(objects: list[dict[str, Any]]) -> None:
    settings = named(objects, "ConfigMap", "highway-settings")["data"]
    assert settings["HIGHWAY_HTTP_HOST"] == "0.0.0.0"  # probes and Services come from outside the pod
    pages = worker_pages()
    assert "/health" in pages
    for workload in of_kind(objects, *WORKLOAD_KINDS):
        spec = container(workload)
        ports = {port["name"]: port["containerPort"] for port in spec["ports"]}
        assert ports == {"http": int(settings["HIGHWAY_HTTP_PORT"])}, workload["metadata"]["name"]
        expected = {"startupProbe": "/health", "livenessProbe": "/health", "readinessProbe": "/ready"}
        for probe, path in expected.items():
            get = spec[probe]["httpGet"]
            assert get["path"] == path, f"{workload['metadata']['name']} {probe}: {get['path']}, not {path}"
            assert get["path"] in pages, f"{workload['metadata']['name']} {probe}: {get['path']} not served"
            assert get["port"] == "http"
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == settings["HIGHWAY_HTTP_PORT"]
        assert annotations["prometheus.io/path"] in pages


def secret_value(objects: list[dict[str, Any]], name: str, key: str, replaced: bool = True) -> str:
    data = named(objects, "Secret", name)["stringData"]
    assert key in data, f"Secret/{name} has no key {key}"
    return REPLACED_SECRETS.get((name, key), str(data[key])) if replaced else str(data[key])


def pod_env(
    objects: list[dict[str, Any]], workload: dict[str, Any], files: Path, replaced: bool = True
) -> dict[str, str]:
    """A workload's HIGHWAY_* environment as its pod sees it: envFrom, env (a pod name for fieldRefs,
    the Secret's value for secretKeyRefs), and *_FILE settings pointing at the mounted Secret's file
    (written under ``files``)."""
    spec = container(workload)
    env: dict[str, str] = {}
    for source in spec.get("envFrom", []):
        if "configMapRef" in source:
            env.update(named(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
        if "secretRef" in source:
            env.update(named(objects, "Secret", source["secretRef"]["name"])["stringData"])
    for variable in spec.get("env", []):
        source = variable.get("valueFrom", {})
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            env[variable["name"]] = secret_value(objects, ref["name"], ref["key"], replaced)
        elif "fieldRef" in source:
            env[variable["name"]] = f"{workload['metadata']['name']}-0"
        else:
            env[variable["name"]] = str(variable["value"])
    volumes = {volume["name"]: volume for volume in workload["spec"]["template"]["spec"]["volumes"]}
    for key, value in list(env.items()):
        if not key.endswith("_FILE"):
            continue
        wanted = Path(value)
        mounts = [m for m in spec.get("volumeMounts", []) if Path(m["mountPath"]) == wanted.parent]
        assert mounts, f"{workload['metadata']['name']}: nothing is mounted at {wanted.parent} ({key})"
        secret = volumes[mounts[0]["name"]].get("secret")
        assert secret, f"{workload['metadata']['name']}: {wanted.parent} is not a Secret volume"
        local = files / workload["metadata"]["name"] / wanted.name
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(secret_value(objects, secret["secretName"], wanted.name, replaced))
        env[key] = str(local)
    return {key: str(value) for key, value in env.items() if key.startswith(ENV_PREFIX)}


def test_settings_are_fields_of_the_model_and_validate(
    objects: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    workloads = of_kind(objects, *WORKLOAD_KINDS)
    for workload in workloads:
        name = workload["metadata"]["name"]
        env = pod_env(objects, workload, tmp_path)
        for key in env:
            assert key.removeprefix(ENV_PREFIX).lower() in Settings.model_fields, (
                f"{name}: {key} is not a setting"
            )
        # As `highway worker` starts: on 0.0.0.0 it stops without the token.
        settings = worker_settings(env, monkeypatch)
        assert settings.http_host == "0.0.0.0", name
        assert settings.api_token is not None, name
        assert settings.api_token.get_secret_value() == REPLACED_SECRETS[("highway-api-token", "token")], name
        assert settings.metrics_require_token is False, f"{name}: Prometheus scrapes /metrics without a token"
        assert settings.lake_uri.startswith("s3://")
        assert settings.aws_s3_endpoint_url is None  # AWS S3 itself, not a local S3 API
        assert settings.topic_replication_factor >= 3
        if role_of(workload) == "collector":
            assert settings.collector_api_keys, "the collector has no client keys"
            assert settings.collector_cors_origins
        without = {key: value for key, value in env.items() if key != "HIGHWAY_API_TOKEN_FILE"}
        with pytest.raises(ConfigError, match="api_token"):
            worker_settings(without, monkeypatch)
    consumers = [w for w in workloads if role_of(w) in CONSUMER_ROLES]
    # A consumer group's members beyond the partition count sit idle.
    most = max(int(workload["spec"]["replicas"]) for workload in consumers)
    assert settings.topic_partitions >= most


def test_the_shipped_token_placeholder_stops_the_workers(
    objects: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Applied unedited, the manifests must not serve an API guarded by a token printed here."""
    for workload in of_kind(objects, *WORKLOAD_KINDS):
        with pytest.raises(ConfigError, match="at least 16 characters"):
            worker_settings(pod_env(objects, workload, tmp_path, replaced=False), monkeypatch)


def test_routers_keep_their_transactional_id_across_restarts(objects: list[dict[str, Any]]) -> None:
    router = named(objects, "StatefulSet", "router")
    env = {variable["name"]: variable for variable in container(router)["env"]}
    source = env["HIGHWAY_ROUTER_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert source == "metadata.name"  # router-0, router-1 …: stable under a StatefulSet
    governing = named(objects, "Service", router["spec"]["serviceName"])
    assert governing["spec"]["clusterIP"] == "None"


def test_collector_and_api_services_select_their_roles(objects: list[dict[str, Any]]) -> None:
    for service, role in (("highway-collector", "collector"), ("highway-api", "realtime")):
        selector = named(objects, "Service", service)["spec"]["selector"]
        selected = [
            role_of(w)
            for w in of_kind(objects, *WORKLOAD_KINDS)
            if selects(selector, w["spec"]["template"]["metadata"]["labels"])
        ]
        assert selected == [role], (service, selected)


def test_every_workload_runs_the_released_image(objects: list[dict[str, Any]]) -> None:
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version
    images = {container(w)["image"] for w in of_kind(objects, *WORKLOAD_KINDS)}
    assert images == {f"highway:{version.group(1)}"}
