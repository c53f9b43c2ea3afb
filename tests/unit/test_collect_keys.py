"""Collector API keys: digests in settings, lane ownership, presented keys, CORS decisions."""

from __future__ import annotations

import pytest

from core.collect.cors import origin_allowed, preflight_headers, response_headers
from core.collect.keys import KeyRing, hash_key, parse_api_keys, presented_key
from core.envvars import settings_env
from core.errors import ConfigError
from core.settings import Settings
from core.settings_load import load_settings

WEB, MOBILE = hash_key("web-secret"), hash_key("mobile-secret")


def test_hash_is_sha256_hex() -> None:
    assert hash_key("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_keys_parse_from_mapping_json_and_pairs() -> None:
    expected = {"web": [WEB], "mobile": [MOBILE]}
    assert parse_api_keys({"web": [WEB.upper()], "mobile": MOBILE}) == expected
    assert parse_api_keys(f'{{"web": ["{WEB}"], "mobile": ["{MOBILE}"]}}') == expected
    assert parse_api_keys(f"web:{WEB}, mobile:{MOBILE}") == expected


@pytest.mark.parametrize(
    "value",
    [
        {"web": ["web-secret"]},
        {"web": [WEB[:-1]]},
        {"web": [WEB], "mobile": [WEB]},
        "web=abc",
        "{bad json",
        5,
    ],
)
def test_bad_key_settings_are_refused(value: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        parse_api_keys(value)


def test_settings_validate_keys_and_their_lanes(tmp_path: object) -> None:
    settings = Settings(lanes=["web", "mobile"], collector_api_keys={"web": [WEB]})
    assert settings.collector_api_keys == {"web": [WEB]}
    with pytest.raises(ValueError, match="not in lanes"):
        Settings(lanes=["web"], collector_api_keys={"mobile": [MOBILE]})
    with pytest.raises(ConfigError, match="collector_api_keys"):
        load_settings(environ={}, lanes=["web"], collector_api_keys={"web": ["plain-key"]})


def test_keys_survive_the_child_process_environment() -> None:
    settings = Settings(lanes=["web", "mobile"], collector_api_keys={"web": [WEB], "mobile": [MOBILE]})
    env = settings_env(settings)
    rebuilt = Settings(lanes=["web", "mobile"], collector_api_keys=env["HIGHWAY_COLLECTOR_API_KEYS"])
    assert rebuilt.collector_api_keys == settings.collector_api_keys


def test_keys_can_be_a_toml_table(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "h.toml"  # type: ignore[operator]
    path.write_text(
        f'lanes = ["web"]\n[collector]\nmax_in_flight = 10\n[collector.api_keys]\nweb = ["{WEB}"]\n'
    )
    settings = load_settings(path, environ={})
    assert settings.collector_api_keys == {"web": [WEB]}
    assert settings.collector_max_in_flight == 10


def test_a_key_opens_only_its_own_lane() -> None:
    ring = KeyRing({"web": [WEB], "mobile": [MOBILE]})
    assert ring.authorize("web-secret", None).lane == "web"
    assert ring.authorize("web-secret", "web").lane == "web"
    assert ring.authorize("web-secret", "mobile").lane is None
    assert ring.authorize("nope", None).error == "unknown API key"
    assert "missing" in (ring.authorize(None, "web").error or "")


def test_presented_key_sources_in_order() -> None:
    assert presented_key({"Authorization": "Bearer k1", "X-Highway-Key": "k2"}, {"key": "k3"}) == "k1"
    assert presented_key({"Authorization": "Basic zzz", "X-Highway-Key": "k2"}, {}) == "k2"
    assert presented_key({}, {"key": "k3"}) == "k3"
    assert presented_key({"Authorization": "Bearer "}, {}) is None


def test_cors_origins_are_validated_where_they_are_set() -> None:
    assert Settings(
        collector_cors_origins="https://a.example, http://localhost:8080"
    ).collector_cors_origins == [
        "https://a.example",
        "http://localhost:8080",
    ]
    assert Settings(collector_cors_origins=["*"]).collector_cors_origins == ["*"]
    for bad in ("https://a.example/", "a.example", "https://a.example/path"):
        with pytest.raises(ValueError, match="is not an origin"):
            Settings(collector_cors_origins=[bad])


def test_cors_allowlist_and_headers() -> None:
    assert origin_allowed(None, [])  # not a browser
    assert origin_allowed("https://a.example", ["https://a.example"])
    assert not origin_allowed("https://b.example", ["https://a.example"])
    assert origin_allowed("https://b.example", ["*"])
    headers = preflight_headers("https://a.example")
    assert headers["Access-Control-Allow-Origin"] == "https://a.example"
    assert headers["Access-Control-Allow-Methods"] == "POST, OPTIONS"
    assert "X-Highway-Key" in headers["Access-Control-Allow-Headers"]
    assert int(headers["Access-Control-Max-Age"]) > 0
    assert response_headers(None) == {}


def test_hash_key_command_prints_the_digest() -> None:
    from typer.testing import CliRunner

    from highway.cli import app

    result = CliRunner().invoke(app, ["collector", "hash-key", "web-secret"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == WEB
