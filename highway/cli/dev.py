"""`highway dev` commands."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this area's commands to the CLI (filled in by the owning work item)."""
