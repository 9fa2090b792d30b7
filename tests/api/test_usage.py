"""POST /api/v1/usage and /api/v1/usage/batch against a real server: pricing, idempotency, validation."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import fresh_postgres_engine, postgres_url
from tests.support.api import (
    assert_client_error,
    assert_money,
    event,
    record,
    record_batch,
    same_period,
    summary,
    uid,
    usage,
)
from tests.support.openapi import assert_documented
from tests.support.servers import Server, start_server

# --- POST /usage ------------------------------------------------------------------------------------------------

def test_priced_event_is_stored_with_hand_computed_cost(api: httpx.Client) -> None:
    agent = uid('agent')
    body = event(provider='openai', agent_id=agent, input_tokens=1000, cache_read_tokens=200, output_tokens=500)
    response = api.post('/usage', json=body)
    assert response.status_code == 201, response.text
    stored = response.json()
    # 800 uncached * $2.50 + 200 cache reads * $1.25 + 500 output * $10.00, per million tokens = $0.00725
    assert stored['status'] == 'stored'
    assert stored['cost_micros'] == 7250
    assert stored['cost_usd'] == '0.007250'
    assert stored['cost_source'] == 'priced'
    assert isinstance(stored['id'], int)
    assert (stored['event_id'], stored['provider'], stored['model'], stored['agent_id']) == \
        (body['event_id'], 'openai', 'gpt-4o', agent)
    assert (stored['input_tokens'], stored['cache_read_tokens'], stored['cache_write_tokens'],
            stored['output_tokens']) == (1000, 200, 0, 500)
    assert stored['channel'] == 'direct'
    assert [e['id'] for e in usage(api, agent_id=agent)] == [stored['id']]


def test_provider_is_inferred_from_the_model(api: httpx.Client) -> None:
    stored = record(api, agent_id=uid('agent'), input_tokens=1000, output_tokens=500)
    assert stored['provider'] == 'openai'
    assert stored['cost_micros'] == 2500 + 5000  # 1000 * $2.50 + 500 * $10.00 per million tokens


def test_reported_cost_is_kept_as_is(api: httpx.Client) -> None:
    stored = record(api, agent_id=uid('agent'), input_tokens=1000, output_tokens=500, cost_usd='0.5')
    assert stored['cost_source'] == 'reported'
    assert_money(stored, 'cost', 500_000)


def test_reported_cost_rounds_half_even_to_micros(api: httpx.Client) -> None:
    assert record(api, cost_usd='0.0000015')['cost_micros'] == 2
    assert record(api, cost_usd='0.0000025')['cost_micros'] == 2
    assert record(api, cost_usd='0.0000004')['cost_micros'] == 0


def test_repeated_event_id_is_a_duplicate_counted_once(api: httpx.Client) -> None:
    before = summary(api)
    body = event(agent_id=uid('agent'), cost_usd='0.04', input_tokens=10)
    first = api.post('/usage', json=body)
    again = api.post('/usage', json={**body, 'cost_usd': '9'})  # same key, different content: the first wins
    after = summary(api)
    assert first.status_code == 201, first.text
    assert again.status_code == 200, again.text
    assert first.json()['status'] == 'stored'
    assert again.json()['status'] == 'duplicate'
    assert again.json()['id'] == first.json()['id']
    assert again.json()['cost_micros'] == 40_000
    same_period(before, after)
    assert after['spent_micros'] - before['spent_micros'] == 40_000
    assert after['requests'] - before['requests'] == 1
    assert len(usage(api, agent_id=body['agent_id'])) == 1


def test_unknown_model_is_unpriced_and_listed(api: httpx.Client) -> None:
    provider, model = uid('acme'), uid('no-such-model')
    first = record(api, provider=provider, model=model, input_tokens=100, output_tokens=10)
    record(api, provider=provider, model=model, input_tokens=5)
    assert first['cost_source'] == 'unpriced'
    assert_money(first, 'cost', 0)
    response = api.get('/prices/unpriced')
    assert response.status_code == 200, response.text
    listed = [i for i in response.json()['items'] if (i['provider'], i['model']) == (provider, model)]
    assert len(listed) == 1, response.json()
    assert listed[0]['requests'] == 2
    assert response.json()['count'] == len(response.json()['items'])


# --- bad input on POST /usage ---------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def recorded(server: Server) -> dict[str, Any]:
    """One good event; every bad request below carries the same agent id, so anything stored would show up."""
    with server.client() as client:
        return record(client, agent_id=uid('agent'), input_tokens=1000, output_tokens=500, cost_usd='0.25')


BAD_EVENTS = {
    'negative input_tokens': ({'model': 'gpt-4o', 'input_tokens': -1}, 'input_tokens'),
    'negative output_tokens': ({'model': 'gpt-4o', 'output_tokens': -5}, 'output_tokens'),
    'negative cache_read_tokens': ({'model': 'gpt-4o', 'input_tokens': 5, 'cache_read_tokens': -1},
                                   'cache_read_tokens'),
    'cache above input': ({'model': 'gpt-4o', 'input_tokens': 10, 'cache_read_tokens': 6, 'cache_write_tokens': 5},
                          'cache_read_tokens + cache_write_tokens'),
    'missing model': ({'input_tokens': 10}, 'model'),
    'blank model': ({'model': '   '}, 'model'),
    'null model': ({'model': None}, 'model'),
    'string input_tokens': ({'model': 'gpt-4o', 'input_tokens': 'many'}, 'input_tokens'),
    'fractional output_tokens': ({'model': 'gpt-4o', 'output_tokens': 1.5}, 'output_tokens'),
    'list for tags': ({'model': 'gpt-4o', 'tags': 'a,b'}, 'tags'),
    'channel proxy': ({'model': 'gpt-4o', 'channel': 'proxy'}, 'channel'),
    'unknown source': ({'model': 'gpt-4o', 'source': 'bogus'}, 'source'),
    'negative cost_usd': ({'model': 'gpt-4o', 'cost_usd': '-1'}, 'cost_usd'),
    'NaN cost_usd': ({'model': 'gpt-4o', 'cost_usd': 'NaN'}, 'cost_usd'),
    'garbage ts': ({'model': 'gpt-4o', 'ts': 'yesterday'}, 'ts'),
    'too many tokens': ({'model': 'gpt-4o', 'input_tokens': 10**13}, 'input_tokens'),
    'negative latency': ({'model': 'gpt-4o', 'latency_ms': -1}, 'latency_ms'),
}


@pytest.mark.parametrize(('body', 'field'), BAD_EVENTS.values(), ids=BAD_EVENTS.keys())
def test_bad_event_is_a_4xx_naming_the_field(api: httpx.Client, recorded: dict[str, Any], body: dict[str, Any],
                                             field: str) -> None:
    response = api.post('/usage', json={**body, 'agent_id': recorded['agent_id']})
    assert_client_error(response, 422, mentions=field)
    assert usage(api, agent_id=recorded['agent_id']) == [{k: v for k, v in recorded.items() if k != 'status'}]


ONE_OBJECT = 'send a JSON object, or use /api/v1/usage/batch for a list of events ({"events": [...]})'


@pytest.mark.parametrize(('content', 'mentions'), [
    (b'{"model": "gpt-4o", "input_tokens": ', 'not valid JSON'),
    (b'[{"model": "gpt-4o"}]', ONE_OBJECT),
    (b'"gpt-4o"', ONE_OBJECT),
], ids=['truncated JSON', 'a list', 'a string'])
def test_unusable_body_is_a_4xx(api: httpx.Client, recorded: dict[str, Any], content: bytes,
                                mentions: str) -> None:
    response = api.post('/usage', content=content, headers={'Content-Type': 'application/json'})
    assert_client_error(response, (400, 422), mentions=mentions)
    assert len(usage(api, agent_id=recorded['agent_id'])) == 1


def test_a_form_body_is_refused_with_how_to_send_usage(api: httpx.Client, recorded: dict[str, Any]) -> None:
    response = api.post('/usage', data={'model': 'gpt-4o', 'agent_id': recorded['agent_id'], 'input_tokens': '5'})
    assert_client_error(response, 415, mentions=ONE_OBJECT)
    assert response.json()['detail'].startswith('writes take a JSON body: Content-Type: application/json; ')
    assert len(usage(api, agent_id=recorded['agent_id'])) == 1


def test_a_list_sent_to_another_route_is_told_to_send_an_object(api: httpx.Client) -> None:
    response = api.post('/eco', json=[{'eco_mode': True}])
    assert_client_error(response, 422, mentions='send a JSON object')
    assert 'usage/batch' not in response.json()['detail']


def test_ts_out_of_range_is_a_4xx(api: httpx.Client) -> None:
    response = api.post('/usage', json={'model': 'gpt-4o', 'ts': '0001-01-01T00:00:00+05:00'})
    assert_client_error(response, 422, mentions='ts')


# --- POST /usage/batch ------------------------------------------------------------------------------------------

def test_batch_reports_each_item_and_stores_the_valid_ones(api: httpx.Client) -> None:
    agent = uid('agent')
    earlier = record(api, agent_id=agent, cost_usd='0.01')
    a, b = event(agent_id=agent, cost_usd='0.25'), event(agent_id=agent, cost_usd='0.125', channel='litellm')
    bad_output = event(agent_id=agent, output_tokens=-3)
    before = summary(api)
    result = record_batch(api, [
        a,
        bad_output,
        {**a, 'cost_usd': '7'},  # repeated inside the batch
        {'agent_id': agent, 'input_tokens': 3},  # no model
        b,
        event(agent_id=agent, input_tokens=1, cache_write_tokens=2),
        {'model': 'gpt-4o', 'event_id': earlier['event_id'], 'agent_id': agent},  # recorded before the batch
        'not an event',
    ])
    after = summary(api)
    assert (result['stored'], result['duplicate'], result['rejected']) == (2, 2, 4), result
    items = result['results']
    assert [i['index'] for i in items] == list(range(8))
    assert [i['status'] for i in items] == ['stored', 'rejected', 'duplicate', 'rejected', 'stored', 'rejected',
                                            'duplicate', 'rejected']
    assert 'output_tokens' in items[1]['reason'] and items[1]['event_id'] == bad_output['event_id']
    assert 'model' in items[3]['reason']
    assert 'cache_read_tokens + cache_write_tokens' in items[5]['reason']
    assert items[7]['reason']
    assert items[2]['id'] == items[0]['id'] and items[2]['cost_micros'] == 250_000
    assert items[6]['id'] == earlier['id'] and items[6]['cost_micros'] == 10_000
    assert (items[0]['cost_source'], items[0]['cost_usd']) == ('reported', '0.250000')
    assert (items[4]['cost_micros'], items[4]['cost_usd']) == (125_000, '0.125000')
    stored = {e['event_id']: e for e in usage(api, agent_id=agent)}
    assert set(stored) == {earlier['event_id'], a['event_id'], b['event_id']}
    assert stored[a['event_id']]['cost_micros'] == 250_000
    same_period(before, after)
    assert after['spent_micros'] - before['spent_micros'] == 375_000
    assert after['requests'] - before['requests'] == 2
    assert after['by_channel']['litellm']['spent_micros'] - before['by_channel']['litellm']['spent_micros'] == 125_000


def test_batch_of_only_rejected_events(api: httpx.Client) -> None:
    result = record_batch(api, [{'input_tokens': 1}, {'model': 'gpt-4o', 'input_tokens': -1}])
    assert (result['stored'], result['duplicate'], result['rejected']) == (0, 0, 2)
    assert all(r['status'] == 'rejected' and r['reason'] for r in result['results'])


def test_empty_batch(api: httpx.Client) -> None:
    assert record_batch(api, []) == {'stored': 0, 'duplicate': 0, 'rejected': 0, 'results': []}


def test_batch_over_10000_events_is_413(api: httpx.Client) -> None:
    agent = uid('agent')
    response = api.post('/usage/batch', json={'events': [{'model': 'gpt-4o', 'agent_id': agent}] * 10_001})
    detail = assert_client_error(response, 413, mentions='10000')
    assert 'events' in detail
    assert usage(api, agent_id=agent) == []


@pytest.mark.parametrize('content', [b'{"events": [', b'not json at all', b''], ids=['truncated', 'text', 'empty'])
def test_batch_body_not_json_is_400(api: httpx.Client, content: bytes) -> None:
    response = api.post('/usage/batch', content=content, headers={'Content-Type': 'application/json'})
    assert_client_error(response, 400, mentions='JSON')


@pytest.mark.parametrize('body', [{}, {'event': []}, {'events': None}, {'events': {'model': 'gpt-4o'}}, [1, 2]],
                         ids=['empty', 'misspelt', 'null', 'object', 'list'])
def test_batch_without_events_list_is_422(api: httpx.Client, body: Any) -> None:
    assert_client_error(api.post('/usage/batch', json=body), 422, mentions='events')


def test_batch_item_with_ts_out_of_range_is_rejected_alone(api: httpx.Client) -> None:
    agent = uid('agent')
    response = api.post('/usage/batch', json={'events': [
        event(agent_id=agent, ts='0001-01-01T00:00:00+05:00'), event(agent_id=agent, cost_usd='0.01')]})
    assert response.status_code == 200, response.text
    assert [r['status'] for r in response.json()['results']] == ['rejected', 'stored']
    assert 'ts' in response.json()['results'][0]['reason']
    assert len(usage(api, agent_id=agent)) == 1


@pytest.mark.parametrize('path', ['/usage', '/usage/batch'])
def test_refused_bodies_are_documented(api: httpx.Client, path: str) -> None:
    """Found by schemathesis: the batch's 400 for a body that is not JSON, and every 422's shape (`detail` a string,
    not FastAPI's default list), were not what /openapi.json said."""
    for content in (b'{not json', b'', b'[]'):
        response = api.post(path, content=content, headers={'Content-Type': 'application/json'})
        assert_client_error(response, (400, 422))
        assert_documented(api, response, 'POST', path)


def test_metadata_integer_beyond_64_bits_is_a_4xx_on_postgresql(tmp_path: Path) -> None:
    """Found by schemathesis on PostgreSQL: an integer in metadata beyond 64 bits reached orjson in the JSONB adapter
    and raised (a 500); stored input is now bounded (services/core/inputs.py)."""
    url = postgres_url()
    fresh_postgres_engine(url).dispose()
    srv = start_server(tmp_path, database_url=url)
    try:
        with srv.client() as client:
            response = client.post('/usage', json={'model': 'gpt-4o', 'metadata': {'n': 2**115}})
            assert_client_error(response, 422, mentions='metadata')
    finally:
        srv.stop()
