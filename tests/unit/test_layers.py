"""The import-linter layer contract of pyproject.toml catches an import that runs up a layer."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("schemas", "core", "connectors", "streams", "bench", "highway")  # bottom to top
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _tree(tmp_path: Path, bad_import: str | None) -> Path:
    """A miniature project with the six top packages, each importing the one below it."""
    for below, package in zip((None, *LAYERS), LAYERS, strict=False):
        folder = tmp_path / package
        folder.mkdir()
        (folder / "__init__.py").write_text("")
        (folder / "mod.py").write_text(f"import {below}.mod\n" if below else "")
    if bad_import:
        (tmp_path / "core" / "upward.py").write_text(f"import {bad_import}\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    if not LINT_IMPORTS.exists():
        pytest.fail(f"{LINT_IMPORTS} missing: install the dev extra (make setup)")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", "pyproject.toml", "--contract", "layers", "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_imports_that_run_down_the_layers_pass(tmp_path: Path) -> None:
    result = _lint(_tree(tmp_path, None))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "KEPT" in result.stdout


@pytest.mark.parametrize("upward", ["streams.mod", "connectors.mod", "highway.mod"])
def test_an_upward_import_breaks_the_contract(tmp_path: Path, upward: str) -> None:
    result = _lint(_tree(tmp_path, upward))
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    assert f"core.upward -> {upward}" in result.stdout
