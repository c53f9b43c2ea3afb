"""Render a settings object back into ``HIGHWAY_*`` environment variables for child processes.

The demo and the tests start workers and the simulator as subprocesses; giving them exactly the
parent's settings through the environment keeps one source of truth (the settings model).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import SecretStr

from core.settings import ENV_PREFIX, Settings


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a subprocess build exactly ``settings`` (unset fields omitted)."""
    env: dict[str, str] = {}
    dumped = settings.model_dump(exclude_none=True)
    if "api_token_file" in dumped:
        dumped.pop("api_token", None)  # the child reads the same file
    for name, value in dumped.items():
        if isinstance(value, list):
            rendered = ",".join(str(item) for item in value)
        elif isinstance(value, dict):
            rendered = json.dumps(
                {
                    key: item.get_secret_value() if isinstance(item, SecretStr) else item
                    for key, item in value.items()
                }
            )
        elif isinstance(value, SecretStr):
            rendered = value.get_secret_value()
        elif isinstance(value, dict):
            rendered = orjson.dumps(value).decode()
        elif isinstance(value, bool):
            rendered = "true" if value else "false"
        else:
            rendered = str(value)
        env[f"{ENV_PREFIX}{name.upper()}"] = rendered
    return env


# No variable carries this prefix, so a model built with it reads nothing from the environment.
_NO_ENV_PREFIX = "HIGHWAY_IGNORE_ENVIRONMENT_"


def with_overrides(settings: Settings, **changes: Any) -> Settings:
    """A validated copy of ``settings`` with ``changes`` applied.

    The environment normally wins over explicit values (see ``Settings``); a derived settings
    object for a child process (the demo's lane, ports, flush age) must not lose to it.
    """
    values = {**settings.model_dump(), **changes}
    return Settings(_env_prefix=_NO_ENV_PREFIX, **values)


def child_environment(settings: Settings, inherited: Mapping[str, str]) -> dict[str, str]:
    """``inherited`` (PATH, AWS_*, …) with the settings variables replaced by exactly ``settings``.

    Other ``HIGHWAY_*`` variables (e.g. faust's ``HIGHWAY_FAUST_*``) pass through; the config file
    variable does not, since every value it could set is now explicit.
    """
    owned = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields} | {f"{ENV_PREFIX}CONFIG"}
    env = {key: value for key, value in inherited.items() if key.upper() not in owned}
    env.update(settings_env(settings))
    return env
