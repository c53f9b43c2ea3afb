"""The HTTP access policy, the middleware that applies it, the token settings and /ready."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from core.errors import ConfigError
from core.http_access import AccessPolicy, bearer, is_loopback, token_problem
from core.settings_load import load_settings
from streams.app import PUBLIC_PATHS, create_app
from streams.health import HealthBoard
from streams.http_auth import access_middleware
from tests.conftest import isolated_settings

TOKEN = "t0ken-with-enough-characters"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.0.0.5", False),
        ("worker.internal", False),
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    assert (token_problem(host, has_token=False) is None) is loopback
    assert token_problem(host, has_token=True) is None


def test_bearer_header_parsing() -> None:
    assert bearer(f"Bearer {TOKEN}") == TOKEN
    assert bearer(f"bearer  {TOKEN} ") == TOKEN
    assert bearer(f"Basic {TOKEN}") is None
    assert bearer("Bearer ") is None
    assert bearer(None) is None


def test_policy_with_a_token() -> None:
    policy = AccessPolicy(TOKEN, PUBLIC_PATHS, metrics_require_token=False)
    good, bad = f"Bearer {TOKEN}", f"Bearer {TOKEN}x"
    for public in ("/health", "/ready", "/metrics", "/v1/events", "/v1/highway.js"):
        assert policy.check(public, None) is None
    for private in ("/api/v1/concurrency", "/api/v1/users/{user_id}", "/lake", "/anything"):
        assert policy.check(private, good) is None
        for header in (None, bad, TOKEN, f"Basic {TOKEN}"):
            denial = policy.check(private, header)
            assert denial is not None
            assert denial.status == 401
    locked = AccessPolicy(TOKEN, PUBLIC_PATHS, metrics_require_token=True)
    assert locked.check("/metrics", None) is not None
    assert locked.check("/metrics", good) is None


def test_policy_without_a_token_disables_user_lookups_only() -> None:
    policy = AccessPolicy(None, PUBLIC_PATHS, metrics_require_token=True)
    assert policy.check("/api/v1/concurrency", None) is None
    assert policy.check("/metrics", None) is None  # nothing to require
    denial = policy.check("/api/v1/users/{user_id}", "Bearer anything")
    assert denial is not None
    assert denial.status == 403
    assert "HIGHWAY_API_TOKEN" in denial.error


def _serve_and_get(policy: AccessPolicy, requests: list[tuple[str, dict[str, str]]]) -> list[tuple[int, Any]]:
    async def page(request: web.Request) -> web.Response:
        return web.json_response({"ok": request.path})

    async def run() -> list[tuple[int, Any]]:
        app = web.Application(middlewares=[access_middleware(policy)])
        for path in ("/health", "/api/v1/concurrency", "/api/v1/users/{user_id}"):
            app.router.add_get(path, page)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        answers = []
        try:
            async with aiohttp.ClientSession() as session:
                for path, headers in requests:
                    async with session.get(f"http://127.0.0.1:{port}{path}", headers=headers) as response:
                        answers.append((response.status, await response.json()))
        finally:
            await runner.cleanup()
        return answers

    return asyncio.run(run())


def test_middleware_over_http() -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    answers = _serve_and_get(
        AccessPolicy(TOKEN, PUBLIC_PATHS, metrics_require_token=False),
        [
            ("/health", {}),
            ("/api/v1/concurrency", {}),
            ("/api/v1/concurrency", auth),
            ("/api/v1/users/u%2F1", {}),
            ("/api/v1/users/u1", auth),
            ("/api/v1//users/u1", {}),
            ("/no-such-page", {}),
        ],
    )
    assert [status for status, _ in answers] == [200, 401, 200, 401, 200, 401, 401]
    assert "Bearer" in answers[1][1]["error"]


def test_middleware_without_token_refuses_user_lookups() -> None:
    answers = _serve_and_get(
        AccessPolicy(None, PUBLIC_PATHS, metrics_require_token=False),
        [("/api/v1/concurrency", {}), ("/api/v1/users/u1", {"Authorization": "Bearer guess"})],
    )
    assert [status for status, _ in answers] == [200, 403]
    assert "HIGHWAY_API_TOKEN" in answers[1][1]["error"]


def test_a_worker_on_a_public_address_needs_a_token(tmp_path: Path) -> None:
    settings = isolated_settings(http_host="0.0.0.0", state_dir=tmp_path)
    with pytest.raises(ConfigError, match="api_token"):
        create_app(settings, ["router"])


def test_api_token_from_a_mounted_file(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")
    settings = load_settings(environ={}, api_token_file=secret)
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == TOKEN
    assert TOKEN not in repr(settings)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match=r"api_token_file .* is empty"):
        load_settings(environ={}, api_token_file=empty)
    with pytest.raises(ConfigError, match=r"api_token_file .* cannot be read"):
        load_settings(environ={}, api_token_file=tmp_path / "missing")
    with pytest.raises(ConfigError, match="not both"):
        load_settings(environ={}, api_token_file=secret, api_token="another-token-of-enough-length")
    with pytest.raises(ConfigError, match="at least 16"):
        load_settings(environ={}, api_token="short")


def test_https_needs_certificate_and_key() -> None:
    with pytest.raises(ConfigError, match="http_tls_key_file"):
        load_settings(environ={}, http_tls_cert_file="/cert.pem")


class _Service:
    def __init__(self, started: bool) -> None:
        self.started = started


def test_ready_when_every_stage_started_and_none_failed() -> None:
    board = HealthBoard()
    lake = _Service(False)
    state: dict[str, tuple[str, str | None]] = {"router": ("ok", None)}
    board.add("router", lambda: state["router"])
    board.add("lake", lambda: ("degraded", "starting"), lambda: lake.started)
    assert board.readiness() == (503, {"ready": False, "starting": ["lake"]})
    lake.started = True
    assert board.readiness() == (200, {"ready": True})
    state["router"] = ("failed", "router: gave up")
    assert board.readiness() == (503, {"ready": False, "failed": ["router"]})
