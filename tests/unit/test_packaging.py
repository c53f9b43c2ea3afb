"""The package's dependencies and image: dev-only tools stay in extras, the image has every layer.

No Docker engine runs here, so the Dockerfile is checked as text against pyproject.toml.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# Only the local dev stack uses these; moto's server pulls cfn-lint and flask with it.
LOCAL_ONLY = ("moto", "testcontainers", "cfn-lint", "flask")


def project() -> dict[str, Any]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found = data["project"]
    assert isinstance(found, dict)
    return found


def requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, requirement
    return match.group(0).lower()


def test_local_stack_dependencies_are_an_extra_that_dev_includes() -> None:
    meta = project()
    runtime = {requirement_name(r) for r in meta["dependencies"]}
    assert not runtime & set(LOCAL_ONLY), runtime & set(LOCAL_ONLY)
    extras = meta["optional-dependencies"]
    assert {requirement_name(r) for r in extras["local"]} >= {"moto", "testcontainers"}
    assert any(r.startswith("moto[server]") for r in extras["local"])
    # `make demo` / `make test` install `.[dev]`, so dev must bring the local stack along.
    assert f"{meta['name']}[local]" in extras["dev"]


def test_the_image_installs_the_plain_package_with_every_layer() -> None:
    text = (ROOT / "Dockerfile").read_text()
    installs = re.findall(r"pip install (?:--[\w-]+ )*(\S+)", text)
    assert installs, "the Dockerfile installs nothing"
    for target in installs:
        assert "[" not in target, f"the image must not install extras: {target}"
        assert requirement_name(target) not in LOCAL_ONLY, target
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [pattern.rstrip("*") for pattern in data["tool"]["setuptools"]["packages"]["find"]["include"]]
    copied = set(re.findall(r"^COPY (\w+) \1\s*$", text, re.M))
    assert set(packages) <= copied, f"the image lacks {sorted(set(packages) - copied)}"
