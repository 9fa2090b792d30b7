"""Streamable HTTP at /mcp, in the server process. Each request is authenticated as the REST API authenticates
(app/api/deps.py: a bearer token once any token or user exists, 401 otherwise; trusted on a loopback server with
none), then handed to the SDK's session manager; the tools check the caller's role (local.py).

Stateless with JSON answers: no MCP session lives in the process, so any instance sharing the database can answer
any request. The guard (app/security/guard.py) checks Host and cross-site writes and lets /mcp through without a
login; the SDK's own DNS-rebinding check is off, the guard's covers it with the configured host names."""
from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import FastAPI, HTTPException
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from app import runtime
from app.api.deps import authenticate
from app.mcp_server.backend import BudgetBackend
from app.mcp_server.local import LocalBackend
from app.mcp_server.tools import build_server

MCP_PATH = '/mcp'
ACTOR = 'spendgauge.actor'  # the scope key the authenticated caller travels under to the tools
# the SDK logs 'Terminating session: None' at INFO for every stateless request
logging.getLogger('mcp.server.streamable_http').setLevel(logging.WARNING)


class McpEndpoint:
    def __init__(self) -> None:
        self._manager: StreamableHTTPSessionManager | None = None
        self._starting = asyncio.Lock()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rt = runtime.current()
        request = Request(scope, receive)
        try:
            actor = await authenticate(rt, request, request.headers.get('authorization'))
        except HTTPException as exc:
            return await JSONResponse({'detail': exc.detail}, exc.status_code, headers=exc.headers)(scope, receive,
                                                                                                      send)
        scope[ACTOR] = actor
        manager = self._manager or await self._start()
        await manager.handle_request(scope, receive, send)

    async def _start(self) -> StreamableHTTPSessionManager:
        """The SDK's session manager runs in a task of its own, from the first request until shut-down."""
        async with self._starting:
            if self._manager is None:
                server = build_server(backend_for)
                server.streamable_http_app(stateless_http=True, json_response=True, transport_security=
                                           TransportSecuritySettings(enable_dns_rebinding_protection=False))
                manager, ready = server.session_manager, asyncio.Event()
                self._stop = asyncio.Event()

                async def run() -> None:
                    async with manager.run():
                        ready.set()
                        await self._stop.wait()

                self._task = asyncio.create_task(run(), name='mcp sessions')
                await ready.wait()
                self._manager = manager
            return self._manager

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._manager, self._task = None, None


def backend_for(ctx: Context) -> BudgetBackend:
    request = ctx.request_context.request
    actor = request.scope.get(ACTOR) if isinstance(request, Request) else None
    if actor is None or not isinstance(request, Request):  # every request through /mcp carries one
        raise ToolError('not authenticated')
    return LocalBackend(runtime.current(), actor, request.headers.get('user-agent'))


def install(app: FastAPI) -> McpEndpoint:
    endpoint = McpEndpoint()
    app.router.routes.append(Route(MCP_PATH, endpoint=endpoint))
    return endpoint
