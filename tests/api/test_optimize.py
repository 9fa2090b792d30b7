"""GET /api/v1/optimize over HTTP on a real server with API tokens and substitutes configured: a reader may read, a
stranger may not, bad parameters get a 4xx with a message, and the answer re-prices the recorded calls."""
from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.support.api import assert_client_error
from tests.support.servers import Server, start_server

ADMIN = 'optimise-admin-token-0123456789'
DAY = '2025-06-10'
CALLS = [  # input, output, cache read: whole micro-USD on gpt-4o and gpt-4o-mini
    (12_000, 800, 4_000), (3_000, 250, 0), (40_000, 1_500, 20_000)]


@pytest.fixture(scope='module')
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp('optimize'), token=ADMIN,
                       SPENDGAUGE_OPTIMIZE_SUBSTITUTES='openai:gpt-4o-mini, anthropic:claude-3-5-haiku-latest')
    events = [{'event_id': f'{agent}-{n}', 'agent_id': agent, 'provider': 'openai', 'model': model,
               'ts': f'{DAY}T1{n}:00:00+00:00', 'input_tokens': i, 'output_tokens': o, 'cache_read_tokens': c}
              for agent, model in (('planner', 'gpt-4o'), ('twin', 'gpt-4o-mini'))
              for n, (i, o, c) in enumerate(CALLS)]
    with srv.client() as client:
        assert client.post('/usage/batch', json={'events': events}).json()['stored'] == len(events)
    yield srv
    srv.stop()


@pytest.fixture(scope='module')
def reader(server: Server) -> Iterator[httpx.Client]:
    with server.client() as admin:
        response = admin.post('/tokens', json={'name': 'optimise-reader', 'role': 'read'})
        assert response.status_code == 201, response.text
    with server.client(response.json()['token']) as client:
        yield client


def test_a_reader_gets_the_calls_repriced_on_the_substitutes(reader: httpx.Client) -> None:
    response = reader.get('/optimize', params={'from': DAY, 'to': DAY})
    assert response.status_code == 200, response.text
    out = response.json()
    assert 'cost only' in out['note'].lower() and out['period'] == 'custom' and out['observed_days'] == 1.0
    by_agent = {a['agent_id']: a for a in out['agents']}
    [planner], [twin] = by_agent['planner']['models'], by_agent['twin']['models']
    mini = next(c for c in planner['candidates'] if c['model'] == 'gpt-4o-mini')
    assert mini['cost_micros'] == twin['actual_cost_micros']  # what ingest charged the same calls on gpt-4o-mini
    assert mini['cost_usd'] == f'{Decimal(twin["actual_cost_micros"]) / 10**6:.6f}'
    assert mini['saving_per_day_micros'] == mini['saving_micros'] and mini['fit_sample'] == 3
    haiku = next(c for c in planner['candidates'] if c['model'] == 'claude-3-5-haiku-latest')
    assert (haiku['provider'], haiku['kind']) == ('anthropic', 'substitute')
    assert out['sample']['calls'] == 6 and out['sample']['complete']
    only = reader.get('/optimize', params={'from': DAY, 'to': DAY, 'agent_id': 'twin'}).json()
    assert [a['agent_id'] for a in only['agents']] == ['twin'] and only['sample']['calls'] == 3


def test_a_stranger_gets_401(server: Server) -> None:
    with server.client('not-a-token') as stranger:
        assert stranger.get('/optimize').status_code == 401
    with httpx.Client(base_url=server.api) as anonymous:
        assert anonymous.get('/optimize', params={'period': 'week'}).status_code == 401


@pytest.mark.parametrize(('params', 'status', 'mentions'), [
    ({'period': 'year'}, 422, 'period'),
    ({'from': DAY}, (400, 422), 'from and to'),
    ({'from': '2025-06-12', 'to': DAY}, (400, 422), 'after'),
    ({'from': 'yesterday', 'to': DAY}, (400, 422), 'from'),
    ({'from': '1990-01-01', 'to': DAY}, (400, 422), 'from'),
    ({'agent_id': ''}, 422, 'agent_id'),
    ({'agent_id': 'x' * 201}, 422, 'agent_id'),
])
def test_bad_parameters_get_a_message(reader: httpx.Client, params: dict[str, str], status: int | tuple[int, ...],
                                      mentions: str) -> None:
    assert_client_error(reader.get('/optimize', params=params), status, mentions=mentions)


def test_unknown_substitutes_stop_the_start(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match='server exited with 2') as failed:
        start_server(tmp_path, timeout=30, SPENDGAUGE_OPTIMIZE_SUBSTITUTES='openai:gpt-no-such-model')
    assert str(failed.value).strip().endswith('spendgauge: SPENDGAUGE_OPTIMIZE_SUBSTITUTES: no price known for '
                                              'openai:gpt-no-such-model (give a provider:model that genai-prices '
                                              'lists)')
    assert 'Traceback' not in str(failed.value)
