"""aiokafka's OAUTHBEARER tokens: the client-credentials grant, reused until near expiry."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from connectors.oauth import ClientCredentialsTokenProvider
from core.errors import TransientError


def _with_token_endpoint(
    test: Callable[[str, list[dict[str, str]]], Awaitable[None]], status: int = 200
) -> None:
    seen: list[dict[str, str]] = []

    async def token(request: web.Request) -> web.Response:
        form = dict(await request.post())
        form["authorization"] = request.headers.get("Authorization", "")
        seen.append({key: str(value) for key, value in form.items()})
        if status != 200:
            return web.json_response(
                {"error": "invalid_client", "echo": form["authorization"]}, status=status
            )
        return web.json_response({"access_token": f"token-{len(seen)}", "expires_in": 3600})

    async def run() -> None:
        app = web.Application()
        app.router.add_post("/token", token)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            await test(f"http://127.0.0.1:{runner.addresses[0][1]}/token", seen)
        finally:
            await runner.cleanup()

    asyncio.run(run())


def test_token_is_fetched_once_and_reused() -> None:
    async def check(url: str, seen: list[dict[str, str]]) -> None:
        provider = ClientCredentialsTokenProvider(url, "highway", "s3cret", "kafka")
        assert [await provider.token() for _ in range(3)] == ["token-1"] * 3
        assert len(seen) == 1
        assert seen[0]["grant_type"] == "client_credentials"
        assert seen[0]["scope"] == "kafka"
        assert seen[0]["authorization"] == "Basic " + base64.b64encode(b"highway:s3cret").decode()

    _with_token_endpoint(check)


def test_a_refusal_names_the_endpoint_not_the_secret() -> None:
    async def check(url: str, seen: list[dict[str, str]]) -> None:
        provider = ClientCredentialsTokenProvider(url, "highway", "s3cret", None)
        with pytest.raises(TransientError) as caught:
            await provider.token()
        assert "401" in str(caught.value)
        assert url in str(caught.value)
        assert "s3cret" not in str(caught.value)
        assert "aGlnaHdheTpzM2NyZXQ" not in str(caught.value)

    _with_token_endpoint(check, status=401)
