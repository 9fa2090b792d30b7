"""`GET /metrics`: the runtime's Prometheus metrics (services/live/metrics.py) in the text format, and the pure ASGI
middleware (no BaseHTTPMiddleware: bodies stream through untouched) that times every HTTP request.

The route needs what the other read routes need: nothing on a loopback server without tokens or users, else
`Authorization: Bearer <token>` of the `read` role or higher (Prometheus: `authorization` in the scrape config).
"""
from __future__ import annotations

from time import perf_counter
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import runtime
from app.api.deps import RuntimeDep, authenticate, requires, route_template
from app.api.errors import ErrorOut
from app.api.openapi import DESCRIPTIONS
from services.core.access import Role
from services.live.metrics import UNMATCHED

PATH = '/metrics'
CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'  # the text format generate_latest writes
router = APIRouter(tags=['metrics'])
_reader = requires(Role.READ)


@router.get(PATH, response_class=Response, openapi_extra={'security': [{'bearer': []}]}, responses={
    200: {'description': 'Counters and histograms in the Prometheus text format (version 0.0.4)',
          'content': {'text/plain': {'schema': {'type': 'string'}}}},
    401: {'model': ErrorOut, 'description': DESCRIPTIONS['401']},
    403: {'model': ErrorOut, 'description': DESCRIPTIONS['403']}})
async def scrape(rt: RuntimeDep, request: Request) -> Response:
    """The metrics of this instance, for Prometheus: usage ingested, spend by provider and agent, checks, syncs,
    alerts, dashboard reloads, HTTP latency and the process."""
    # The read routes' dependency, called here: as a route dependency its hidden Authorization header would make
    # FastAPI document a 422 this route cannot answer.
    await _reader(await authenticate(rt, request, request.headers.get('authorization')), rt, request)
    return Response(await run_in_threadpool(generate_latest, rt.metrics.registry), media_type=CONTENT_TYPE)


class RequestMetrics:
    """Times each HTTP request from its arrival to the end of its response, by method, route template and status
    class, into the registry of the runtime that is running (none before start-up: not timed)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rt = runtime.running() if scope['type'] == 'http' else None
        if rt is None:
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        root_path = scope.get('root_path', '')
        status = 500  # unless a response starts: the server answers an exception with a 500

        async def observed(message: Message) -> None:
            nonlocal status
            if message['type'] == 'http.response.start':
                status = message['status']
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            rt.metrics.request_served(scope['method'], _template(scope, root_path), status, perf_counter() - started)


def _template(scope: Scope, root_path: str) -> str:
    """The route's template; for a mounted app (static files, the page's socket) where it is mounted; else
    UNMATCHED. Read after the request: routing fills in the scope."""
    template = route_template(scope)
    if template:
        return template
    mounted = scope.get('root_path', '')
    if mounted != root_path and mounted.startswith(root_path):
        return mounted[len(root_path):] + '/{path}'
    return UNMATCHED


def install(app: Any) -> None:
    """The route and, once (NiceGUI's app may be built more than once in tests), the middleware: outside the
    request limits, so that their refusals are timed too."""
    app.include_router(router)
    if not any(m.cls is RequestMetrics for m in app.user_middleware):
        app.add_middleware(RequestMetrics)
