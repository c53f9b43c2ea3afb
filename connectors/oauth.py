"""OAUTHBEARER tokens for faust's aiokafka clients: the OIDC client-credentials grant.

librdkafka does this itself (``sasl.oauthbearer.method=oidc``); aiokafka needs a token provider.
This one asks the same token endpoint with the same client id, secret and scope, and reuses a
token until shortly before it expires, so reconnects do not each fetch a new one.
"""

from __future__ import annotations

import asyncio
import time

import httpx
from aiokafka.abc import AbstractTokenProvider

from core.errors import TransientError
from core.settings import Settings

REFRESH_BEFORE_S = 60.0
"""A token is replaced this long before it expires (a connect must not race the expiry)."""


class ClientCredentialsTokenProvider(AbstractTokenProvider):
    def __init__(
        self, token_url: str, client_id: str, client_secret: str, scope: str | None, timeout_s: float = 10.0
    ) -> None:
        self._url = token_url
        self._form = {"grant_type": "client_credentials"}
        if scope:
            self._form["scope"] = scope
        self._auth = (client_id, client_secret)
        self._timeout_s = timeout_s
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> ClientCredentialsTokenProvider:
        secret = settings.kafka_oauth_client_secret
        return cls(
            settings.kafka_oauth_token_endpoint_url or "",
            settings.kafka_oauth_client_id or "",
            secret.get_secret_value() if secret is not None else "",
            settings.kafka_oauth_scope,
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._url} client_id={self._auth[0]}>"

    async def token(self) -> str:
        async with self._lock:
            if self._token is None or time.monotonic() >= self._expires_at:
                self._token, lifetime_s = await self._fetch()
                self._expires_at = time.monotonic() + max(0.0, lifetime_s - REFRESH_BEFORE_S)
            return self._token

    async def _fetch(self) -> tuple[str, float]:
        try:
            async with httpx.AsyncClient(timeout=self._timeout_s) as client:
                response = await client.post(self._url, data=self._form, auth=self._auth)
        except httpx.HTTPError as exc:
            raise TransientError(f"OAUTHBEARER token endpoint {self._url}: {exc!r}") from exc
        if response.status_code != 200:
            # The body may echo the request; only the status goes into the message.
            raise TransientError(f"OAUTHBEARER token endpoint {self._url} answered {response.status_code}")
        body = response.json()
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise TransientError(f"OAUTHBEARER token endpoint {self._url} returned no access_token")
        return token, float(body.get("expires_in", 3600))
