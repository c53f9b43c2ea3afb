"""The lake agent family."""

from __future__ import annotations

import faust

from highway.settings import Settings


def register(app: faust.App, settings: Settings) -> None:
    """Declare this family's agents, timers and pages on app (filled in by its work item)."""
