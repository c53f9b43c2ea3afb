"""What every command shares: the ``--config`` option and one settings object per run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from core.errors import ConfigError, HighwayError
from core.settings import Settings
from core.settings_load import load_settings

console = Console(stderr=True)


@dataclass
class CliState:
    config_file: Path | None
    overrides: dict[str, Any] = field(default_factory=dict)
    _settings: Settings | None = None

    def settings(self, **overrides: Any) -> Settings:
        """Settings for this run, validated once; exits with a clear message when invalid."""
        if self._settings is None or overrides:
            try:
                built = load_settings(self.config_file, **{**self.overrides, **overrides})
            except ConfigError as exc:
                print_error(exc)
                raise typer.Exit(2) from exc
            if overrides:
                return built
            self._settings = built
        return self._settings


def root_callback(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", envvar="HIGHWAY_CONFIG", help="TOML settings file"),
    ] = None,
) -> None:
    ctx.obj = CliState(config_file=config)


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    assert isinstance(obj, CliState)
    return obj


def print_error(exc: HighwayError) -> None:
    """``error: <message>`` on stderr, as written: no markup (``highway[local]`` is text) and no
    wrapping at the terminal width (a one-line message stays one line)."""
    console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True, highlight=False)


def fail(exc: HighwayError) -> typer.Exit:
    """Print a Highway error for a person and return the exit to raise."""
    print_error(exc)
    return typer.Exit(1)
