"""The environment a deployed ``highway worker`` starts with, for the deploy-file tests
(tests/unit/test_compose*.py, tests/unit/test_k8s.py): compose's ``${…}`` interpolation, and the
settings as the worker loads them — including its rule that a non-loopback bind needs the token."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

from core.collect.keys import hash_key
from core.errors import ConfigError
from core.http_access import token_problem
from core.settings import ENV_PREFIX, Settings
from core.settings_load import load_settings

# What the operator exports before `docker compose up` (the file has no defaults for secrets).
HOST_ENV = {
    "HIGHWAY_API_TOKEN": "compose-test-api-token-0123456789",
    "HIGHWAY_COLLECTOR_API_KEYS": f"default:{hash_key('compose-test-collector-key')}",
}
_INTERPOLATION_RE = re.compile(r"\$\{(\w+)(?:(:?[?-])([^}]*))?\}")


def interpolate(value: str, host_env: dict[str, str]) -> str:
    """Compose's ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?error}`` against ``host_env``."""

    def replace(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        found = host_env.get(name)
        if operator and operator.startswith(":") and found == "":
            found = None
        if found is not None:
            return found
        if operator and operator.endswith("?"):
            raise KeyError(f"{name}: {argument}")
        return argument or ""

    return _INTERPOLATION_RE.sub(replace, value)


def environment(service: dict[str, Any], host_env: dict[str, str] = HOST_ENV) -> dict[str, str]:
    """A service's environment as a dict (compose allows a mapping or a list of KEY=VALUE), with
    ``${…}`` interpolated from ``host_env`` as compose would."""
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(key): interpolate(str(value), host_env) for key, value in env.items()}


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a process with exactly ``env``'s HIGHWAY_* variables loads at start-up."""
    with monkeypatch.context() as patch:
        for key in [key for key in os.environ if key.startswith(ENV_PREFIX)]:
            patch.delenv(key)
        for key, value in env.items():
            if key.startswith(ENV_PREFIX):
                patch.setenv(key, value)
        return load_settings()


def worker_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings ``highway worker`` starts with, or the ConfigError it stops with: the token rule
    is the worker's (streams.app.create_app), since `highway produce` may share a 0.0.0.0 host."""
    settings = settings_from(env, monkeypatch)
    problem = token_problem(settings.http_host, settings.api_token is not None)
    if problem:
        raise ConfigError(problem)
    return settings
