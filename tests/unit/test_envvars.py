"""settings_env round trip: a child process given the rendered environment rebuilds the same settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.envvars import settings_env
from core.settings import ENV_PREFIX, Settings
from core.settings_load import load_settings


def test_environment_rebuilds_the_same_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    original = load_settings(
        kafka_bootstrap="a:1,b:2",
        lanes=["web", "mobile"],
        realtime_dimensions=["platform"],
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="svc",
        kafka_sasl_password="s3cr=t,with comma",
        lake_uri="s3://bucket/prefix",
        lake_flush_age_s=2.5,
        state_dir=Path("/tmp/x y"),
        http_port=7001,
    )
    env = settings_env(original)
    assert env["HIGHWAY_KAFKA_SASL_PASSWORD"] == "s3cr=t,with comma"
    assert "HIGHWAY_KAFKA_SCHEMA_REGISTRY_URL" not in env  # unset fields stay unset
    for key in list(os.environ):
        if key.startswith(ENV_PREFIX):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    rebuilt = load_settings()
    assert rebuilt == original
    assert isinstance(rebuilt, Settings)
