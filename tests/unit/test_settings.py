import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.errors import ConfigError
from core.settings import ENV_PREFIX
from core.settings_load import load_settings, misspelt_variables
from core.settings_rules import NOT_SETTINGS, unknown_keys
from highway.cli import app as cli_app


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


# --- did-you-mean for unknown keys and variables ---------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No HIGHWAY_* variable of the developer's shell reaches these tests."""
    for key in [key for key in os.environ if key.upper().startswith(ENV_PREFIX)]:
        monkeypatch.delenv(key)
    return monkeypatch


def test_unknown_keys_suggest_the_closest_setting_only_when_close() -> None:
    known = ["lake_flush_rows", "lake_flush_bytes", "kafka_bootstrap"]
    assert unknown_keys(["lake_flush_rowz", "kafka_bootstrap", "zzz"], known) == [
        "lake_flush_rowz (did you mean lake_flush_rows?)",
        "zzz",
    ]
    assert unknown_keys(["kafka_bootstrap"], known) == []


def test_a_misspelt_toml_key_names_the_key_and_its_suggestion(tmp_path: Path, clean_env: object) -> None:
    flat = tmp_path / "flat.toml"
    flat.write_text("lake_flush_rowz = 5\n")
    with pytest.raises(ConfigError, match=re.escape("lake_flush_rowz (did you mean lake_flush_rows?)")):
        load_settings(flat, environ={})
    table = tmp_path / "table.toml"
    table.write_text("[kafka]\nbootstrapp = 'k:1'\n")
    with pytest.raises(ConfigError, match=re.escape("kafka_bootstrapp (did you mean kafka_bootstrap?)")):
        load_settings(table, environ={})


def test_toml_tables_by_prefix_set_the_prefixed_setting(tmp_path: Path, clean_env: object) -> None:
    config = tmp_path / "highway.toml"
    config.write_text("app_id = 'flat'\n[lake]\nflush_rows = 5\n[realtime]\nwindow_s = 30\n")
    settings = load_settings(config, environ={})
    assert settings.lake_flush_rows == 5
    assert settings.realtime_window_s == 30
    assert settings.app_id == "flat"


def test_a_misspelt_variable_names_the_variable_and_its_suggestion(clean_env: object) -> None:
    environ = {"HIGHWAY_LAKE_FLUSH_ROWZ": "5", "HIGHWAY_KAFKA_BOOTSTRAP": "k:1", "PATH": "/bin"}
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=environ)
    message = str(caught.value)
    assert "HIGHWAY_LAKE_FLUSH_ROWZ (did you mean HIGHWAY_LAKE_FLUSH_ROWS?)" in message
    assert "HIGHWAY_KAFKA_BOOTSTRAP" not in message  # a real setting is not reported
    # Variable names are case-insensitive, like the settings themselves.
    assert misspelt_variables({"highway_lake_flush_rowz": "5"}) == [
        "HIGHWAY_LAKE_FLUSH_ROWZ (did you mean HIGHWAY_LAKE_FLUSH_ROWS?)"
    ]


def test_allowed_non_setting_prefixes_pass(clean_env: object) -> None:
    environ = {
        "HIGHWAY_CONFIG": "highway.toml",
        "HIGHWAY_FAUST_BROKER_CREDENTIALS": "x",
        "HIGHWAY_LONG_TESTS": "1",
        "HIGHWAY_TEST_FIXTURE_ISOLATED_X": "1",
        "HIGHWAY_HTTP_PORT": "7000",
    }
    assert all(name.startswith(NOT_SETTINGS) for name in list(environ)[:4])
    assert misspelt_variables(environ) == []
    assert load_settings(environ=environ).lanes == ["default"]


def test_the_cli_prints_a_config_error_briefly_and_exits_2(tmp_path: Path, clean_env: object) -> None:
    runner = CliRunner()
    env = {"HIGHWAY_STATE_DIR": str(tmp_path), "HIGHWAY_LAKE_FLUSH_ROWZ": "5"}
    result = runner.invoke(cli_app, ["dev", "status"], env=env)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # typer.Exit, no traceback
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: unknown environment variables ")
    assert "HIGHWAY_LAKE_FLUSH_ROWZ (did you mean HIGHWAY_LAKE_FLUSH_ROWS?)" in lines[0]
    config = tmp_path / "highway.toml"
    config.write_text("[lake]\nflush_rowz = 5\n")
    result = runner.invoke(
        cli_app, ["--config", str(config), "dev", "status"], env={"HIGHWAY_STATE_DIR": str(tmp_path)}
    )
    assert result.exit_code == 2, result.output
    assert "lake_flush_rowz (did you mean lake_flush_rows?)" in result.stderr
    assert "Traceback" not in result.output
