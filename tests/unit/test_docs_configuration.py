"""docs/configuration.md is generated from the settings model and must not be stale."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from core.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_configuration", ROOT / "docs" / "gen_configuration.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_reference_is_up_to_date() -> None:
    rendered = generator().render()
    current = (ROOT / "docs" / "configuration.md").read_text()
    assert current == rendered, (
        "docs/configuration.md is stale: run .venv/bin/python docs/gen_configuration.py"
    )


def test_reference_documents_every_field_once_with_its_variable() -> None:
    rendered = generator().render()
    rows = re.findall(r"^\| `(HIGHWAY_[A-Z0-9_]+)` \| `([a-z0-9_]+)` \|", rendered, re.M)
    assert [field for _, field in rows] == list(Settings.model_fields)
    for variable, field in rows:
        assert variable == f"{ENV_PREFIX}{field.upper()}"


def test_rendering_shows_types_defaults_and_bounds() -> None:
    rendered = generator().render()
    assert "| `HIGHWAY_LANES` | `lanes` | comma-separated list of str | `default` |" in rendered
    assert "one of `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL`" in rendered
    assert re.search(r"`HIGHWAY_TOPIC_PARTITIONS` .*≥ 1, ≤ 10 000", rendered)
    assert re.search(r"`HIGHWAY_KAFKA_SASL_PASSWORD` .*secret string \(optional\) \| unset", rendered)
    assert "## Kafka" in rendered
