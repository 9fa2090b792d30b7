"""The API lane: requests under /api/ skip NiceGUI's page middlewares.

NiceGUI wraps every request in four `BaseHTTPMiddleware`s (a session cookie, a per-request user storage, cache
headers for its own files, redirects behind a prefix), each starting a task group and streaming the response
through memory channels. The API needs none of them: it authenticates by bearer token, and its answers carry no
cookie. Measured on `POST /api/v1/check`, they were about half the server's CPU a check.

So the app gets two middleware stacks built from the same list: the full one for pages, sockets and files, and one
for /api/ without NiceGUI's page middlewares. Everything of ours stays on both (the request guard, the request
limits, the HTTP timings, gzip, the error handlers), in the same order, around the same router.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from nicegui.middlewares import RedirectWithPrefixMiddleware, SetCacheControlMiddleware
from nicegui.storage import RequestTrackingMiddleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

PAGE_ONLY = (SessionMiddleware, RequestTrackingMiddleware, SetCacheControlMiddleware, RedirectWithPrefixMiddleware)
API_PATHS = ('/api/', '/mcp', '/v1/traces')  # /mcp: app/mcp_server/http.py; /v1/traces: app/api/routes/otel.py


class ApiLane:
    """Sends HTTP requests under /api/ to `api`, everything else (pages, the socket, files, lifespan) to `pages`."""

    def __init__(self, pages: ASGIApp, api: ASGIApp) -> None:
        self.pages = pages
        self.api = api

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Hands back the chosen stack's coroutine unawaited: no frame of the lane stays on the stack, so it costs a
        # request no coroutine of its own and shows in no traceback of the stacks below it
        if scope['type'] == 'http' and scope['path'].startswith(API_PATHS):
            return self.api(scope, receive, send)
        return self.pages(scope, receive, send)


def install(app: FastAPI) -> None:
    """Build the app's middleware stack as an ApiLane (once: NiceGUI's app may be built more than once in tests).
    The stacks are built when the first request or the lifespan arrives, after `ui.run` added its middlewares."""
    if getattr(app.build_middleware_stack, 'lane', False):
        return
    build_full: Callable[[], ASGIApp] = app.build_middleware_stack

    def build() -> ASGIApp:
        pages = build_full()
        everything = app.user_middleware
        app.user_middleware = [m for m in everything if m.cls not in PAGE_ONLY]
        try:
            api = build_full()
        finally:
            app.user_middleware = everything
        return ApiLane(pages, api)

    marked: Any = build
    marked.lane = True
    app.build_middleware_stack = marked  # type: ignore[method-assign]
