"""A real HTTP server on 127.0.0.1 standing in for a remote API in tests: canned replies per route (JSON bodies,
raw bytes, status codes, headers, delays) and a log of every request to assert on.

    with FakeAPI() as api:
        api.route('/v1/things', {'data': [1]})                                   # 200 with this JSON, always
        api.route('/v1/things', {'data': [2]}, query={'page': 'p2'})             # when ?page=p2 (more specific wins)
        api.route('/v1/flaky', Reply(status=503), Reply(status=503), {'ok': 1})  # in turn; the last one repeats
        api.handler('/v1/endless', lambda request: Reply({'next': request.param('page')}))
        ... api.url ...; api.hits('/v1/things')[0].headers['authorization']

Unrouted requests get 404; a handler that raises gives 500 and lands in `errors`. Delays end early when the server
closes, so a timed-out test does not hang.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Reply:
    body: Any = None  # sent as JSON
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering
    raw: bytes | None = None  # sent as-is instead of `body` (e.g. broken JSON)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case
    at: float  # time.monotonic() on arrival

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


Handler = Callable[[Request], Reply]


@dataclass
class _Route:
    method: str
    path: str
    query: dict[str, str]
    answer: Handler


class FakeAPI:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.errors: list[Exception] = []  # raised by handlers
        self._routes: list[_Route] = []
        self._lock = threading.RLock()  # a handler may look at the log
        self._closing = threading.Event()
        self._server = _Server(('127.0.0.1', 0), _handler_class(self))
        self.url = f'http://127.0.0.1:{self._server.server_address[1]}'
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={'poll_interval': 0.05},
                                        name='fake-api', daemon=True)
        self._thread.start()

    def route(self, path: str, *replies: Reply | Any, query: dict[str, str] | None = None,
              method: str = 'GET') -> None:
        """Answer with `replies` in turn, the last one repeating; anything that is not a Reply is a 200 JSON body.
        `query` limits the route to requests carrying these parameters. A later route replaces an equal one."""
        queue = [reply if isinstance(reply, Reply) else Reply(reply) for reply in replies] or [Reply()]

        def answer(_: Request) -> Reply:
            return queue.pop(0) if len(queue) > 1 else queue[0]

        self.handler(path, answer, query=query, method=method)

    def handler(self, path: str, answer: Handler, *, query: dict[str, str] | None = None,
                method: str = 'GET') -> None:
        """Answer with `answer(request)` (called on the server thread)."""
        with self._lock:
            self._routes.append(_Route(method.upper(), path, dict(query or {}), answer))

    def hits(self, path: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> FakeAPI:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _answer(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            matches = [(len(route.query), i, route) for i, route in enumerate(self._routes)
                       if route.method == request.method and route.path == request.path
                       and all(request.param(k) == v for k, v in route.query.items())]
            if not matches:
                return Reply({'error': {'message': f'no route for {request.method} {request.path}'}}, status=404)
            try:
                reply = max(matches, key=lambda match: match[:2])[2].answer(request)
            except Exception as exc:  # a broken test handler: answer 500 and keep the error for the test to see
                self.errors.append(exc)
                return Reply({'error': {'message': f'fake handler failed: {exc!r}'}}, status=500)
        if reply.delay:
            self._closing.wait(reply.delay)
        return reply


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: connecting is refused."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return f'http://127.0.0.1:{s.getsockname()[1]}'


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a kept-alive connection must not hold up close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the client gave up (a timeout test) and closed the connection; nothing to report


def _handler_class(api: FakeAPI) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = 'HTTP/1.1'

        def _serve(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get('content-length') or 0)
            if length:
                self.rfile.read(length)
            request = Request(self.command, url.path, parse_qs(url.query, keep_blank_values=True),
                              {k.lower(): v for k, v in self.headers.items()}, time.monotonic())
            reply = api._answer(request)
            payload = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
            if 'Date' in reply.headers:  # a clock of its own (skew tests): instead of the server's Date
                self.send_response_only(reply.status)
            else:
                self.send_response(reply.status)
            headers = {'Content-Type': 'application/json', **reply.headers, 'Content-Length': str(len(payload))}
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    return _Handler
