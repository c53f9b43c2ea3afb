"""Render a settings object back into ``HIGHWAY_*`` environment variables for child processes.

The demo and the tests start workers and the simulator as subprocesses; giving them exactly the
parent's settings through the environment keeps one source of truth (the settings model).
"""

from __future__ import annotations

from pydantic import SecretStr

from highway.settings import ENV_PREFIX, Settings


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a subprocess build exactly ``settings`` (unset fields omitted)."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump(exclude_none=True).items():
        if isinstance(value, list):
            rendered = ",".join(str(item) for item in value)
        elif isinstance(value, SecretStr):
            rendered = value.get_secret_value()
        elif isinstance(value, bool):
            rendered = "true" if value else "false"
        else:
            rendered = str(value)
        env[f"{ENV_PREFIX}{name.upper()}"] = rendered
    return env
