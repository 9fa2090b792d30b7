"""The live API (GET /api/v1/ws) end to end: a real server process on SQLite and on PostgreSQL, real WebSocket
clients (websockets 15), and the changes that cause each message made through the REST API."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import MigratedTemplates, postgres_url
from tests.support.servers import ROOT, Server, start_server

ADMIN = 'ws-admin-token-0123456789abcdef'
QUEUE = 16  # SPENDGAUGE_WS_QUEUE of the server: a client that never reads is dropped soon
WAIT_S = 30.0  # a loaded CI machine: the wait ends as soon as the message comes


@dataclass
class Live:
    server: Server
    tokens: dict[str, str]

    @property
    def url(self) -> str:
        return self.server.url.replace('http://', 'ws://') + '/api/v1/ws'

    def bearer(self, role: str) -> dict[str, str]:
        return {'Authorization': f'Bearer {self.tokens[role]}'}

    def api(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.server.api, headers=self.bearer('admin'), timeout=60)


@pytest.fixture(scope='module', params=['sqlite', 'postgresql'])
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
         migrated: MigratedTemplates) -> Iterator[Live]:
    folder = tmp_path_factory.mktemp(f'ws-{request.param}')
    if request.param == 'sqlite':
        url = migrated.sqlite(folder / 'server.db')
    else:
        url = postgres_url()
        migrated.postgres(url)
    server = start_server(folder, url, token=ADMIN, SPENDGAUGE_DAILY_LIMIT_USD='1000', SPENDGAUGE_WS_QUEUE=str(QUEUE),
                          SPENDGAUGE_INGEST_QUEUE='1000')
    try:
        tokens = {'admin': ADMIN}
        with server.client() as admin:
            for role in ('read', 'ingest'):
                response = admin.post('/tokens', json={'name': f'ws {role}', 'role': role})
                assert response.status_code == 201, response.text
                tokens[role] = response.json()['token']
        yield Live(server, tokens)
    finally:
        server.stop()


@asynccontextmanager
async def subscribed(live: Live, topics: str | None = None, role: str = 'read', path: str = '',
                     **options: Any) -> AsyncIterator[ClientConnection]:
    """A client past its hello (and the budget and eco states it is greeted with)."""
    query = '' if topics is None else f'?topics={topics}'
    async with connect(live.url + path + query, additional_headers=live.bearer(role), **options) as ws:
        hello = await receive(ws)
        assert hello['type'] == 'hello' and hello['v'] == 1
        for topic in ('budget', 'eco'):
            if topic in hello['topics']:
                assert (await receive(ws))['type'] == topic
        yield ws


async def receive(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))


async def receive_until(ws: ClientConnection, type_: str, **expected: Any) -> dict[str, Any]:
    """The next message of this type whose fields have these values (pings and other states pass by)."""
    while True:
        msg = await receive(ws)
        if msg['type'] == type_ and all(msg.get(k) == v for k, v in expected.items()):
            return msg


async def closed(ws: ClientConnection) -> ConnectionClosed:
    """How the server closed the connection (every message before it read and dropped)."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), WAIT_S)
    except ConnectionClosed as exc:
        return exc


def an_event(agent: str, cost: str = '0.000100', **fields: Any) -> dict[str, Any]:
    return {'model': 'gpt-4o', 'input_tokens': 100, 'output_tokens': 20, 'cost_usd': cost, 'agent_id': agent,
            'event_id': uuid.uuid4().hex, **fields}


# --- each topic after the change that causes it --------------------------------------------------------------------

async def test_a_recorded_call_comes_as_the_usage_api_shows_it(live: Live) -> None:
    agent = f'usage-{uuid.uuid4().hex[:8]}'
    async with subscribed(live, 'usage') as ws, live.api() as api:
        recorded = await api.post('/usage', json=an_event(agent, '0.012345', tags=['a', 'b'],
                                                          metadata={'k': 'v'}))
        assert recorded.status_code == 201
        msg = await receive_until(ws, 'usage', agents=[agent])
        listed = (await api.get('/usage', params={'agent_id': agent})).json()['items']
    assert msg['v'] == 1 and msg['change'] == 'recorded' and msg['count'] == 1
    assert msg['cost_micros'] == 12345 and msg['cost_usd'] == '0.012345'
    assert msg['events'] == listed  # the very fields and values GET /api/v1/usage gives
    assert {k: v for k, v in recorded.json().items() if k != 'status'} == listed[0]


async def test_a_batch_comes_in_chunks_with_every_event_once(live: Live) -> None:
    agent = f'batch-{uuid.uuid4().hex[:8]}'
    events = [an_event(agent) for _ in range(120)]
    async with subscribed(live, 'usage') as ws, live.api() as api:
        assert (await api.post('/usage/batch', json={'events': events})).status_code == 200
        seen: list[dict[str, Any]] = []
        while len(seen) < len(events):
            msg = await receive_until(ws, 'usage', agents=[agent])
            assert msg['count'] == len(msg['events']) <= 50
            seen += msg['events']
    assert sorted(e['event_id'] for e in seen) == sorted(e['event_id'] for e in events)
    ids = [e['id'] for e in seen]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)  # in the order they were stored, each once


async def test_eco_mode_switched_on_and_off_with_its_reason(live: Live) -> None:
    async with connect(f'{live.url}?topics=eco', additional_headers=live.bearer('read')) as ws, live.api() as api:
        assert (await receive(ws))['type'] == 'hello'
        initial = await receive(ws)
        assert initial['type'] == 'eco' and isinstance(initial['eco_mode'], bool)
        assert (await api.post('/eco', json={'eco_mode': True, 'reason': 'ws test on'})).status_code == 200
        on = await receive_until(ws, 'eco', reason='ws test on')
        assert (await api.post('/eco', json={'eco_mode': False, 'reason': 'ws test off'})).status_code == 200
        off = await receive_until(ws, 'eco', reason='ws test off')
    assert on['eco_mode'] is True and off['eco_mode'] is False and off['changed_at']


async def test_an_alert_raised_by_crossing_a_threshold_then_acknowledged_and_resolved(live: Live) -> None:
    agent = f'alert-{uuid.uuid4().hex[:8]}'
    async with subscribed(live, path='/alerts') as ws, live.api() as api:
        policy = await api.post('/policies', json={'name': f'ws {agent}', 'scope': 'agent', 'scope_value': agent,
                                                   'period': 'day', 'limit_usd': '1.00', 'action': 'block'})
        assert policy.status_code == 201, policy.text
        await api.post('/usage', json=an_event(agent, '0.85'))  # 85 %: past soft (80 %), below critical (95 %)
        raised = await receive_until(ws, 'alerts', change='raised')
        alert = raised['alert']
        assert alert['type'] == 'threshold_warning' and alert['data']['policy_id'] == policy.json()['id']
        assert alert['data']['spent_usd'] == '0.850000' and alert['open']
        assert (await api.post(f'/alerts/{alert["id"]}/ack', json={'by': 'ws test'})).status_code == 200
        acked = await receive_until(ws, 'alerts', change='acknowledged')
        assert (await api.post(f'/alerts/{alert["id"]}/resolve')).status_code == 200
        resolved = await receive_until(ws, 'alerts', change='resolved')
    assert acked['alert']['id'] == alert['id'] and acked['alert']['acknowledged_by'] == 'ws test'
    assert resolved['alert']['id'] == alert['id'] and resolved['alert']['open'] is False


async def test_the_budget_follows_spend_and_the_limit_as_the_gauge_does(live: Live) -> None:
    async with connect(f'{live.url}?topics=budget', additional_headers=live.bearer('read')) as ws, \
            live.api() as api:
        assert (await receive(ws))['type'] == 'hello'
        before = await receive(ws)
        assert before['type'] == 'budget' and before['period'] == 'day'
        await api.post('/usage', json=an_event(f'budget-{uuid.uuid4().hex[:8]}', '0.250000'))
        after = await receive_until(ws, 'budget', spent_micros=before['spent_micros'] + 250_000)
        gauge = (await api.get('/budget/summary')).json()
        assert (after['spent_usd'], after['limit_usd'], after['percent']) == \
               (gauge['spent_usd'], gauge['limit_usd'], gauge['percent'])
        assert after['decision'] == 'allow'
        try:  # a limit below what is spent: the decision /check gives turns to block
            assert (await api.put('/budget/limits/day', json={'limit_usd': '0.10'})).status_code == 200
            blocked = await receive_until(ws, 'budget', limit_micros=100_000)
            check = (await api.post('/check', json={})).json()
        finally:
            await api.put('/budget/limits/day', json={'limit_usd': '1000'})
    assert blocked['decision'] == check['decision'] == 'block'
    assert blocked['percent'] == round(100 * blocked['spent_micros'] / 100_000, 1)


async def test_a_subscribe_message_adds_topics_and_bad_ones_are_answered(live: Live) -> None:
    agent = f'sub-{uuid.uuid4().hex[:8]}'
    async with subscribed(live, '') as ws, live.api() as api:  # ?topics= : none yet
        await ws.send(json.dumps({'type': 'subscribe', 'topics': ['usage', 'nonsense']}))
        error = await receive(ws)
        assert error['type'] == 'error' and "unknown topic 'nonsense'" in error['detail']
        await ws.send('not json')
        assert (await receive(ws))['type'] == 'error'
        await ws.send(json.dumps({'type': 'ping'}))
        assert (await receive(ws))['type'] == 'pong'
        await ws.send(json.dumps({'type': 'subscribe', 'topics': ['usage']}))
        assert (await receive(ws)) == {'type': 'subscribed', 'v': 1, 'topics': ['usage']}
        await api.post('/usage', json=an_event(agent))
        assert (await receive_until(ws, 'usage', agents=[agent]))['count'] == 1


async def test_unknown_topics_in_the_query_are_refused_with_the_reason(live: Live) -> None:
    async with connect(f'{live.url}?topics=usage,spend', additional_headers=live.bearer('read')) as ws:
        refusal = await closed(ws)
    assert refusal.rcvd is not None and refusal.rcvd.code == 1008
    assert "unknown topic 'spend'" in refusal.rcvd.reason


async def test_a_connection_whose_token_is_revoked_is_closed(live: Live) -> None:
    async with live.api() as api:
        created = (await api.post('/tokens', json={'name': 'ws revoked', 'role': 'read'})).json()
        async with connect(live.url, additional_headers={'Authorization': f'Bearer {created["token"]}'}) as ws:
            assert (await receive(ws))['type'] == 'hello'
            assert (await api.delete(f'/tokens/{created["id"]}')).status_code in (200, 204)
            refusal = await closed(ws)
    assert refusal.rcvd is not None and refusal.rcvd.code == 1008 and refusal.rcvd.reason == 'the token was revoked'


def test_a_plain_http_get_is_told_to_use_a_websocket(live: Live) -> None:
    for path in ('/ws', '/ws/alerts'):
        answer = httpx.get(live.server.api + path, headers=live.bearer('read'))
        assert answer.status_code == 426 and 'WebSocket endpoint' in answer.json()['detail']


# --- tokens --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(('headers', 'query', 'reason'), [
    ({}, '', 'a token is required'),
    ({'Authorization': 'Bearer not-a-token'}, '', 'the token is not valid'),
    ({}, '?token=not-a-token', 'the token is not valid'),
    ('ingest', '', 'this needs the read role; the token has ingest'),
])
async def test_a_missing_bad_or_ingest_only_token_is_refused_with_1008(live: Live, headers: Any, query: str,
                                                                        reason: str) -> None:
    headers = live.bearer(headers) if isinstance(headers, str) else headers
    async with connect(live.url + query, additional_headers=headers, open_timeout=WAIT_S) as ws:
        if not headers and not query:
            await ws.send(json.dumps({'type': 'ping'}))  # a first message without a token
        refusal = await closed(ws)
    assert refusal.rcvd is not None and refusal.rcvd.code == 1008 and reason in refusal.rcvd.reason


async def test_a_read_token_in_the_header_the_query_or_the_first_message_is_let_in(live: Live) -> None:
    token = live.tokens['read']
    async with connect(f'{live.url}?topics=usage', additional_headers=live.bearer('read')) as ws:
        assert (await receive(ws))['role'] == 'read'
    async with connect(f'{live.url}?topics=usage&token={token}') as ws:
        assert (await receive(ws))['role'] == 'read'
    async with connect(f'{live.url}?topics=') as ws:
        await ws.send(json.dumps({'type': 'subscribe', 'topics': ['usage'], 'token': token}))
        assert (await receive(ws))['role'] == 'read'
        assert (await receive(ws)) == {'type': 'subscribed', 'v': 1, 'topics': ['usage']}


async def test_a_browser_of_another_site_needs_a_token(live: Live) -> None:
    evil = {'Origin': 'https://evil.example'}
    with pytest.raises(InvalidStatus) as refused:
        async with connect(live.url, additional_headers=evil):
            pass
    assert refused.value.response.status_code == 403
    async with connect(f'{live.url}?topics=usage&token={live.tokens["read"]}', additional_headers=evil) as ws:
        assert (await receive(ws))['type'] == 'hello'


# --- many clients, and a slow one ---------------------------------------------------------------------------------

def burst(api: httpx.Client, agent: str, batches: int, size: int) -> float:
    """Seconds to record `batches` batches of `size` events, one after another."""
    started = time.perf_counter()
    for _ in range(batches):
        response = api.post('/usage/batch', json={'events': [an_event(agent) for _ in range(size)]})
        assert response.status_code == 200 and response.json()['stored'] == size
    return time.perf_counter() - started


def readers(live: Live, clients: int, agent: str, expected: int) -> subprocess.Popen[str]:
    """`clients` live API clients in a process of their own (tests/support/ws_readers.py), connected."""
    process = subprocess.Popen([sys.executable, '-m', 'tests.support.ws_readers', live.url, live.tokens['read'],
                                str(clients), agent, str(expected)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == 'ready'
    return process


def test_a_hundred_subscribers_each_receive_a_burst_and_ingest_is_not_slowed(live: Live) -> None:
    batches, size = 20, 50
    with live.server.client() as api:
        alone = burst(api, f'alone-{uuid.uuid4().hex[:8]}', batches, size)
        agent = f'burst-{uuid.uuid4().hex[:8]}'
        process = readers(live, 100, agent, batches * size)
        try:
            status = api.get('/ws/status').json()
            assert status['connections'] >= 100 and status['subscribers']['usage'] >= 100
            watched = burst(api, agent, batches, size)
            out, _ = process.communicate(timeout=180)
        finally:
            process.kill()
    print(f'\n{batches * size} events in {batches} batches: {alone:.2f} s alone, {watched:.2f} s with 100 '  # noqa: T201
          f'subscribers ({watched / alone:.2f}x; bench/ws_fanout.py measures it)')
    assert json.loads(out) == [batches * size] * 100  # every client got every event
    assert watched < 3 * alone + 1  # loose: the readers share the machine's two cores with the server


async def test_a_client_that_never_reads_is_dropped_and_the_others_keep_receiving(live: Live) -> None:
    agent = f'slow-{uuid.uuid4().hex[:8]}'
    async with live.api() as api, subscribed(live, 'usage', max_queue=1) as slow, subscribed(live, 'usage') as fast:
        dropped_before = (await api.get('/ws/status')).json()['dropped']
        seen: list[str] = []
        reader = asyncio.create_task(_collect(fast, agent, seen))
        sent: list[str] = []
        try:
            await _until_dropped(api, agent, sent, dropped_before)
        except BaseException:
            reader.cancel()
            raise
        tail = an_event(agent)  # after the drop: the others still receive
        await api.post('/usage', json=tail)
        sent.append(tail['event_id'])
        await asyncio.wait_for(reader, 60)
        refusal = await closed(slow)
    assert sorted(seen) == sorted(sent)  # every event, each once
    assert refusal.rcvd is not None and refusal.rcvd.code == 4000 and 'too slow' in refusal.rcvd.reason


async def _until_dropped(api: httpx.AsyncClient, agent: str, sent: list[str], dropped_before: int) -> None:
    for _ in range(200):  # socket buffers hold a few MB before the server's queue for the client fills
        # random padding: large messages, which per-message deflate cannot shrink, fill the buffers sooner
        batch = [an_event(agent, metadata={'note': os.urandom(1500).hex()}) for _ in range(50)]
        assert (await api.post('/usage/batch', json={'events': batch})).status_code == 200
        sent += [e['event_id'] for e in batch]
        if (await api.get('/ws/status')).json()['dropped'] > dropped_before:
            return
    raise AssertionError(f'the slow client was not dropped after {len(sent)} events')


async def _collect(ws: ClientConnection, agent: str, seen: list[str]) -> None:
    """The event ids of `agent`'s usage messages, until a single event comes (the tail)."""
    while True:
        msg = await receive(ws)
        if msg['type'] == 'usage' and msg['agents'] == [agent]:
            seen += [e['event_id'] for e in msg['events']]
            if msg['count'] == 1:
                return


# --- a loopback server without tokens -----------------------------------------------------------------------------

@pytest.fixture(scope='module')
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """No token and no user: the REST API needs none, so neither does the live API. Two connections at most."""
    server = start_server(tmp_path_factory.mktemp('ws-open'), SPENDGAUGE_WS_MAX_CONNECTIONS='2')
    try:
        yield Live(server, {'read': ''})
    finally:
        server.stop()


async def test_without_tokens_on_the_server_none_is_needed(open_server: Live) -> None:
    async with connect(f'{open_server.url}?topics=usage') as ws:
        hello = await receive(ws)
    assert hello['type'] == 'hello' and hello['topics'] == ['usage']


async def test_without_tokens_on_the_server_a_browser_of_another_site_is_refused(open_server: Live) -> None:
    evil = {'Origin': 'https://evil.example'}
    with pytest.raises(InvalidStatus) as refused:
        async with connect(open_server.url, additional_headers=evil):
            pass
    assert refused.value.response.status_code == 403
    async with connect(f'{open_server.url}?token=made-up', additional_headers=evil) as ws:  # a token proves nothing
        refusal = await closed(ws)
    assert refusal.rcvd is not None and refusal.rcvd.code == 1008 and 'this server has no tokens' in refusal.rcvd.reason
    same_site = {'Origin': open_server.server.url}
    async with connect(open_server.url, additional_headers=same_site) as ws:
        assert (await receive(ws))['type'] == 'hello'


async def test_connections_over_the_limit_are_refused_with_1013(open_server: Live) -> None:
    async with httpx.AsyncClient(base_url=open_server.server.api) as api:
        while (await api.get('/ws/status')).json()['connections']:  # the other tests' clients are gone
            await asyncio.sleep(0.05)
    async with connect(open_server.url) as first, connect(open_server.url) as second:
        for ws in (first, second):
            assert (await receive(ws))['type'] == 'hello'
        async with connect(open_server.url) as third:
            refusal = await closed(third)
        async with httpx.AsyncClient(base_url=open_server.server.api) as api:
            status = (await api.get('/ws/status')).json()
    assert refusal.rcvd is not None and refusal.rcvd.code == 1013 and 'too many live connections (2)' in \
        refusal.rcvd.reason
    assert status['connections'] == 2 and status['refused'] >= 1
