"""The worker's HTTP access check: one aiohttp middleware in front of every faust web page.

The decision is :class:`core.http_access.AccessPolicy`'s; this only feeds it the matched route
(``/api/v1/users/{user_id}``, so odd spellings of a path cannot slip past a prefix) and the
``Authorization`` header, and answers a denial as JSON.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from core.http_access import AccessPolicy
from core.settings import Settings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def access_middleware(policy: AccessPolicy) -> Middleware:
    @web.middleware
    async def check_access(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else request.path
        denial = policy.check(route, request.headers.get("Authorization"))
        if denial is None:
            return await handler(request)
        headers = {"WWW-Authenticate": 'Bearer realm="highway"'} if denial.status == 401 else None
        return web.json_response({"error": denial.error}, status=denial.status, headers=headers)

    return check_access


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The web server's TLS context when ``http_tls_cert_file`` is set, else None (plain HTTP)."""
    if not (settings.http_tls_cert_file and settings.http_tls_key_file):
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(settings.http_tls_cert_file), str(settings.http_tls_key_file))
    return context
