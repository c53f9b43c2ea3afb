"""Each Kafka security setting → the exact librdkafka, schema-registry and aiokafka configuration."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from faust.auth import OAuthCredentials, SASLCredentials, SSLCredentials

from connectors.kafka_config import (
    confluent_config,
    faust_credentials,
    producer_config,
    registry_config,
    router_producer_config,
    security_config,
)
from connectors.kafka_logging import LibrdkafkaLog
from connectors.oauth import ClientCredentialsTokenProvider
from core.envvars import settings_env
from core.errors import ConfigError
from core.settings import Settings
from core.settings_load import load_settings
from tests.conftest import isolated_settings


def _conf(**values: Any) -> dict[str, Any]:
    conf = confluent_config(isolated_settings(**values))
    assert isinstance(conf.pop("logger"), LibrdkafkaLog)
    return conf


def test_plaintext_is_bootstrap_and_protocol_only() -> None:
    assert _conf(kafka_bootstrap="a:1,b:2") == {
        "bootstrap.servers": "a:1,b:2",
        "security.protocol": "PLAINTEXT",
    }


def test_scram_over_tls() -> None:
    settings = isolated_settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="svc",
        kafka_sasl_password="pw",
        kafka_ssl_ca_file=Path("/etc/ca.pem"),
    )
    assert security_config(settings) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "svc",
        "sasl.password": "pw",
        "ssl.ca.location": "/etc/ca.pem",
    }


def test_oauthbearer_uses_librdkafkas_oidc_flow() -> None:
    values: dict[str, Any] = {
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "OAUTHBEARER",
        "kafka_oauth_token_endpoint_url": "https://idp/token",
        "kafka_oauth_client_id": "highway",
        "kafka_oauth_client_secret": "oidc-secret",
    }
    expected = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "OAUTHBEARER",
        "sasl.oauthbearer.method": "oidc",
        "sasl.oauthbearer.client.id": "highway",
        "sasl.oauthbearer.client.secret": "oidc-secret",
        "sasl.oauthbearer.token.endpoint.url": "https://idp/token",
    }
    assert security_config(isolated_settings(**values)) == expected
    scoped = security_config(isolated_settings(**values, kafka_oauth_scope="kafka"))
    assert scoped == {**expected, "sasl.oauthbearer.scope": "kafka"}


def test_mtls_client_certificate() -> None:
    settings = isolated_settings(
        kafka_security_protocol="SSL",
        kafka_ssl_ca_file=Path("/ca.pem"),
        kafka_ssl_cert_file=Path("/client.pem"),
        kafka_ssl_key_file=Path("/client.key"),
        kafka_ssl_key_password="keypw",
    )
    assert security_config(settings) == {
        "security.protocol": "SSL",
        "ssl.ca.location": "/ca.pem",
        "ssl.certificate.location": "/client.pem",
        "ssl.key.location": "/client.key",
        "ssl.key.password": "keypw",
    }


def test_extra_config_reaches_every_client_last() -> None:
    settings = isolated_settings(
        kafka_extra_config={
            "socket.keepalive.enable": "true",
            "linger.ms": "50",
            "ssl.keystore.password": "ks-7f3a",
        }
    )
    for conf in (
        confluent_config(settings),
        producer_config(settings),
        router_producer_config(settings, "default", "slot-0"),
    ):
        assert conf["socket.keepalive.enable"] == "true"
        assert conf["linger.ms"] == "50"  # the operator's tuning wins over Highway's default
        assert conf["ssl.keystore.password"] == "ks-7f3a"
    assert "ks-7f3a" not in repr(settings)  # values are kept secret (some are passwords)


@pytest.mark.parametrize(
    "key",
    ["enable.idempotence", "transactional.id", "group.id", "bootstrap.servers", "sasl.password", "error_cb"],
)
def test_extra_config_refuses_keys_highway_owns(key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={}, kafka_extra_config={key: "x", "debug": "broker"})
    assert key in str(caught.value)
    assert "debug" not in str(caught.value)


def test_extra_config_from_environment_json_and_toml_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = tmp_path / "highway.toml"
    toml.write_text('[kafka.extra_config]\n"socket.keepalive.enable" = "true"\n')
    from_file = load_settings(toml, environ={})
    assert from_file.kafka_extra_config["socket.keepalive.enable"].get_secret_value() == "true"
    env = settings_env(from_file)
    assert json.loads(env["HIGHWAY_KAFKA_EXTRA_CONFIG"]) == {"socket.keepalive.enable": "true"}
    monkeypatch.setenv("HIGHWAY_KAFKA_EXTRA_CONFIG", env["HIGHWAY_KAFKA_EXTRA_CONFIG"])
    assert Settings().kafka_extra_config == from_file.kafka_extra_config


def test_schema_registry_basic_auth_and_ca() -> None:
    settings = isolated_settings(
        kafka_schema_registry_url="https://registry:8081",
        kafka_schema_registry_username="reader",
        kafka_schema_registry_password="p:w",
        kafka_schema_registry_ca_file=Path("/registry-ca.pem"),
    )
    assert registry_config(settings) == {
        "url": "https://registry:8081",
        "basic.auth.user.info": "reader:p:w",
        "ssl.ca.location": "/registry-ca.pem",
    }
    assert registry_config(isolated_settings(kafka_schema_registry_url="http://r")) == {"url": "http://r"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "OAUTHBEARER"},
            "kafka_oauth_client_id",
        ),
        ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "PLAIN"}, "kafka_sasl_password"),
        ({"kafka_security_protocol": "SASL_SSL"}, "kafka_sasl_mechanism"),
        ({"kafka_sasl_mechanism": "PLAIN"}, "SASL kafka_security_protocol"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_cert_file": "/c.pem"}, "kafka_ssl_key_file"),
        ({"kafka_ssl_cert_file": "/c.pem", "kafka_ssl_key_file": "/k.pem"}, "SSL or SASL_SSL"),
        ({"kafka_schema_registry_username": "u"}, "password"),
    ],
)
def test_incomplete_security_settings_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(environ={}, **values)


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=highway",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_faust_gets_the_same_credentials(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    mtls = faust_credentials(
        isolated_settings(kafka_security_protocol="SSL", kafka_ssl_cert_file=cert, kafka_ssl_key_file=key)
    )
    assert isinstance(mtls, SSLCredentials)
    scram = faust_credentials(
        isolated_settings(
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_mechanism="SCRAM-SHA-256",
            kafka_sasl_username="u",
            kafka_sasl_password="p",
        )
    )
    assert isinstance(scram, SASLCredentials)
    assert scram.password == "p"
    assert scram.ssl_context is None
    oauth = faust_credentials(
        isolated_settings(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="OAUTHBEARER",
            kafka_oauth_token_endpoint_url="https://idp/token",
            kafka_oauth_client_id="highway",
            kafka_oauth_client_secret="oidc-secret",
        )
    )
    assert isinstance(oauth, OAuthCredentials)
    assert oauth.ssl_context is not None
    assert isinstance(oauth.oauth_cb, ClientCredentialsTokenProvider)
    assert "oidc-secret" not in repr(oauth.oauth_cb)
    assert faust_credentials(isolated_settings()) is None
