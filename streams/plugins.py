"""The extension point: user modules that add their own Faust agents to every worker.

``settings.plugins`` (``HIGHWAY_PLUGINS=mypkg.stats,otherpkg.alerts``) names modules; each defines
``setup(highway: PluginContext) -> None`` and declares ordinary Faust agents on ``highway.app`` over
the topics ``highway`` hands out. docs/plugins.md has the guide and ``examples/`` a plugin.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import faust
from prometheus_client import CollectorRegistry

from core.errors import ConfigError
from core.settings import Settings


@dataclass(frozen=True)
class PluginContext:
    """What a plugin's ``setup`` receives: the app, the settings and the worker's metric registry."""

    app: faust.App
    settings: Settings
    registry: CollectorRegistry


def load_plugins(app: faust.App, settings: Settings, registry: CollectorRegistry) -> None:
    """Import every module of ``settings.plugins`` and call its ``setup``; ConfigError names the bad one."""
    context = PluginContext(app, settings, registry)
    for name in settings.plugins:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"plugin {name!r} (HIGHWAY_PLUGINS) cannot be imported: {exc}") from exc
        setup = getattr(module, "setup", None)
        if not callable(setup):
            raise ConfigError(f"plugin {name!r} has no setup(highway) function")
        setup(context)
