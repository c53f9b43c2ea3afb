"""`highway bench realtime`."""

from __future__ import annotations

import typer


def register(bench_app: typer.Typer) -> None:
    """Add the `realtime` benchmark (filled in by its work item)."""
