"""Request limits, checked before routing, authentication or body parsing: a pure ASGI middleware (no
BaseHTTPMiddleware: `/check` stays fast, and bodies stream through untouched).

- A body larger than the limit is answered 413 as soon as that is known: at once when Content-Length says so;
  a chunked body (no Content-Length) is read here, up to the limit and no further, before the app sees it. So a
  request that lacks a token still gets its 413 without the server reading 200 MB first. Content-Length is also
  enforced as a cap on what is passed on, should a body run past it.
- A path or query string with a NUL character is answered 422: no database can store it, and no route means it.

The limit is `SPENDGAUGE_MAX_BODY_MB` (default 8 MiB); `POST /api/v1/usage/batch` takes up to
BATCH_BODY_BYTES or that, whichever is larger: 10,000 typical events weigh about 8 MiB.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

import orjson
from fastapi import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.core.inputs import unstorable_text
from services.core.settings import get_settings

MIB = 2**20
BATCH_PATH = '/api/v1/usage/batch'
BATCH_BODY_BYTES = 32 * MIB  # 10,000 events (the batch maximum) of about 3 KB each
BODY_METHODS = frozenset({'POST', 'PUT', 'PATCH', 'DELETE'})


def body_limit(path: str) -> int:
    """The largest body a request to `path` may carry, in bytes."""
    limit = get_settings().max_body_mb * MIB
    return max(limit, BATCH_BODY_BYTES) if path == BATCH_PATH else limit


class BodyTooLarge(HTTPException):
    """Raised to the app when a body runs past its Content-Length: FastAPI answers it as a 413."""

    def __init__(self) -> None:
        super().__init__(413, 'the request body is longer than its Content-Length')


async def _answer(send: Send, status: int, detail: str) -> None:
    body = orjson.dumps({'detail': detail})
    await send({'type': 'http.response.start', 'status': status,
                'headers': [(b'content-type', b'application/json'), (b'content-length', str(len(body)).encode()),
                            (b'connection', b'close')]})
    await send({'type': 'http.response.body', 'body': body})


def _too_large(limit: int) -> str:
    return f'the request body is larger than {limit / MIB:g} MiB'


class RequestLimits:
    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int] = body_limit) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope['type'] != 'http':
            await self.app(scope, receive, send)
            return
        problem = _unstorable_target(scope)
        if problem:
            await _answer(send, 422, problem)
            return
        if scope['method'] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope['path'])
        length = _content_length(scope)
        if length == -1:
            await _answer(send, 400, 'Content-Length: not a number of bytes')
            return
        if length is not None:
            if length > limit:
                await _answer(send, 413, _too_large(limit))
                return
            await _run(self.app, scope, _capped(receive, length), send)
            return
        # Chunked (or no length at all): read it here, up to the limit, before anything else runs
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message['type'] != 'http.request':  # the client went away
                await _answer(send, 400, 'the request body did not arrive')
                return
            chunk = message.get('body', b'')
            size += len(chunk)
            if size > limit:
                chunks.clear()
                await _answer(send, 413, _too_large(limit))
                return
            if chunk:
                chunks.append(chunk)
            if not message.get('more_body', False):
                break
        await _run(self.app, scope, _replay(chunks, receive), send)


async def _run(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Run the app; a client gone before its body arrived (or whose bytes after the body were not HTTP) gets a 400
    nobody reads, so the middlewares around this one see a response."""
    started = False

    async def tracked(message: Message) -> None:
        nonlocal started
        started = started or message['type'] == 'http.response.start'
        await send(message)

    try:
        await app(scope, receive, tracked)
    except ClientDisconnect:
        if not started:
            await _answer(send, 400, 'the request body did not arrive')


def _content_length(scope: Scope) -> int | None:
    """The declared length; None without one, -1 when it is not a number."""
    for name, value in scope['headers']:
        if name == b'content-length':
            return int(value) if value.isdigit() and len(value) < 20 else -1
    return None


def _unstorable_target(scope: Scope) -> str | None:
    for where, raw in (('path', scope['path'].encode('utf-8', 'surrogateescape')),
                       ('query', unquote_to_bytes(scope.get('query_string', b'')))):
        if b'\x00' in raw:
            problem = unstorable_text('\x00')
            return f'the request {where} {problem}'
    return None


def _capped(receive: Receive, length: int) -> Receive:
    """Pass the body on, refusing any byte beyond the declared length (the server normally stops there)."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message['type'] == 'http.request':
            seen += len(message.get('body', b''))
            if seen > length:
                raise BodyTooLarge
        return message

    return wrapped


def _replay(chunks: list[bytes], receive: Receive) -> Receive:
    """The body read here, chunk by chunk as it came (no joined copy; each let go once handed on), then whatever
    the client sends next."""
    if not chunks:
        chunks.append(b'')

    async def wrapped() -> Message:
        if chunks:
            body = chunks.pop(0)
            return {'type': 'http.request', 'body': body, 'more_body': bool(chunks)}
        return await receive()

    return wrapped


def install(app: Any) -> None:
    """Register the middleware once (NiceGUI's app may be built more than once in tests)."""
    if not any(m.cls is RequestLimits for m in app.user_middleware):
        app.add_middleware(RequestLimits)
