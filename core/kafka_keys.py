"""librdkafka settings Highway sets itself, refused in ``kafka_extra_config`` (pure).

A pass-through value for one of these would either be overwritten (the client's own choice wins)
or silently break a guarantee: exactly-once routing needs ``transactional.id`` and
``enable.idempotence``, offsets are committed by the stages (``enable.auto.commit``), and the
security keys have typed, validated settings whose secrets are kept out of logs.
"""

from __future__ import annotations

from collections.abc import Mapping

OWNED_KEYS: Mapping[str, str] = {
    "bootstrap.servers": "set kafka_bootstrap",
    "metadata.broker.list": "set kafka_bootstrap",
    "security.protocol": "set kafka_security_protocol",
    "sasl.mechanism": "set kafka_sasl_mechanism",
    "sasl.mechanisms": "set kafka_sasl_mechanism",
    "sasl.username": "set kafka_sasl_username",
    "sasl.password": "set kafka_sasl_password",
    "sasl.oauthbearer.method": "set kafka_sasl_mechanism OAUTHBEARER (Highway uses method oidc)",
    "sasl.oauthbearer.client.id": "set kafka_oauth_client_id",
    "sasl.oauthbearer.client.secret": "set kafka_oauth_client_secret",
    "sasl.oauthbearer.token.endpoint.url": "set kafka_oauth_token_endpoint_url",
    "sasl.oauthbearer.scope": "set kafka_oauth_scope",
    "ssl.ca.location": "set kafka_ssl_ca_file",
    "ssl.certificate.location": "set kafka_ssl_cert_file",
    "ssl.key.location": "set kafka_ssl_key_file",
    "ssl.key.password": "set kafka_ssl_key_password",
    "group.id": "each stage names its own consumer group from app_id",
    "group.instance.id": "the router sets static membership per lane",
    "enable.idempotence": "every Highway producer is idempotent",
    "transactional.id": "set router_instance_id (the router's transactions)",
    "transaction.timeout.ms": "set router_transaction_timeout_s",
    "enable.auto.commit": "the stages commit offsets themselves",
    "enable.auto.offset.store": "the stages commit offsets themselves",
    "isolation.level": "stages read committed data only",
    "auto.offset.reset": "stages start from the earliest offset",
    "acks": "every Highway producer waits for all in-sync replicas",
    "partitioner": "keys use murmur2_random, the Java client's choice",
    "partition.assignment.strategy": "set per stage",
    "delivery.report.only.error": "set per producer",
    "enable.partition.eof": "set per consumer",
    "log_level": "set log_level",
    "logger": "librdkafka logs go through Python logging",
}
"""Key → what to do instead (empty: nothing to set, Highway decides)."""


def refused_keys(config: Mapping[str, object]) -> list[str]:
    """``key (why)`` for every key of ``config`` Highway owns, or that names a Python callback."""
    refused = []
    for key in sorted(config):
        if key in OWNED_KEYS:
            hint = OWNED_KEYS[key]
            refused.append(f"{key} ({hint})" if hint else key)
        elif key.endswith("_cb") or key == "on_delivery" or key == "on_commit":
            refused.append(f"{key} (a callback, not a setting)")
    return refused
