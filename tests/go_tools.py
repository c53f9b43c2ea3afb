"""The repository's small Go checkers (tools/<name>/), built at test time into a cache.

They validate deploy files with the libraries the real tools use (compose-go for Docker Compose,
k8s.io/api for Kubernetes). Go modules come from the Go module proxy on the first build; the binary
is cached under ``~/.cache/highway/bin`` keyed by the hash of its sources, so an edited checker is
rebuilt. Never committed: only the sources, go.mod and go.sum are in the repository.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools"
BUILD_TIMEOUT_S = 540  # a cold module cache downloads k8s.io/api or compose-go first (~1 min here)


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "highway" / "bin"


def _source_hash(source: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(source.iterdir()):
        if path.suffix == ".go" or path.name in ("go.mod", "go.sum"):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def go_tool(name: str) -> Path:
    """The built ``tools/<name>`` binary; the test is skipped only when no ``go`` is installed."""
    go = shutil.which("go")
    if go is None:
        pytest.skip(f"`go` is not installed: tools/{name} (a Go program) cannot be built")
    source = TOOLS / name
    binary = cache_dir() / f"{name}-{_source_hash(source)}"
    if binary.is_file():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name(f"{binary.name}.{os.getpid()}.partial")
    result = subprocess.run(
        [go, "build", "-buildvcs=false", "-o", str(partial), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
    )
    assert result.returncode == 0, f"go build tools/{name} failed:\n{result.stdout}{result.stderr}"
    partial.replace(binary)  # atomic: a concurrent test run never sees half a binary
    return binary


def run_tool(binary: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=120)
