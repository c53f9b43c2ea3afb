"""Loading the settings once at start-up: environment, the optional TOML file, and every bad or
unknown key named in one error (the model itself is :class:`core.settings.Settings`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.errors import ConfigError
from core.settings import Settings
from core.settings_rules import ENV_PREFIX, NOT_SETTINGS, describe, read_config_file, unknown_keys


def misspelt_variables(environ: Mapping[str, str]) -> list[str]:
    """``HIGHWAY_*`` variables that name no setting, each with its closest setting (pure)."""
    ours = [name for name in environ if name.upper().startswith(ENV_PREFIX)]
    candidates = [name.upper() for name in ours if not name.upper().startswith(NOT_SETTINGS)]
    known = [f"{ENV_PREFIX}{field.upper()}" for field in Settings.model_fields]
    return unknown_keys(candidates, known)


def load_settings(
    config_file: Path | None = None, environ: Mapping[str, str] | None = None, **overrides: Any
) -> Settings:
    """Build the settings once at start-up; raise ConfigError naming every bad or unknown key."""
    values: dict[str, Any] = {}
    source = "environment"
    if config_file is not None:
        source = f"environment and {config_file}"
        values = read_config_file(config_file, Settings.model_fields)
    misspelt = misspelt_variables(os.environ if environ is None else environ)
    if misspelt:
        raise ConfigError(
            f"unknown environment variables {', '.join(misspelt)}; every HIGHWAY_* variable must name "
            f"a setting (docs/configuration.md), or start with one of {', '.join(NOT_SETTINGS)}"
        )
    values.update(overrides)
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise ConfigError(describe(exc, source)) from exc
