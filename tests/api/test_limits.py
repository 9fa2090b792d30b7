"""Input that cannot hurt: body size limits answered before authentication, and characters no database can store
refused with a 4xx on every route (path, query and body), against real server processes."""
from __future__ import annotations

import json
import re
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from app.api.limits import BATCH_BODY_BYTES, MIB
from services.core.inputs import MAX_METADATA_BYTES
from tests.conftest import fresh_postgres_engine, postgres_url
from tests.support.servers import Server, start_server

TOKEN = 'limits-token'


@pytest.fixture(scope='module')
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that wants a token, with the default body limit."""
    server = start_server(tmp_path_factory.mktemp('limits'), token=TOKEN)
    yield server
    server.stop()
    assert 'Traceback' not in server.log()


def realistic_event(i: int) -> dict[str, Any]:
    """What the LiteLLM callback sends for one call (about 830 bytes as JSON)."""
    return {'event_id': f'chatcmpl-{uuid.uuid4().hex}{i:08d}', 'ts': '2026-05-01T12:34:56.123456+00:00',
            'provider': 'anthropic', 'model': 'claude-3-5-sonnet-20241022', 'channel': 'litellm',
            'source': 'litellm_callback', 'input_tokens': 12345, 'output_tokens': 678, 'cache_read_tokens': 1000,
            'cache_write_tokens': 200, 'latency_ms': 2345, 'cost_usd': '0.012345',
            'metadata': {'call_type': 'acompletion', 'model_group': 'claude-sonnet', 'response_id': f'msg_{i}',
                         'trace_id': str(uuid.uuid4()), 'cache_hit': False, 'key_alias': 'team-research-key',
                         'team': 'research'},
            'agent_id': 'researcher-07', 'session_id': f'sess-{uuid.uuid4()}', 'task_id': 'T-12345',
            'user_id': 'alice@example.com', 'project': 'market-analysis', 'tags': ['nightly', 'batch', 'prod']}


def chunks(total: int, size: int = MIB) -> Iterator[bytes]:
    for _ in range(total // size):
        yield b' ' * size


# --- body size ----------------------------------------------------------------------------------------------------

def test_a_declared_length_over_the_limit_is_413_before_the_token_is_checked(guarded: Server) -> None:
    body = b'{"model": "m"}' + b' ' * (8 * MIB)
    for path in ('/usage', '/check', '/policies'):
        answer = httpx.post(guarded.api + path, content=body, headers={'Content-Type': 'application/json'})
        assert answer.status_code == 413, answer.text
        assert answer.json() == {'detail': 'the request body is larger than 8 MiB'}
    # under the limit, the missing token is what counts
    assert httpx.post(guarded.api + '/usage', json={'model': 'm'}).status_code == 401


def test_a_chunked_body_over_the_limit_is_413_before_the_token_is_checked(guarded: Server) -> None:
    answer = httpx.post(guarded.api + '/check', content=chunks(20 * MIB))  # a generator: chunked, no length
    assert answer.status_code == 413, answer.text
    assert 'larger than 8 MiB' in answer.json()['detail']
    with guarded.client() as api:
        spaces = api.post('/check', content=chunks(2 * MIB), headers={'Content-Type': 'application/json'})
        assert spaces.status_code == 422  # read whole (under the limit), and not JSON
        assert api.post('/check', json={}).status_code == 200


def test_the_batch_takes_ten_thousand_realistic_events(guarded: Server) -> None:
    events = [realistic_event(i) for i in range(10_000)]
    body = json.dumps({'events': events}).encode()
    # about 7.7 MiB: at the general limit already (pretty-printed, or with a little more metadata, beyond it); the
    # batch has its own, four times larger
    assert 7 * MIB < len(body) < BATCH_BODY_BYTES
    with guarded.client() as api:
        answer = api.post('/usage/batch', content=body, headers={'Content-Type': 'application/json'})
        assert answer.status_code == 200, answer.text[:300]
        assert answer.json()['stored'] == 10_000
        too_big = api.post('/usage/batch', content=b' ' * (BATCH_BODY_BYTES + 1),
                           headers={'Content-Type': 'application/json'})
        assert too_big.status_code == 413 and 'larger than 32 MiB' in too_big.json()['detail']


def test_the_limit_is_a_setting(tmp_path: Path) -> None:
    server = start_server(tmp_path, SPENDGAUGE_MAX_BODY_MB='1')
    try:
        with server.client() as api:
            big = api.post('/usage', json={'model': 'm', 'metadata': {'x': 'y' * (2 * MIB)}})
            assert big.status_code == 413 and big.json()['detail'] == 'the request body is larger than 1 MiB'
            assert api.post('/usage', json={'model': 'gpt-4o'}).status_code == 201
    finally:
        server.stop()


def test_a_body_longer_than_its_content_length_goes_no_further(guarded: Server) -> None:
    """The server reads what Content-Length declares; the rest is not a request."""
    host, port = urlsplit(guarded.url).hostname, urlsplit(guarded.url).port
    assert host is not None and port is not None
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b'POST /api/v1/check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
                     b'Authorization: Bearer ' + TOKEN.encode() + b'\r\nContent-Length: 2\r\n\r\n{}'
                     + b'garbage' * 1000)
        reply = sock.recv(65536)
    # the declared two bytes are the request; what follows is refused as a request of its own, never read as body
    assert reply.startswith((b'HTTP/1.1 200', b'HTTP/1.1 400')), reply[:200]
    assert httpx.get(guarded.api + '/health').status_code == 200


# --- what cannot be stored ----------------------------------------------------------------------------------------

def test_usage_events_that_cannot_be_stored_are_rejected_one_by_one(database_url: str, tmp_path: Path) -> None:
    server = start_server(tmp_path, database_url)
    good = {'model': 'gpt-4o', 'provider': 'openai', 'input_tokens': 10}
    deep: dict[str, Any] = {'leaf': 1}
    for _ in range(8):
        deep = {'level': deep}
    bad: list[tuple[dict[str, Any], str]] = [
           ({'metadata': {'a': 'x\x00y'}}, 'metadata.a: contains a NUL character'),
           ({'metadata': {'k\x00': 1}}, 'a key contains a NUL character'),
           ({'metadata': {'big': 2**70}}, 'metadata.big: is an integer beyond 64 bits'),
           ({'metadata': {'small': -(2**70)}}, 'integer beyond 64 bits'),
           ({'metadata': deep}, 'nested deeper than 8 levels'),
           ({'metadata': {'x': 'y' * MAX_METADATA_BYTES}}, 'at most 16,384 are kept'),
           ({'agent_id': 'a\x00'}, 'agent_id: contains a NUL character'),
           ({'tags': ['ok', 't\x00']}, 'tags.1: contains a NUL character'),
           ({'model': 'm' * 201}, 'model: String should have at most 200 characters')]
    events = [good, *({**good, **change} for change, _ in bad), good]
    text = json.dumps({'events': events})
    # one more, with a lone surrogate: valid JSON, not valid Unicode (only the raw text can carry it)
    text = text[:-2] + ', {"model": "gpt-4o", "metadata": {"s": "\\ud800"}}]}'
    try:
        with server.client() as api:
            answer = api.post('/usage/batch', content=text, headers={'Content-Type': 'application/json'})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert (body['stored'], body['rejected']) == (2, len(bad) + 1)
            reasons = [r['reason'] for r in body['results'] if r['status'] == 'rejected']
            for (_, expected), reason in zip(bad, reasons, strict=False):
                assert expected in reason, (expected, reason)
            assert 'lone surrogate' in reasons[-1]
            for change, expected in bad:
                single = api.post('/usage', json={**good, **change})
                assert single.status_code == 422 and expected in single.json()['detail'], single.text
            single = api.post('/usage', content='{"model": "gpt-4o", "metadata": {"s": "\\udfff"}}',
                              headers={'Content-Type': 'application/json'})
            assert single.status_code == 422 and 'lone surrogate' in single.json()['detail']
            fine = api.post('/usage', json={**good, 'metadata': {'nested': {'list': [1, 2.5, None, True, 'é☃']},
                                                                 'max': 2**64 - 1, 'min': -(2**63)}})
            assert fine.status_code == 201, fine.text
            assert api.get('/usage').json()['count'] == 3
    finally:
        server.stop()
    assert 'Traceback' not in server.log()


@pytest.fixture(scope='module')
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    url = postgres_url()
    fresh_postgres_engine(url).dispose()
    server = start_server(tmp_path_factory.mktemp('nul'), url)
    yield server
    server.stop()


BAD_TEXT = ['\x00', 'a\x00b']


def _routes(server: Server) -> list[tuple[str, str, dict[str, Any]]]:
    spec = httpx.get(server.url + '/openapi.json').json()
    return [(method.upper(), path, operation) for path, methods in spec['paths'].items()
            for method, operation in methods.items() if path.startswith('/api/v1/')]


def _fill(path: str, value: str) -> str:
    return re.sub(r'\{[^}]+\}', value, path)


def test_nul_characters_are_a_4xx_on_every_route(postgres_server: Server) -> None:
    """On PostgreSQL, which refuses NUL in text and jsonb: in every path parameter, query parameter and body field."""
    routes = _routes(postgres_server)
    assert len(routes) > 30
    checked = 0
    with httpx.Client(base_url=postgres_server.url, timeout=30) as client:
        for method, path, operation in routes:
            params = operation.get('parameters', [])
            valid_path = _fill(path, '1')
            if '{' in path:
                answer = client.request(method, _fill(path, 'a%00b'))
                assert 400 <= answer.status_code < 500, (method, path, answer.status_code, answer.text)
                checked += 1
            for param in params:
                if param['in'] == 'query':
                    answer = client.request(method, valid_path, params={param['name']: 'x\x00'})
                    assert 400 <= answer.status_code < 500, (method, path, param['name'], answer.text)
                    checked += 1
            body = operation.get('requestBody', {}).get('content', {}).get('application/json')
            if body is None:
                continue
            fields = _properties(body['schema'], postgres_server)
            for name in fields or ['anything']:
                for text in (f'{{"{name}": "a\\u0000"}}', f'{{"{name}": "\\ud800"}}', f'{{"{name}": ["\\u0000"]}}'):
                    answer = client.request(method, valid_path, content=text,
                                            headers={'Content-Type': 'application/json'})
                    assert _refused(path, answer), (method, path, text, answer.status_code, answer.text)
                    checked += 1
    assert checked > 100
    assert 'Traceback' not in postgres_server.log()


def _refused(path: str, answer: httpx.Response) -> bool:
    """A 4xx; for the batch, each event is refused on its own in a 200 answer."""
    if path == '/api/v1/usage/batch' and answer.status_code == 200:
        return answer.json()['stored'] == 0 and answer.json()['rejected'] > 0
    return 400 <= answer.status_code < 500


def _properties(schema: dict[str, Any], server: Server) -> list[str]:
    if '$ref' in schema:
        spec = httpx.get(server.url + '/openapi.json').json()
        schema = spec['components']['schemas'][schema['$ref'].rsplit('/', 1)[1]]
    return list(schema.get('properties', {}))


def test_nul_in_the_path_or_query_of_a_page_is_refused_too(postgres_server: Server) -> None:
    assert httpx.get(postgres_server.url + '/sessions?x=%00').status_code == 422
    assert httpx.get(postgres_server.url + '/%00').status_code == 422
