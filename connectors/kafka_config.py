"""Client configuration for confluent-kafka and faust, derived from the one settings model.

Every confluent-kafka client (producers, consumers, admin) is configured by :func:`confluent_config`,
faust's aiokafka clients by :func:`faust_credentials`, the schema-registry client by
:func:`registry_config`: the security settings reach all of them from here and nowhere else.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

from faust.auth import OAuthCredentials, SASLCredentials, SSLCredentials
from faust.types.auth import CredentialsT

from connectors.kafka_logging import librdkafka_logger
from connectors.oauth import ClientCredentialsTokenProvider
from core.settings import Settings


def _secret(value: Any) -> str:
    return value.get_secret_value() if value is not None else ""


def security_config(settings: Settings) -> dict[str, str]:
    """The librdkafka security keys of ``settings`` (protocol, SASL/OIDC, CA, mTLS) — nothing else."""
    conf: dict[str, str] = {"security.protocol": settings.kafka_security_protocol}
    mechanism = settings.kafka_sasl_mechanism
    if mechanism == "OAUTHBEARER":
        # librdkafka's built-in OIDC client-credentials flow: it fetches and refreshes the token.
        conf["sasl.mechanism"] = mechanism
        conf["sasl.oauthbearer.method"] = "oidc"
        conf["sasl.oauthbearer.client.id"] = settings.kafka_oauth_client_id or ""
        conf["sasl.oauthbearer.client.secret"] = _secret(settings.kafka_oauth_client_secret)
        conf["sasl.oauthbearer.token.endpoint.url"] = settings.kafka_oauth_token_endpoint_url or ""
        if settings.kafka_oauth_scope:
            conf["sasl.oauthbearer.scope"] = settings.kafka_oauth_scope
    elif mechanism:
        conf["sasl.mechanism"] = mechanism
        conf["sasl.username"] = settings.kafka_sasl_username or ""
        conf["sasl.password"] = _secret(settings.kafka_sasl_password)
    if settings.kafka_ssl_ca_file:
        conf["ssl.ca.location"] = str(settings.kafka_ssl_ca_file)
    if settings.kafka_ssl_cert_file and settings.kafka_ssl_key_file:
        conf["ssl.certificate.location"] = str(settings.kafka_ssl_cert_file)
        conf["ssl.key.location"] = str(settings.kafka_ssl_key_file)
        if settings.kafka_ssl_key_password is not None:
            conf["ssl.key.password"] = _secret(settings.kafka_ssl_key_password)
    return conf


def confluent_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """librdkafka configuration: bootstrap, security, logging, then ``extra`` (the client's own
    choices), then ``kafka_extra_config`` (the operator's, for keys Highway does not set — the
    settings refuse the ones it does)."""
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        **security_config(settings),
        "logger": librdkafka_logger(),
    }
    conf.update(extra)
    conf.update({key: value.get_secret_value() for key, value in settings.kafka_extra_config.items()})
    return conf


def registry_config(settings: Settings) -> dict[str, str]:
    """The schema-registry client's configuration: URL, basic auth, CA bundle."""
    conf = {"url": settings.kafka_schema_registry_url or ""}
    if settings.kafka_schema_registry_username:
        user, password = settings.kafka_schema_registry_username, settings.kafka_schema_registry_password
        conf["basic.auth.user.info"] = f"{user}:{_secret(password)}"
    if settings.kafka_schema_registry_ca_file:
        conf["ssl.ca.location"] = str(settings.kafka_schema_registry_ca_file)
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


def faust_ssl_context(settings: Settings) -> ssl.SSLContext:
    """The TLS context of faust's aiokafka clients: the CA bundle and the mTLS client certificate."""
    context = ssl.create_default_context(
        cafile=str(settings.kafka_ssl_ca_file) if settings.kafka_ssl_ca_file else None
    )
    if settings.kafka_ssl_cert_file and settings.kafka_ssl_key_file:
        context.load_cert_chain(
            str(settings.kafka_ssl_cert_file),
            str(settings.kafka_ssl_key_file),
            password=_secret(settings.kafka_ssl_key_password) or None,
        )
    return context


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """Faust (aiokafka) credentials matching :func:`confluent_config`.

    ``kafka_extra_config`` is librdkafka's vocabulary and does not reach aiokafka.
    """
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = faust_ssl_context(settings) if protocol.endswith("SSL") else None
    if protocol == "SSL":
        return SSLCredentials(context)
    if settings.kafka_sasl_mechanism == "OAUTHBEARER":
        return OAuthCredentials(
            oauth_cb=ClientCredentialsTokenProvider.from_settings(settings), ssl_context=context
        )
    return SASLCredentials(
        username=settings.kafka_sasl_username or "",
        password=_secret(settings.kafka_sasl_password),
        mechanism=settings.kafka_sasl_mechanism or "PLAIN",
        ssl_context=context,
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
