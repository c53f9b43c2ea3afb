"""Helpers of :func:`core.settings.load_settings`: the TOML file's shape and messages naming bad keys."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable
from typing import Any

from pydantic import ValidationError


def flatten_toml(data: dict[str, Any], prefix: str = "", mappings: Collection[str] = ()) -> dict[str, Any]:
    """``[kafka] bootstrap = …`` → ``kafka_bootstrap``; tables named in ``mappings`` are values
    (settings that are themselves mappings, e.g. ``collector_api_keys``), not prefixes."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}".replace("-", "_").lower()
        if isinstance(value, dict) and name not in mappings:
            flat.update(flatten_toml(value, f"{name}_", mappings))
        else:
            flat[name] = value
    return flat


def describe(exc: ValidationError, source: str, env_prefix: str) -> str:
    lines = [f"invalid Highway settings ({source}):"]
    for err in exc.errors():
        field = ".".join(str(part) for part in err["loc"]) or "(model)"
        key = f"{field} (env {env_prefix}{field.upper()})" if err["loc"] else field
        lines.append(f"  - {key}: {err['msg']}")
    return "\n".join(lines)


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def unknown_keys(names: Iterable[str], known: Iterable[str]) -> list[str]:
    """``name (did you mean …?)`` for every name that is not a known key (pure)."""
    known = sorted(known)
    return [f"{name}{_did_you_mean(name, known)}" for name in sorted(set(names) - set(known))]
