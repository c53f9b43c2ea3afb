from pathlib import Path

import pytest

from core.errors import ConfigError
from core.settings import load_settings


def test_defaults_name_the_topics_of_a_lane() -> None:
    settings = load_settings()
    assert settings.lanes == ["default"]
    assert settings.all_events_topic("default") == "default.events.all"
    assert settings.common_topic("default") == "default.events.common"
    assert settings.dlq_topic("default") == "default.events.dlq"
    assert settings.event_topic("default", "contest_join") == "default.event.contest_join"


def test_environment_overrides_and_csv_lanes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIGHWAY_KAFKA_BOOTSTRAP", "broker:9093")
    monkeypatch.setenv("HIGHWAY_LANES", "fantasy, cricket")
    settings = load_settings()
    assert settings.kafka_bootstrap == "broker:9093"
    assert settings.lanes == ["fantasy", "cricket"]


def test_bad_value_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIGHWAY_TOPIC_PARTITIONS", "many")
    with pytest.raises(ConfigError, match="HIGHWAY_TOPIC_PARTITIONS"):
        load_settings()


def test_toml_tables_flatten_and_unknown_keys_are_refused(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[lake]\nuri = "s3://bucket/prefix"\n[kafka]\nbootstrap = "k:1"\n')
    settings = load_settings(good)
    assert settings.lake_uri == "s3://bucket/prefix"
    assert settings.kafka_bootstrap == "k:1"
    bad = tmp_path / "bad.toml"
    bad.write_text('lake_urii = "s3://x"\n')
    with pytest.raises(ConfigError, match="lake_urii"):
        load_settings(bad)


def test_sasl_requires_credentials() -> None:
    with pytest.raises(ConfigError, match="SASL"):
        load_settings(kafka_security_protocol="SASL_SSL")


def test_lake_uri_scheme_is_checked() -> None:
    with pytest.raises(ConfigError, match="lake_uri"):
        load_settings(lake_uri="/tmp/lake")
