"""Pure parts of the local broker launcher: pom, server.properties, log4j2 config, cluster ids."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console

from connectors.local.kafka import (
    MAX_MESSAGE_BYTES,
    random_cluster_id,
    render_log4j2_config,
    render_server_properties,
)
from connectors.local.kafka_jars import LOG4J_VERSION, cached_jars, jars_dir, render_pom, resolve_jars
from core.errors import InfrastructureError

_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_pom_pins_the_broker_and_a_log4j2_binding_for_slf4j_1() -> None:
    root = ET.fromstring(render_pom("4.1.1"))
    deps = {
        (
            dep.findtext("m:groupId", namespaces=_NS),
            dep.findtext("m:artifactId", namespaces=_NS),
        ): dep.findtext("m:version", namespaces=_NS)
        for dep in root.iterfind("m:dependencies/m:dependency", _NS)
    }
    assert deps[("org.apache.kafka", "kafka_2.13")] == "4.1.1"
    # Kafka 4.1 brings slf4j-api 1.7: the slf4j2 binding would leave the broker silent.
    assert deps[("org.apache.logging.log4j", "log4j-slf4j-impl")] == LOG4J_VERSION
    assert deps[("org.apache.logging.log4j", "log4j-core")] == LOG4J_VERSION
    assert "@" not in render_pom("3.9.1", "2.25.0")


def test_server_properties_are_a_combined_single_node_on_the_given_ports(tmp_path: Path) -> None:
    props = _props(render_server_properties(19092, 19093, tmp_path / "data"))
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["log.dirs"] == str(tmp_path / "data")
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "false"
    assert int(props["message.max.bytes"]) == MAX_MESSAGE_BYTES >= 4_000_000


def test_server_properties_overrides_win(tmp_path: Path) -> None:
    text = render_server_properties(1, 2, tmp_path, {"auto.create.topics.enable": "true", "x.y": "z"})
    props = _props(text)
    assert props["auto.create.topics.enable"] == "true"
    assert props["x.y"] == "z"
    assert text.count("auto.create.topics.enable") == 1


def test_log4j2_config_logs_to_the_given_file(tmp_path: Path) -> None:
    props = _props(render_log4j2_config(tmp_path / "server.log").replace(" = ", "="))
    assert props["appender.file.fileName"] == str(tmp_path / "server.log")
    assert props["rootLogger.appenderRef.file.ref"] == props["appender.file.name"]
    assert props["rootLogger.level"] == "INFO"


def test_cluster_ids_look_like_kafka_uuids() -> None:
    ids = {random_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for value in ids:
        assert len(value) == 22
        assert not value.startswith("-")
        assert len(base64.urlsafe_b64decode(value + "==")) == 16


def test_jar_cache_counts_only_completed_resolutions(tmp_path: Path) -> None:
    target = jars_dir(tmp_path, "4.1.1")
    assert target == tmp_path / "kafka-4.1.1" / "jars"
    target.mkdir(parents=True)
    assert cached_jars(tmp_path, "4.1.1") is None
    (target / ".complete").write_text("4.1.1\n")
    assert cached_jars(tmp_path, "4.1.1") == target


def test_missing_maven_is_a_clear_error_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(InfrastructureError, match=r"`mvn` is not on PATH.*HIGHWAY_KAFKA_BOOTSTRAP"):
        resolve_jars(tmp_path / "cache", "4.1.1", Console(stderr=True, quiet=True))
    assert not (tmp_path / "cache").exists()
