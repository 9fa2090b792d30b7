"""The REST API as a whole against real servers: health, unknown paths, the docs, write tokens, and refusing to
listen on a public address without them. The other test_api_* modules cover each group of endpoints."""
from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import fresh_postgres_engine, postgres_url
from tests.support.api import assert_client_error, event, record, uid, usage
from tests.support.openapi import assert_documented
from tests.support.servers import Server, clean_env, free_port, start_server

TOKEN = 'secret-token'


# --- health, unknown paths, docs ----------------------------------------------------------------------------------

def test_health(api: httpx.Client) -> None:
    response = api.get('/health')
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body['status'], body['database']) == ('ok', 'sqlite')
    assert body['version']


@pytest.mark.parametrize(('method', 'path'), [('GET', '/whatever'), ('POST', '/whatever/else'),
                                              ('DELETE', '/usage/1'), ('GET', '/budget/by-colour')])
def test_unknown_endpoint_is_404_json(api: httpx.Client, method: str, path: str) -> None:
    assert_client_error(api.request(method, path), 404, mentions=path)


@pytest.mark.parametrize(('method', 'path'), [('PATCH', '/tasks/a%0Ab'), ('GET', '/nothing%0Ahere')])
def test_a_path_with_a_newline_is_404_json(api: httpx.Client, method: str, path: str) -> None:
    """Found by schemathesis: a newline in the path got the page's HTML 404."""
    assert_client_error(api.request(method, path, json={}), 404, mentions='no such endpoint')


@pytest.mark.parametrize(('method', 'path'), [
    ('GET', '/policies/{}'), ('PATCH', '/policies/{}'), ('DELETE', '/policies/{}'), ('POST', '/alerts/{}/ack'),
    ('POST', '/alerts/{}/resolve')])
@pytest.mark.parametrize('row_id', ['81927109827723878465536', '0', '-1'])
def test_ids_no_row_can_have_are_refused(api: httpx.Client, method: str, path: str, row_id: str) -> None:
    """Found by schemathesis: an id beyond BIGINT reached the database driver and overflowed (a 500)."""
    body = {'limit_usd': '1'} if method == 'PATCH' else None
    assert_client_error(api.request(method, path.format(row_id), json=body), 422, mentions='_id: Input should be')


def test_docs_and_openapi_schema(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        docs = client.get('/docs')
        assert docs.status_code == 200, docs.status_code
        assert 'swagger' in docs.text.lower()
        schema = client.get('/openapi.json')
        assert schema.status_code == 200, schema.status_code
    paths = schema.json()['paths']
    for path in ('/api/v1/usage', '/api/v1/usage/batch', '/api/v1/budget/summary', '/api/v1/sessions'):
        assert path in paths
    assert 'post' in paths['/api/v1/usage'] and 'get' in paths['/api/v1/usage']


# --- write tokens -----------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that has API tokens configured."""
    srv = start_server(tmp_path_factory.mktemp('secured'), token=TOKEN)
    yield srv
    srv.stop()


@pytest.fixture
def anonymous(secured: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=secured.api, timeout=30) as client:
        yield client


def write_requests(agent: str, session: str) -> list[tuple[str, str, dict[str, Any]]]:
    provider = uid('acme')
    return [
        ('POST', '/usage', {'json': event(agent_id=agent, session_id=session, cost_usd='0.01')}),
        ('POST', '/usage/batch', {'json': {'events': [event(agent_id=agent, cost_usd='0.02')]}}),
        ('PUT', '/budget/limits/day', {'json': {'limit_usd': '7'}}),
        ('PUT', '/prices', {'json': {'provider': provider, 'model': 'm', 'input_usd_per_mtok': '1',
                                     'output_usd_per_mtok': '1'}}),
        ('DELETE', '/prices', {'params': {'provider': provider, 'model': 'm'}}),
        ('POST', f'/sessions/{session}/end', {}),
    ]


WRITES = ['POST usage', 'POST usage/batch', 'PUT limits', 'PUT prices', 'DELETE prices', 'POST sessions end']


@pytest.mark.parametrize('index', range(len(WRITES)), ids=WRITES)
@pytest.mark.parametrize(('headers', 'status'), [
    ({}, 401),
    ({'Authorization': f'Basic {TOKEN}'}, 401),
    ({'Authorization': 'Bearer'}, 401),
    ({'Authorization': 'Bearer wrong-token'}, 401),
    ({'Authorization': f'Bearer {TOKEN}x'}, 401),
], ids=['no token', 'not bearer', 'empty bearer', 'wrong token', 'token prefix'])
def test_write_without_the_token_is_refused(secured: Server, anonymous: httpx.Client, index: int,
                                            headers: dict[str, str], status: int) -> None:
    agent, session = uid('agent'), uid('session')
    with secured.client() as authorized:  # the session must exist, so ending it is refused for the token alone
        record(authorized, agent_id=uid('agent'), session_id=session)
    method, path, kwargs = write_requests(agent, session)[index]
    response = anonymous.request(method, path, headers=headers, **kwargs)
    assert_client_error(response, status)
    assert response.headers['www-authenticate'].startswith('Bearer')
    with secured.client() as reader:
        assert usage(reader, agent_id=agent) == []
        assert reader.get('/budget/limits').json()['day']['limit_micros'] == 5_000_000
        assert reader.get(f'/sessions/{session}').json()['ended_at'] is None


def test_write_with_the_token_succeeds(secured: Server) -> None:
    agent, session = uid('agent'), uid('session')
    expected = [201, 200, 200, 200, 200, 200]
    with secured.client() as client:
        assert client.headers['authorization'] == f'Bearer {TOKEN}'
        for (method, path, kwargs), status in zip(write_requests(agent, session), expected, strict=True):
            response = client.request(method, path, **kwargs)
            assert response.status_code == status, f'{method} {path}: {response.status_code} {response.text}'
        try:
            assert len(usage(client, agent_id=agent)) == 2
            assert client.get('/budget/limits').json()['day']['limit_micros'] == 7_000_000
            assert client.get(f'/sessions/{session}').json()['ended_at'] is not None
        finally:
            client.put('/budget/limits/day', json={'limit_usd': '5'})


def test_bad_input_without_token_is_401_not_422(anonymous: httpx.Client) -> None:
    assert_client_error(anonymous.post('/usage', json={'input_tokens': -1}), 401)


READS = ['/usage', '/budget/summary', '/budget/limits', '/budget/history', '/budget/by-agent', '/budget/by-provider',
         '/budget/by-model', '/sessions', '/sessions.csv', '/agents', '/prices', '/prices/unpriced']


@pytest.mark.parametrize('path', READS)
def test_reads_need_a_token_once_tokens_exist(secured: Server, anonymous: httpx.Client, path: str) -> None:
    """Spend, prompts in metadata and user ids are not public: reads need the read role too."""
    assert_client_error(anonymous.get(path), 401)
    with secured.client() as reader:
        response = reader.get(path)
    assert response.status_code == 200, response.text


def test_health_stays_open(anonymous: httpx.Client) -> None:
    assert anonymous.get('/health').json()['status'] == 'ok'


# --- refusing a public address without tokens ---------------------------------------------------------------------

def test_refuses_public_address_without_tokens(tmp_path: Path) -> None:
    env = clean_env(SPENDGAUGE_ENV_FILE='', SPENDGAUGE_DATABASE_URL=f'sqlite:///{tmp_path / "spendgauge.db"}')
    port = free_port()
    started = time.monotonic()
    result = subprocess.run([sys.executable, '-m', 'app', 'serve', '--host', '0.0.0.0', '--port', str(port)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert elapsed < 20
    assert 'SPENDGAUGE_API_TOKENS' in result.stderr
    assert 'Traceback' not in result.stdout + result.stderr
    with pytest.raises(httpx.TransportError):
        httpx.get(f'http://127.0.0.1:{port}/api/v1/health', timeout=1)


def test_a_server_on_postgresql_records_and_reports(tmp_path: Path) -> None:
    """The whole path on PostgreSQL: migrations on start, ingest, duplicates, the summary and the breakdowns."""
    url = postgres_url()
    fresh_postgres_engine(url).dispose()
    srv = start_server(tmp_path, database_url=url)
    try:
        with srv.client() as api:
            event = {'event_id': 'pg-1', 'model': 'gpt-4o', 'provider': 'openai', 'agent_id': 'pg-agent',
                     'session_id': 'pg-session', 'input_tokens': 1000, 'cache_read_tokens': 200, 'output_tokens': 500,
                     'metadata': {'nested': {'a': [1, 2]}}, 'tags': ['x']}
            assert api.post('/usage', json=event).status_code == 201
            assert api.post('/usage', json=event).json()['status'] == 'duplicate'
            batch = api.post('/usage/batch', json={'events': [
                {**event, 'event_id': 'pg-2'}, {**event, 'event_id': 'pg-3', 'model': 'nul\x00model'}]}).json()
            assert [r['status'] for r in batch['results']] == ['stored', 'rejected']
            summary = api.get('/budget/summary').json()
            assert (summary['spent_micros'], summary['requests']) == (14_500, 2)
            assert api.get('/budget/by-agent', params={'period': 'day'}).json()['items'][0]['agent_id'] == 'pg-agent'
            assert api.get('/sessions/pg-session').json()['cost_micros'] == 14_500
            assert api.get('/usage', params={'limit': 1}).json()['items'][0]['metadata'] == {'nested': {'a': [1, 2]}}
    finally:
        srv.stop()
    assert 'Traceback' not in srv.log()


# --- what schemathesis found: statuses and bodies /openapi.json did not document ---------------------------------

@pytest.mark.parametrize(('method', 'template', 'path'), [
    ('POST', '/check', '/check'), ('POST', '/eco', '/eco'), ('POST', '/policies', '/policies'),
    ('POST', '/tasks', '/tasks'), ('PUT', '/thresholds', '/thresholds'),
    ('PUT', '/budget/limits/{period}', '/budget/limits/day')])
def test_a_missing_body_is_a_documented_422(api: httpx.Client, method: str, template: str, path: str) -> None:
    """The 422 body is `detail` (a string) and `errors`, not FastAPI's default HTTPValidationError."""
    response = api.request(method, path)
    assert_client_error(response, 422, mentions='Field required')
    assert response.json()['errors'][0]['loc'] == ['body']
    assert_documented(api, response, method, template)


@pytest.mark.parametrize(('method', 'template', 'path'), [
    ('GET', '/policies/{policy_id}', '/policies/987654321'), ('PATCH', '/policies/{policy_id}', '/policies/987654321'),
    ('DELETE', '/policies/{policy_id}', '/policies/987654321'), ('GET', '/tasks/{task_id}', '/tasks/no-such-task'),
    ('PATCH', '/tasks/{task_id}', '/tasks/no-such-task'), ('GET', '/reports/{kind}', '/reports/no-such-kind'),
    ('POST', '/agents/{agent_id}/pause', '/agents/no-such-agent/pause'),
    ('POST', '/agents/{agent_id}/resume', '/agents/no-such-agent/resume'),
    ('POST', '/alerts/{alert_id}/ack', '/alerts/987654321/ack'),
    ('POST', '/alerts/{alert_id}/resolve', '/alerts/987654321/resolve'),
    ('POST', '/sync/{source}', '/sync/no-such-source')])
def test_nothing_stored_under_the_id_is_a_documented_404(api: httpx.Client, method: str, template: str,
                                                         path: str) -> None:
    body = {'limit_usd': '1'} if template == '/policies/{policy_id}' and method == 'PATCH' else \
        {'title': 'x'} if method == 'PATCH' else None
    response = api.request(method, path, json=body)
    assert_client_error(response, 404)
    assert_documented(api, response, method, template)


def test_conflicts_are_documented_409s(api: httpx.Client) -> None:
    task = {'id': uid('task'), 'title': 'twice'}
    assert api.post('/tasks', json=task).status_code == 201
    taken = api.post('/tasks', json=task)
    assert_client_error(taken, 409, mentions='already exists')
    assert_documented(api, taken, 'POST', '/tasks')
    not_configured = api.post('/sync/litellm')
    assert_client_error(not_configured, 409, mentions='not configured')
    assert 'set SPENDGAUGE_LITELLM_URL and SPENDGAUGE_LITELLM_MASTER_KEY' in not_configured.json()['detail']
    assert_documented(api, not_configured, 'POST', '/sync/{source}')


def test_an_unreadable_body_is_a_documented_400(api: httpx.Client) -> None:
    """Bytes that are not UTF-8 JSON: FastAPI answers 400 'There was an error parsing the body'."""
    response = api.post('/alerts/1/ack', content=b'\x80\x81', headers={'Content-Type': 'application/json'})
    assert_client_error(response, 400)
    assert_documented(api, response, 'POST', '/alerts/{alert_id}/ack')


def test_refused_tokens_are_documented(secured: Server, anonymous: httpx.Client) -> None:
    for headers, status in (({}, 401), ({'Authorization': 'Bearer wrong-token'}, 401)):
        response = anonymous.post('/eco', json={'eco_mode': True}, headers=headers)
        assert_client_error(response, status)
        assert_documented(anonymous, response, 'POST', '/eco')
    with secured.client() as admin:
        reader = admin.post('/tokens', json={'name': 'reader', 'role': 'read'}).json()['token']
    response = anonymous.post('/eco', json={'eco_mode': True}, headers={'Authorization': f'Bearer {reader}'})
    assert_client_error(response, 403, mentions='admin')
    assert_documented(anonymous, response, 'POST', '/eco')


@pytest.mark.parametrize(('method', 'path', 'allow'), [
    ('DELETE', '/health', 'GET'), ('GET', '/check', 'POST'), ('PUT', '/tasks/a/b', 'GET, PATCH'),
    ('POST', '/budget/summary', 'GET'), ('PATCH', '/alerts/1/ack', 'POST'), ('POST', '/prices', 'DELETE, GET, PUT'),
    ('OPTIONS', '/eco', 'GET, POST'), ('OPTIONS', '/policies/1', 'DELETE, GET, PATCH'),
    ('OPTIONS', '/sync/status', 'GET'), ('PUT', '/sync/litellm', 'POST')])
def test_a_wrong_method_on_a_known_path_is_405_with_allow(api: httpx.Client, method: str, path: str,
                                                          allow: str) -> None:
    """Found by schemathesis (allow_header_conformance): OPTIONS got Starlette's 405 naming one route's methods."""
    response = api.request(method, path)
    assert_client_error(response, 405, mentions=f'{method} is not allowed')
    assert response.headers['allow'] == allow


def test_head_is_405_with_allow(api: httpx.Client) -> None:
    response = api.head('/eco')
    assert (response.status_code, response.headers['allow']) == (405, 'GET, POST')
