"""`highway bench lake`."""

from __future__ import annotations

import typer


def register(bench_app: typer.Typer) -> None:
    """Add the `lake` benchmark (filled in by its work item)."""
