"""Client configuration for confluent-kafka and faust, derived from the one settings model.

Security settings (PLAINTEXT or SASL_SSL …) are applied identically to both client families.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

from faust.auth import SASLCredentials, SSLCredentials
from faust.types.auth import CredentialsT

from core.settings import Settings


def confluent_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """Base librdkafka configuration (bootstrap + security); ``extra`` is merged on top."""
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "security.protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_sasl_mechanism:
        conf["sasl.mechanism"] = settings.kafka_sasl_mechanism
        conf["sasl.username"] = settings.kafka_sasl_username
        conf["sasl.password"] = (
            settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else None
        )
    if settings.kafka_ssl_ca_file:
        conf["ssl.ca.location"] = str(settings.kafka_ssl_ca_file)
    conf.update(extra)
    return conf


# The Java client's partitioner: a user id maps to the same partition number from any client.
USER_PARTITIONER = "murmur2_random"


def producer_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """Idempotent, acks=all, batched producer configuration."""
    return confluent_config(
        settings,
        **{
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "message.max.bytes": 4_000_000,
            **extra,
        },
    )


def faust_broker_url(settings: Settings) -> list[str]:
    return [f"kafka://{host.strip()}" for host in settings.kafka_bootstrap.split(",") if host.strip()]


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """Faust (aiokafka) credentials matching :func:`confluent_config`."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl.create_default_context(
        cafile=str(settings.kafka_ssl_ca_file) if settings.kafka_ssl_ca_file else None
    )
    if protocol == "SSL":
        return SSLCredentials(context)
    password = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
    return SASLCredentials(
        username=settings.kafka_sasl_username or "",
        password=password,
        mechanism=settings.kafka_sasl_mechanism or "PLAIN",
        ssl_context=context if protocol == "SASL_SSL" else None,
    )


def router_transactional_id(settings: Settings, lane: str, instance: str | None = None) -> str:
    """Stable per (app, lane, router process): a restarted router fences and aborts its predecessor's
    open transaction at once instead of leaving read_committed readers waiting for its timeout.

    ``instance`` is the process's claimed slot (``connectors.instance_slot``); the setting
    ``router_instance_id`` wins over it, and the host name stands in when neither is given.
    """
    chosen = settings.router_instance_id or instance or socket.gethostname()
    return f"{settings.app_id}-router-{lane}-{chosen}"


def router_producer_config(settings: Settings, lane: str, instance: str | None = None) -> dict[str, Any]:
    """The router's producer — also the bench's matched fan-out passthrough, so both send alike.

    No delivery report on success (``delivery.report.only.error``): the barrier that says every
    record of an interval is durable is ``commit_transaction`` (exactly once) or ``flush``
    (at least once), not one Python callback per record.

    ``murmur2_random``, the partitioner of :class:`connectors.producer.EventProducer` (and of the
    Java client): a user's events keep the partition number they had in the all-events topic, so
    each output partition is fed by one input partition, in its order. With librdkafka's default
    (CRC32) every output partition mixed all input partitions, and after a backlog (a broker
    restart) the router's interleaving put events behind later ones — past the realtime lateness.
    """
    extra: dict[str, Any] = {
        "partitioner": USER_PARTITIONER,
        "linger.ms": 5,
        "delivery.report.only.error": True,
        "message.timeout.ms": 60_000,
    }
    if settings.router_delivery == "exactly_once":
        extra["transactional.id"] = router_transactional_id(settings, lane, instance)
        extra["transaction.timeout.ms"] = int(settings.router_transaction_timeout_s * 1000)
        extra["message.timeout.ms"] = min(60_000, int(settings.router_transaction_timeout_s * 1000))
    return producer_config(settings, **extra)


def subscription_regex(alternatives: list[str]) -> str:
    """One librdkafka ``^…$`` subscription matching any of the Python regexes ``alternatives``.

    librdkafka's own regex engine knows neither ``(?:…)`` nor the ``\\-`` that ``re.escape`` writes,
    so the group is a plain one and the dashes are unescaped.
    """
    return "^(" + "|".join(pattern.replace("\\-", "-") for pattern in alternatives) + ")$"
