"""The rules of the settings model that need no model: parsing, file sources, cross-field checks (pure
but for reading a mounted secret file at start-up, like the TOML file)."""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from core.errors import ConfigError
from core.kafka_keys import refused_keys
from core.realtime.cardinality import TOPIC_MESSAGE_BYTES, max_partial_bytes

ENV_PREFIX = "HIGHWAY_"

MIN_TOKEN_CHARS = 16
"""A shorter api_token is guessable; ``openssl rand -hex 32`` makes a good one."""


def read_secret_file(path: Path, setting: str) -> str:
    """A mounted secret's content without its trailing newline; ValueError naming ``setting``."""
    try:
        value = path.read_text().rstrip()
    except OSError as exc:
        raise ValueError(f"{setting} {path} cannot be read: {exc.strerror or exc}") from exc
    if not value:
        raise ValueError(f"{setting} {path} is empty")
    return value


def split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def token_from_file(data: dict[str, Any]) -> dict[str, Any]:
    """Raw settings with ``api_token`` read from ``api_token_file`` once at start-up: the rest of the
    code sees only api_token."""
    if data.get("api_token_file"):
        from_file = read_secret_file(Path(data["api_token_file"]), "api_token_file")
        given = data.get("api_token")
        if isinstance(given, SecretStr):
            given = given.get_secret_value()
        # Both agree when a built model is validated again (envvars.with_overrides).
        if given and given != from_file:
            raise ValueError("set api_token or api_token_file, not both")
        data["api_token"] = from_file
    return data


def layout_problem(settings: Any) -> str | None:
    """Rules across settings of topics, realtime, lake and collector (a message, or None)."""
    for name in ("topic_all_events", "topic_common", "topic_dlq", "topic_concurrency"):
        if "{lane}" not in getattr(settings, name):
            return f"{name} must contain '{{lane}}'"
    if "{lane}" not in settings.topic_per_event or "{name}" not in settings.topic_per_event:
        return "topic_per_event must contain '{lane}' and '{name}'"
    if settings.realtime_sliding_window_s % settings.realtime_window_s:
        return "realtime_sliding_window_s must be a multiple of realtime_window_s"
    partial = max_partial_bytes(
        settings.realtime_dimensions, settings.realtime_dimension_top_n, settings.realtime_max_dimension_chars
    )
    if partial > TOPIC_MESSAGE_BYTES:
        return (
            f"a realtime partial could reach {partial} bytes, above Kafka's {TOPIC_MESSAGE_BYTES}: "
            "lower realtime_dimension_top_n, realtime_max_dimension_chars or the dimensions"
        )
    if settings.lake_format == "iceberg" and settings.lake_catalog == "projection":
        return "lake_catalog 'projection' needs lake_format 'parquet'"
    if unknown := sorted(set(settings.collector_api_keys) - set(settings.lanes)):
        return f"collector_api_keys names lanes {unknown} that are not in lanes"
    if settings.kafka_wire_format == "avro" and not settings.kafka_schema_registry_url:
        return "kafka_wire_format 'avro' needs kafka_schema_registry_url"
    return None


def http_access_problem(settings: Any) -> str | None:
    """What is wrong with the web server's TLS or token settings, or None."""
    if bool(settings.http_tls_cert_file) != bool(settings.http_tls_key_file):
        return "HTTPS needs both http_tls_cert_file and http_tls_key_file"
    if settings.api_token is not None and len(settings.api_token.get_secret_value()) < MIN_TOKEN_CHARS:
        return f"api_token must have at least {MIN_TOKEN_CHARS} characters"
    return None


def kafka_security_problem(settings: Any) -> str | None:
    """What is missing or contradictory in the Kafka and schema-registry security settings, or None."""
    refused = refused_keys(settings.kafka_extra_config)
    if refused:
        return f"kafka_extra_config: Highway sets these librdkafka keys itself: {'; '.join(refused)}"
    protocol, mechanism = settings.kafka_security_protocol, settings.kafka_sasl_mechanism
    if protocol.startswith("SASL"):
        if mechanism is None:
            return f"{protocol} needs kafka_sasl_mechanism"
        if mechanism == "OAUTHBEARER":
            oauth = ("kafka_oauth_token_endpoint_url", "kafka_oauth_client_id", "kafka_oauth_client_secret")
            missing = [name for name in oauth if not getattr(settings, name)]
            if missing:
                return f"OAUTHBEARER needs {', '.join(missing)}"
        elif not (settings.kafka_sasl_username and settings.kafka_sasl_password):
            return f"SASL {mechanism} needs kafka_sasl_username and kafka_sasl_password"
    elif mechanism is not None:
        return f"kafka_sasl_mechanism needs a SASL kafka_security_protocol, not {protocol}"
    if bool(settings.kafka_ssl_cert_file) != bool(settings.kafka_ssl_key_file):
        return "mTLS needs both kafka_ssl_cert_file and kafka_ssl_key_file"
    if settings.kafka_ssl_cert_file and not protocol.endswith("SSL"):
        return f"kafka_ssl_cert_file needs kafka_security_protocol SSL or SASL_SSL, not {protocol}"
    if bool(settings.kafka_schema_registry_username) != bool(settings.kafka_schema_registry_password):
        return "schema registry basic auth needs both its username and its password"
    return None


# Settings whose value is itself a table (``[kafka.extra_config]``): kept whole, not flattened.
TABLE_FIELDS = frozenset({"kafka_extra_config", "collector_api_keys"})


def flatten_toml(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}".replace("-", "_").lower()
        if isinstance(value, dict) and name not in TABLE_FIELDS:
            flat.update(flatten_toml(value, f"{name}_"))
        else:
            flat[name] = value
    return flat


def describe(exc: ValidationError, source: str) -> str:
    lines = [f"invalid Highway settings ({source}):"]
    for err in exc.errors():
        field = ".".join(str(part) for part in err["loc"]) or "(model)"
        key = f"{field} (env {ENV_PREFIX}{field.upper()})" if err["loc"] else field
        lines.append(f"  - {key}: {err['msg']}")
    return "\n".join(lines)


# ``HIGHWAY_*`` variables that are not settings: the config file, faust's own overrides, test modes.
NOT_SETTINGS = ("HIGHWAY_CONFIG", "HIGHWAY_FAUST_", "HIGHWAY_LONG_TESTS", "HIGHWAY_SPARK_", "HIGHWAY_TEST_")


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def unknown_keys(names: Iterable[str], known: Iterable[str]) -> list[str]:
    """``name (did you mean …?)`` for every name that is not a known key (pure)."""
    known = sorted(known)
    return [f"{name}{_did_you_mean(name, known)}" for name in sorted(set(names) - set(known))]


def read_config_file(config_file: Path, known: Iterable[str]) -> dict[str, Any]:
    """The TOML file's settings, flattened; ConfigError when it is missing, invalid or has unknown keys."""
    try:
        values = flatten_toml(tomllib.loads(config_file.read_text()))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {config_file} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {config_file} is not valid TOML: {exc}") from exc
    unknown = unknown_keys(values, known)
    if unknown:
        raise ConfigError(f"config file {config_file}: unknown keys {', '.join(unknown)}")
    return values
