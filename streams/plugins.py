"""The extension point: user modules that add their own Faust agents to every worker.

``settings.plugins`` (``HIGHWAY_PLUGINS=mypkg.stats,otherpkg.alerts``) names modules; each defines
``setup(highway: PluginContext) -> None`` and declares ordinary Faust agents on ``highway.app`` over
the typed topics ``highway`` hands out (:meth:`PluginContext.common_topic`,
:meth:`PluginContext.event_topic`) and creates its metrics with :meth:`PluginContext.counter`,
``gauge`` and ``histogram`` (on the worker's registry, served at ``/metrics``). Plugins load whatever
the worker's roles. docs/plugins.md has the guide and ``examples/`` a plugin.

Delivery guarantee: that of a Faust agent — at-least-once. The agent runs on Faust's consumer in the
app's consumer group (``settings.app_group_id``); an event is acked once the agent asks for the next
one and Faust commits acked offsets periodically, so a restart re-reads from the last committed offset
and a plugin sees some events twice. A message that cannot be decoded (not JSON/Avro, a required
attribute missing, a key that is not UTF-8) is logged, counted in
``highway_plugin_undecodable_messages_total{topic}`` and skipped (Faust has already acked it): one odd
message never crashes an agent. Unknown extra keys are not odd: they are dropped on decoding.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import faust
from faust.serializers.codecs import Codec
from faust.types import Message
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from connectors.wire import codec_for
from core.envelope import COMMON_FIELDS, encode_json, parse_json_event
from core.errors import ConfigError, SchemaError
from core.routing.naming import event_topic_for
from core.settings import Settings

METRIC_PREFIX = "highway_plugin_"
_METRIC_NAME = re.compile(r"[A-Za-z0-9_]+")  # classic Prometheus names, so every scraper can read them
logger = logging.getLogger(__name__)


class _Tolerant(faust.Record, abstract=True, include_metadata=False):
    """Builds from a decoded mapping, keeping only declared fields (extra keys are dropped)."""

    _keys: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def from_data(cls, data: Mapping[str, Any], *, preferred_type: Any = None) -> Any:
        # faust's own from_data copies unknown keys onto the instance (where one could shadow a
        # method) and honours a "__faust" namespace key from the payload: neither is wanted here.
        kept = {key: data[key] for key in cls._keys if key in data}
        return cls(**kept, __strict__=False)


class CommonAttributes(_Tolerant):
    """One record of a lane's common-attributes topic (``settings.common_topic(lane)``).

    The router writes the ten common attributes of every valid event there, as compact JSON, keyed by
    ``user_id`` (``core.envelope.common_projection``). Timestamps are epoch milliseconds.
    """

    event_name: str
    event_id: str
    user_id: str
    session_id: str
    lane: str
    platform: str
    app_version: str
    device_id: str
    client_ts: int
    server_ts: int


class Event(CommonAttributes):
    """One record of a per-event topic: the common attributes plus the event's ``properties``."""

    properties: dict

    @classmethod
    def from_data(cls, data: Mapping[str, Any], *, preferred_type: Any = None) -> Any:
        if data.get("properties") is None:  # the envelope allows it to be absent
            data = {**data, "properties": {}}
        return super().from_data(data, preferred_type=preferred_type)


CommonAttributes._keys = frozenset(COMMON_FIELDS)
Event._keys = frozenset((*COMMON_FIELDS, "properties"))


class _DictCodec(Codec):
    """Bytes ↔ event dicts with the given functions (faust builds the record from the dict)."""

    def __init__(self, loads: Callable[[bytes], Any], dumps: Callable[[Any], bytes]) -> None:
        super().__init__()
        self._load, self._dump = loads, dumps

    def _loads(self, s: bytes) -> Any:
        return self._load(s)

    def _dumps(self, s: Any) -> bytes:
        return self._dump(s)


OnUndecodable = Callable[[str, Exception], None]


class TolerantTopic(faust.Topic):
    """A faust topic whose key/value decoding errors are reported and skipped, not thrown at the agent.

    faust acks the message before calling these hooks; its default re-raises the error inside the
    agent's ``async for``, which crashes the agent (and its supervisor restarts it) on every such message.
    """

    def __init__(self, *args: Any, on_undecodable: OnUndecodable | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_undecodable = on_undecodable

    def _clone_args(self) -> Mapping:
        return {**super()._clone_args(), "on_undecodable": self.on_undecodable}

    async def on_key_decode_error(self, exc: Exception, message: Message) -> None:
        self._skip(exc, message)

    async def on_value_decode_error(self, exc: Exception, message: Message) -> None:
        self._skip(exc, message)

    def _skip(self, exc: Exception, message: Message) -> None:
        logger.warning(
            "plugin topic %s: skipped undecodable message at partition %s offset %s: %s",
            message.topic,
            message.partition,
            message.offset,
            exc,
        )
        if self.on_undecodable is not None:
            self.on_undecodable(message.topic, exc)


class _Shared:
    """What every plugin's context shares in one worker: metric owners and the skip counter."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.owners: dict[str, str] = {}
        self._undecodable: Counter | None = None

    def undecodable(self, topic: str, exc: Exception) -> None:
        if self._undecodable is None:  # created on first use: a worker without plugins shows nothing
            self._undecodable = Counter(
                f"{METRIC_PREFIX}undecodable_messages",
                "Messages on plugin topics that could not be decoded and were skipped",
                ["topic"],
                registry=self.registry,
            )
        self._undecodable.labels(topic).inc()


class PluginContext:
    """What a plugin's ``setup`` receives: the app, settings, registry, typed topics and metric helpers.

    ``app``: the worker's ``faust.App`` (declare agents with ``highway.app.agent(topic, name=...)``);
    ``settings``: the worker's frozen :class:`~core.settings.Settings`; ``registry``: its
    ``CollectorRegistry`` (prefer the metric helpers); ``name``: the plugin's module name.
    """

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        registry: CollectorRegistry,
        name: str = "",
        shared: _Shared | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.registry = registry
        self.name = name
        self._shared = shared or _Shared(registry)

    # --- topics ---
    def common_topic(self, lane: str) -> faust.TopicT:
        """The lane's common-attributes topic: keys ``str`` (user id), values :class:`CommonAttributes`."""
        name = self.settings.common_topic(self._lane(lane))
        return self._topic(name, CommonAttributes, _DictCodec(parse_json_event, encode_json))

    def event_topic(self, lane: str, event_name: str) -> faust.TopicT:
        """The per-event topic of ``event_name``, named exactly as the router names it; values :class:`Event`.

        Values are the events as sent (JSON or Avro, per the worker's wire settings). The router
        creates the topic when it first routes that event; until then the agent receives nothing.
        """
        try:
            name = event_topic_for(self.settings, self._lane(lane), event_name)
        except SchemaError as exc:  # the name can never have a topic
            raise ConfigError(f"plugin {self.name!r}: event name {event_name!r}: {exc}") from exc
        wire = codec_for(self.settings)
        return self._topic(name, Event, _DictCodec(wire.decode, wire.encode))

    def _lane(self, lane: str) -> str:
        if lane not in self.settings.lanes:
            raise ConfigError(f"plugin {self.name!r}: lane {lane!r} is not one of {self.settings.lanes}")
        return lane

    def _topic(self, name: str, value_type: type[faust.Record], codec: Codec) -> faust.TopicT:
        return TolerantTopic(
            self.app,
            topics=[name],
            key_type=str,
            value_type=value_type,
            key_serializer="raw",
            value_serializer=codec,
            on_undecodable=self._shared.undecodable,
        )

    # --- metrics ---
    def counter(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Counter:
        """A counter ``highway_plugin_<name>`` (exposed with ``_total``) on the worker's registry."""
        return self._metric(Counter, name, documentation, labelnames)

    def gauge(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Gauge:
        """A gauge ``highway_plugin_<name>`` on the worker's registry."""
        return self._metric(Gauge, name, documentation, labelnames)

    def histogram(
        self, name: str, documentation: str, labelnames: Sequence[str] = (), **kwargs: Any
    ) -> Histogram:
        """A histogram ``highway_plugin_<name>`` (``buckets=`` may be passed) on the worker's registry."""
        return self._metric(Histogram, name, documentation, labelnames, **kwargs)

    def _metric(self, kind: Any, name: str, documentation: str, labelnames: Sequence[str], **kw: Any) -> Any:
        full = METRIC_PREFIX + name
        if not _METRIC_NAME.fullmatch(name):
            raise ConfigError(f"plugin {self.name!r}: metric {full!r}: use letters, digits and '_' only")
        key = full.removesuffix("_total") if kind is Counter else full
        owner = self._shared.owners.get(key)
        if owner is not None:
            raise ConfigError(
                f"plugin {self.name!r}: metric {full!r} is already registered by plugin {owner!r}"
            )
        try:
            metric = kind(full, documentation, list(labelnames), registry=self.registry, **kw)
        except ValueError as exc:  # invalid name, or a clash with a metric Highway itself registers
            raise ConfigError(f"plugin {self.name!r}: metric {full!r}: {exc}") from exc
        self._shared.owners[key] = self.name
        return metric


def load_plugins(app: faust.App, settings: Settings, registry: CollectorRegistry) -> None:
    """Import every module of ``settings.plugins`` and call its ``setup``; ConfigError names the bad one."""
    shared = _Shared(registry)
    seen: set[str] = set()
    for name in settings.plugins:
        if name in seen:
            raise ConfigError(f"plugin {name!r} is listed twice in HIGHWAY_PLUGINS")
        seen.add(name)
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"plugin {name!r} (HIGHWAY_PLUGINS) cannot be imported: {exc}") from exc
        setup = getattr(module, "setup", None)
        if not callable(setup):
            raise ConfigError(f"plugin {name!r} has no setup(highway) function")
        try:
            setup(PluginContext(app, settings, registry, name, shared))
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"plugin {name!r}: setup failed: {type(exc).__name__}: {exc}") from exc


__all__ = ["METRIC_PREFIX", "CommonAttributes", "Event", "PluginContext", "TolerantTopic", "load_plugins"]
