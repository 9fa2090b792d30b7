"""The live API: `GET /api/v1/ws` (WebSocket) streams usage, alerts, budget and eco-mode changes as typed JSON
messages (services/live/stream.py); `/api/v1/ws/alerts` is the alerts topic alone; `GET /api/v1/ws/status` counts the
connections.

Tokens as for the REST API, `read` role or above: `Authorization: Bearer <token>`, or (browsers cannot set headers)
`?token=<token>`, or a first message `{"type": "auth", "token": "..."}`. Without any token or user on the server, none
is needed. A refusal accepts the socket and closes it with 1008 and the reason, so that clients can read it.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import APIRouter, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from typing_extensions import TypedDict

from app import runtime as runtime_module
from app.api.deps import READ, TRUSTED, RuntimeDep
from app.feed import feed
from app.runtime import Runtime
from services.alerting.alerts import AlertOut, get_alert
from services.budget.checker import CheckRequest
from services.core.access import Actor, Role
from services.core.errors import Invalid, NotFound
from services.dashboard import Part
from services.live.stream import (
    POLICY,
    TRY_LATER,
    LiveStream,
    StreamTopic,
    Subscriber,
    budget_message,
    eco_message,
    encode,
    message,
    parse_topics,
    topic_list,
)

log = logging.getLogger(__name__)
router = APIRouter(prefix='/ws', tags=['live'])
WS_PATH = '/api/v1/ws'
AUTH_TIMEOUT_S = 10.0  # for the first message's token
KEEPALIVE_S = 25.0  # a ping message after this long without one (WebSocket ping frames besides: uvicorn's, 20 s)
REAUTH_S = 30.0  # an open connection's token is checked again this often: a revoked token is closed
CLOSE_TIMEOUT_S = 10.0  # a client that reads nothing cannot take the close frame: give up on it then
MAX_CLIENT_MESSAGE = 4096  # characters


class LiveStatus(TypedDict):
    connections: int
    max_connections: int
    queue_size: int  # messages each client may have waiting before it is dropped
    subscribers: dict[str, int]  # per topic
    sent: int  # messages queued for clients since the start
    dropped: int  # clients dropped for reading too slowly
    refused: int  # connections refused over max_connections


_stream: LiveStream | None = None


def stream() -> LiveStream:
    if _stream is None:
        raise RuntimeError('the live API is not running')
    return _stream


def start_stream(rt: Runtime) -> LiveStream:
    """On the event loop at start-up, after the dashboard feed."""
    global _stream
    _stream = LiveStream(rt.settings.ws_max_connections, rt.settings.ws_queue,
                         watch_budget=lambda: _watch_budget(rt), read_alert=lambda i: _read_alert(rt, i))
    _stream.start(rt.hub)
    return _stream


async def stop_stream() -> None:
    global _stream
    if _stream is not None:
        await _stream.stop()
        _stream = None


def _read_alert(rt: Runtime, alert_id: int) -> AlertOut | None:
    try:
        return rt.read(get_alert, alert_id)
    except NotFound:
        return None


def _decision(rt: Runtime) -> str:
    """What /check answers for a call that names nothing (the global policies); a block it would record as a
    policy violation is not recorded: this is no call."""
    if rt.checker is None:
        return 'allow'
    return rt.checker.check(CheckRequest(), deferred=[])['decision']


def _watch_budget(rt: Runtime) -> Callable[[], None]:
    """Follow the dashboard feed's reloads of today's spend and the limits: the gauge's numbers, not a recount."""
    live = stream()
    return feed().subscribe(lambda data: live.publish_budget(budget_message(data.summary, _decision(rt))),
                            frame=True, parts={Part.TODAY, Part.BUDGET})


@router.get('/status', dependencies=READ)
def status(rt: RuntimeDep) -> LiveStatus:
    """The live API's connections, per topic, and the clients dropped for reading too slowly."""
    live = _stream or LiveStream(rt.settings.ws_max_connections, rt.settings.ws_queue)  # not started: all zero
    return {'connections': len(live.clients), 'max_connections': live.max_clients, 'queue_size': live.queue_size,
            'subscribers': {topic.value: live.wanted[topic] for topic in StreamTopic}, 'sent': live.sent,
            'dropped': live.dropped, 'refused': live.refused}


@router.get('', include_in_schema=False)
@router.get('/alerts', include_in_schema=False)
def plain_http() -> Response:
    """A plain GET (a browser's address bar, curl without upgrade): say what this is, rather than 404."""
    return JSONResponse({'detail': 'this is a WebSocket endpoint: connect with a WebSocket client (ws:// or wss://); '
                                   "the messages are described in the README's Live API (WebSocket) section"},
                        426, headers={'Upgrade': 'websocket'})


@router.websocket('')
async def live(websocket: WebSocket) -> None:
    """Subscribe with `?topics=usage,alerts,budget,eco` (default: all) and/or `{"type": "subscribe", "topics": [...]}`
    messages."""
    await _serve(websocket, websocket.query_params.get('topics'))


@router.websocket('/alerts')
async def live_alerts(websocket: WebSocket) -> None:
    """The alerts topic alone."""
    await _serve(websocket, StreamTopic.ALERTS.value)


async def _serve(websocket: WebSocket, topics_query: str | None) -> None:
    rt = runtime_module.current()
    await websocket.accept()
    try:
        topics = parse_topics(topics_query)
    except Invalid as exc:
        return await _close(websocket, POLICY, str(exc))
    live = _stream
    if live is None:  # an app without start-up (a test's): nothing to stream
        return await _close(websocket, TRY_LATER, 'the live API is not running')
    client = live.join(())  # a place taken before the token is read: sockets waiting to authenticate count too
    if client is None:
        return await _close(websocket, TRY_LATER, f'too many live connections ({live.max_clients}); try again later')
    try:
        try:
            actor, token, early = await _authenticate(rt, websocket)
        except _Refused as refused:
            rt.refusals.refused(websocket.headers.get('user-agent'), f'GET {websocket.url.path}', refused.status,
                                refused.reason)
            return await _close(websocket, POLICY, refused.reason)
        live.retopic(client, topics)
        await _send(websocket, message('hello', topics=topic_list(client.topics), role=actor.role.value,
                                       queue_size=live.queue_size, keepalive_s=KEEPALIVE_S))
        if early is not None:
            await _answer(websocket, live, client, early)
        await _greet(websocket, client.topics)
        tasks = [asyncio.create_task(_write(websocket, client)), asyncio.create_task(_read(websocket, live, client)),
                 asyncio.create_task(client.dropped.wait()), asyncio.create_task(_recheck(rt, client, token))]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
        revoked = [r for t in done if not t.cancelled() and t.exception() is None and isinstance(r := t.result(), str)]
        if revoked:
            return await _close(websocket, POLICY, revoked[0])
        if client.dropped.is_set():
            return await _close(websocket, *client.close)
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # the client went
    finally:
        live.leave(client)


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


async def _authenticate(rt: Runtime, websocket: WebSocket) -> tuple[Actor, str, dict[str, Any] | None]:
    """The caller, its token ('' when none is needed), and the first message when it was read for its token (it
    may also subscribe)."""
    directory = rt.accounts
    if directory.due:
        await run_in_threadpool(directory.refresh)
    cross_site = websocket.scope.get('spendgauge.cross_site')
    if not directory.secured:
        if cross_site:  # nothing to prove who calls: a page of another site must not read this server
            raise _Refused(403, f'cross-site websocket refused ({cross_site}): this server has no tokens')
        return TRUSTED, '', None
    scheme, _, header_token = websocket.headers.get('authorization', '').partition(' ')
    token = header_token.strip() if scheme.lower() == 'bearer' else ''
    token = token or websocket.query_params.get('token', '').strip()
    first = None
    if not token:
        first = await _first_message(websocket)
        value = first.get('token') if first else None
        token = value.strip() if isinstance(value, str) else ''
        if not token:
            raise _Refused(401, 'a token is required: Authorization: Bearer <token>, ?token=<token>, or a first '
                                'message {"type": "auth", "token": "..."}')
    actor = directory.token_actor(token)
    if actor is None:
        raise _Refused(401, 'the token is not valid (revoked, or never issued)')
    if not actor.may(Role.READ):
        raise _Refused(403, f'this needs the read role; the token has {actor.role}')
    rt.refusals.accepted(websocket.headers.get('user-agent'))
    return actor, token, first


async def _first_message(websocket: WebSocket) -> dict[str, Any] | None:
    try:
        received = await asyncio.wait_for(websocket.receive(), AUTH_TIMEOUT_S)
    except TimeoutError:
        return None
    parsed = _parse(received.get('text') or '')
    return parsed if isinstance(parsed, dict) else None


async def _recheck(rt: Runtime, client: Subscriber, token: str) -> str:
    """Returns (the close reason) once the connection's token is no longer valid: checked when tokens change here
    (the stream sets `recheck`), and every REAUTH_S for changes made on another instance."""
    if not token:
        await asyncio.Event().wait()  # a trusted loopback server: nothing to check
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(client.recheck.wait(), REAUTH_S)
        client.recheck.clear()
        if rt.accounts.due:
            await run_in_threadpool(rt.accounts.refresh)
        if rt.accounts.token_actor(token) is None:
            return 'the token was revoked'


async def _greet(websocket: WebSocket, topics: frozenset[StreamTopic]) -> None:
    """The current budget and eco state for a client that subscribes to them: a baseline the changes apply to."""
    if not topics & {StreamTopic.BUDGET, StreamTopic.ECO}:
        return
    data = await feed().current()
    if StreamTopic.BUDGET in topics:
        payload = budget_message(data.summary, _decision(runtime_module.current()))
        stream().greeted(payload)
        await _send(websocket, payload)
    if StreamTopic.ECO in topics:
        eco = data.eco
        await _send(websocket, eco_message(eco['eco_mode'], eco['reason'] or '', changed_at=eco['changed_at']))


async def _write(websocket: WebSocket, client: Subscriber) -> None:
    while True:
        try:
            text = await asyncio.wait_for(client.queue.get(), KEEPALIVE_S)
        except TimeoutError:
            text = encode(message('ping'))
        await websocket.send_text(text)


async def _read(websocket: WebSocket, live: LiveStream, client: Subscriber) -> None:
    while True:
        received = await websocket.receive()
        if received['type'] == 'websocket.disconnect':
            return
        text = received.get('text')
        if text is None:
            await _send(websocket, message('error', detail='send JSON text messages'))
            continue
        await _answer(websocket, live, client, _parse(text))


async def _answer(websocket: WebSocket, live: LiveStream, client: Subscriber, received: Any) -> None:
    """A client's message: subscribe, unsubscribe, ping (or auth, once authenticated: ignored)."""
    if not isinstance(received, dict):
        return await _send(websocket, message('error', detail=f'send a JSON object of at most {MAX_CLIENT_MESSAGE} '
                                                              'characters with a type: subscribe, unsubscribe, ping'))
    kind = received.get('type')
    if kind == 'ping':
        return await _send(websocket, message('pong'))
    if kind == 'auth':
        return None
    if kind not in ('subscribe', 'unsubscribe'):
        return await _send(websocket, message('error', detail=f'type: unknown {str(kind)[:40]!r}; send subscribe, '
                                                              'unsubscribe or ping'))
    try:
        topics = parse_topics(received.get('topics', []))
    except Invalid as exc:
        return await _send(websocket, message('error', detail=str(exc)))
    added = topics - client.topics
    live.retopic(client, client.topics | topics if kind == 'subscribe' else client.topics - topics)
    await _send(websocket, message('subscribed', topics=topic_list(client.topics)))
    if kind == 'subscribe':
        await _greet(websocket, frozenset(added))


def _parse(text: str) -> Any:
    if len(text) > MAX_CLIENT_MESSAGE:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


async def _send(websocket: WebSocket, payload: dict[str, Any]) -> None:
    await websocket.send_text(encode(payload))


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):  # the client may be gone, or read nothing (then the close frame waits)
        await asyncio.wait_for(websocket.close(code, reason[:120]), CLOSE_TIMEOUT_S)
