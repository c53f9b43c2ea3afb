"""Every confluent-kafka client gets its configuration from connectors/kafka_config.py, so the
security settings (and kafka_extra_config, and the log routing) reach all of them."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = {"Producer", "Consumer", "AdminClient"}
# The dev stack's own readiness probe of the local broker it started (no settings exist yet).
EXEMPT = {"connectors/local/kafka.py"}


def _clients_built_without_our_config(path: Path) -> list[int]:
    tree = ast.parse(path.read_text())
    uses_ours = any(
        isinstance(node, ast.ImportFrom) and node.module in {"connectors.kafka_config", "streams.lake_config"}
        for node in ast.walk(tree)
    ) or any(isinstance(node, ast.FunctionDef) and node.name == "consumer_config" for node in ast.walk(tree))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in CLIENTS:
            first = node.args[0] if node.args else None
            literal = isinstance(first, ast.Dict)
            if literal or not uses_ours:
                lines.append(node.lineno)
    return lines


def test_every_kafka_client_is_configured_by_kafka_config() -> None:
    offenders = []
    for package in ("connectors", "streams", "highway", "bench"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            if rel in EXEMPT:
                continue
            offenders += [f"{rel}:{line}" for line in _clients_built_without_our_config(path)]
    assert not offenders, f"Kafka clients configured outside connectors/kafka_config.py: {offenders}"
