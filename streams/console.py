"""The web console: static pages at ``/console`` and its one metadata call, ``/api/v1/console``.

The pages (``streams/console_static/``: HTML, CSS and dependency-free JavaScript drawing inline SVG)
hold no data, so they are public like ``/health``; every number they show comes from an API call
that the access check guards (``streams/http_auth.py``). The browser keeps the API token the user
typed on ``/console/login`` in ``sessionStorage`` (gone with the tab) and sends it as
``Authorization: Bearer …`` with each ``fetch`` — no cookie, so no other site can make the
browser call the API with it (no CSRF). Each page says in a ``<meta>`` whether the worker has a
token, so the console goes to the login page without a failing call first.

Pages are sent with a Content-Security-Policy allowing only this origin's scripts, styles and
``fetch`` targets: nothing is fetched from the internet, and an injected value cannot run script.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any, cast

import faust
from aiohttp import web as aiohttp_web
from faust.web import Request, Response, View

from core.realtime.partials import window_label
from core.settings import Settings

STATIC_DIR = "console_static"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}
PUBLIC_CONSOLE_PATHS = ("/console", "/console/login", "/console/static/{name}")
"""The console's routes answered without the token (code, no data)."""
FEATURE_ROUTES = {
    "concurrency": "/api/v1/concurrency",
    "catalog": "/api/v1/catalog",
    "funnel": "/api/v1/funnel",
    "paths": "/api/v1/paths",
    "sessions": "/api/v1/sessions/stats",
}


@cache
def asset(name: str) -> bytes | None:
    """A file of the console (read once), or None: only plain names of files that exist."""
    if "/" in name or "\\" in name or name.startswith(".") or _suffix(name) not in CONTENT_TYPES:
        return None
    found = files(__package__ or "streams").joinpath(STATIC_DIR, name)
    return found.read_bytes() if found.is_file() else None


def _suffix(name: str) -> str:
    return name[name.rfind(".") :] if "." in name else ""


def page(name: str, token_required: bool) -> bytes:
    """An HTML page with the worker's auth mode filled in."""
    body = asset(name)
    if body is None:
        raise FileNotFoundError(f"console page {name} is not installed")
    return body.replace(b"{{auth}}", b"token" if token_required else b"open")


def features(request: Request) -> dict[str, bool]:
    """Which data calls this worker serves (its roles decide; the analytics routes may be absent)."""
    router = cast(aiohttp_web.Request, request).app.router
    routes = {resource.canonical for resource in router.resources()}
    return {feature: route in routes for feature, route in FEATURE_ROUTES.items()}


def register(app: faust.App, settings: Settings) -> None:
    token_required = settings.api_token is not None

    def send(web: View, body: bytes, content_type: str, status: int = 200) -> Response:
        return web.bytes(body, status=status, headers={"Content-Type": content_type, **SECURITY_HEADERS})

    @app.page("/console")
    async def console(web: View, request: Request) -> Response:
        return send(web, page("index.html", token_required), CONTENT_TYPES[".html"])

    @app.page("/console/login")
    async def login(web: View, request: Request) -> Response:
        return send(web, page("login.html", token_required), CONTENT_TYPES[".html"])

    @app.page("/console/static/{name}")
    async def static(web: View, request: Request, name: str) -> Response:
        body = asset(name)
        if body is None:
            return send(web, b"not found", "text/plain; charset=utf-8", 404)
        return send(web, body, CONTENT_TYPES[_suffix(name)])

    @app.page("/api/v1/console")
    async def meta(web: View, request: Request) -> Response:
        answer: dict[str, Any] = {
            "lanes": list(settings.lanes),
            "dimensions": list(settings.realtime_dimensions),
            "windows": [
                window_label(settings.realtime_window_s),
                window_label(settings.realtime_sliding_window_s),
            ],
            "lake_format": settings.lake_format,
            "token_required": token_required,
            "features": features(request),
        }
        return web.json(answer)
