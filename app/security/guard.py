"""The request guard, one pure ASGI middleware in front of the pages and the API:

- Host: a loopback server answers only to loopback names and SPENDGAUGE_ALLOWED_HOSTS (DNS rebinding: a page of
  evil.example whose name resolves to 127.0.0.1 cannot read or drive it); a public one to SPENDGAUGE_ALLOWED_HOSTS
  when set.
- Cross-site: a write from a browser on another origin is refused (Origin, Sec-Fetch-Site), body-less ones (pause)
  included, and so is the page's websocket (a live API socket of another site passes with a token, which the route
  checks); an API write with a body must be `application/json` (no `text/plain`
  form posts, which need no CORS preflight).
- Login: once any user or token exists, a page request without a logged-in session is sent to /login.
"""
from __future__ import annotations

from urllib.parse import parse_qs, quote, urlsplit

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from app import runtime
from app.api.errors import OBJECT_HINTS
from app.security import session
from services.core.settings import Settings

LOOPBACK_NAMES = frozenset({'localhost', '127.0.0.1', '::1'})
SAFE_METHODS = frozenset({'GET', 'HEAD', 'OPTIONS'})
OPEN_PREFIXES = ('/api/', '/_nicegui', '/assets/', '/login', '/logout', '/favicon', '/docs', '/redoc', '/openapi.json',
                 '/metrics', '/mcp', '/v1/traces')  # these check their bearer token themselves


def _host_name(value: str) -> str:
    """`Example.com:8080` -> `example.com`; `[::1]:80` -> `::1`."""
    value = value.strip().lower()
    if value.startswith('['):
        return value[1:value.find(']')] if ']' in value else value
    return value.rsplit(':', 1)[0] if value.count(':') == 1 else value


class RequestGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._allowed: tuple[object, frozenset[str] | None] = (None, None)  # (settings, their host names)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope['type'] not in ('http', 'websocket'):
            return await self.app(scope, receive, send)
        rt = runtime.running()
        if rt is None:
            return await self.app(scope, receive, send)
        headers = {k.decode('latin-1'): v.decode('latin-1') for k, v in scope['headers']}
        host = headers.get('host', '')
        allowed = self._hosts_for(rt.settings)
        if allowed is not None and _host_name(host) not in allowed:
            return await _refuse(scope, send, 421, f'this server does not answer to the host {host!r} (add it to '
                                                   'SPENDGAUGE_ALLOWED_HOSTS)')
        path: str = scope['path']
        method: str = scope.get('method', 'GET')
        if scope['type'] == 'websocket' or method not in SAFE_METHODS:  # the page's socket, and every write
            problem = _cross_site_problem(headers, host, allowed)
            if problem and scope['type'] == 'websocket' and path.startswith('/api/') and _names_token(scope, headers):
                scope['spendgauge.cross_site'] = problem  # the live API: its token decides (app/api/routes/ws.py)
            elif problem:
                return await _refuse(scope, send, 403, problem)
        if scope['type'] == 'websocket':
            return await self.app(scope, receive, send)
        if path.startswith('/api/') and method not in SAFE_METHODS:
            if _has_body(headers) and _media_type(headers) != 'application/json':
                hint = OBJECT_HINTS.get(path, '')
                return await _refuse(scope, send, 415, 'writes take a JSON body: Content-Type: application/json; '
                                                       f'send a JSON object{hint}')
        elif not path.startswith(OPEN_PREFIXES) and method in SAFE_METHODS and session.login_required() \
                and session.session_actor() is None:
            target = path + ('?' + scope['query_string'].decode('latin-1') if scope.get('query_string') else '')
            return await _redirect(send, '/login?next=' + quote(target, safe=''))
        return await self.app(scope, receive, send)

    def _hosts_for(self, settings: Settings) -> frozenset[str] | None:
        """The host names answered to; None: any (a public server without SPENDGAUGE_ALLOWED_HOSTS)."""
        known, allowed = self._allowed
        if known is not settings:
            names = frozenset(_host_name(h) for h in settings.allowed_hosts)
            allowed = LOOPBACK_NAMES | names if settings.on_loopback or names else None
            self._allowed = settings, allowed
        return allowed


def _cross_site_problem(headers: dict[str, str], host: str, allowed: frozenset[str] | None) -> str | None:
    if headers.get('sec-fetch-site') == 'cross-site':
        return 'cross-site writes are refused'
    origin = headers.get('origin')
    if origin is None:
        return None  # not a browser (curl, SDKs), or a same-origin GET-like request
    parts = urlsplit(origin)
    if origin == 'null' or not parts.netloc:
        return 'writes from an opaque origin are refused'
    if parts.netloc.lower() == host.lower():
        return None
    if allowed is not None and _host_name(parts.netloc) in allowed:
        return None
    return f'writes from the origin {origin} are refused'


def _names_token(scope: Scope, headers: dict[str, str]) -> bool:
    """A live API client with a token (a browser of another site cannot send one it was not given)."""
    query = parse_qs(scope.get('query_string', b'').decode('latin-1'))
    return bool(query.get('token', [''])[0].strip() or headers.get('authorization', '').strip())


def _has_body(headers: dict[str, str]) -> bool:
    return headers.get('content-length', '0') not in ('', '0') or 'transfer-encoding' in headers


def _media_type(headers: dict[str, str]) -> str:
    return headers.get('content-type', '').split(';')[0].strip().lower()


async def _refuse(scope: Scope, send: Send, status: int, detail: str) -> None:
    if scope['type'] == 'websocket':
        await send({'type': 'websocket.close', 'code': 1008})
        return
    body = orjson.dumps({'detail': detail})
    await send({'type': 'http.response.start', 'status': status,
                'headers': [(b'content-type', b'application/json'), (b'content-length', str(len(body)).encode())]})
    await send({'type': 'http.response.body', 'body': body})


async def _redirect(send: Send, location: str) -> None:
    await send({'type': 'http.response.start', 'status': 303,
                'headers': [(b'location', location.encode('latin-1')), (b'content-length', b'0')]})
    await send({'type': 'http.response.body', 'body': b''})
