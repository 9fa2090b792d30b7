"""Price overrides against a real server: PUT, GET, DELETE, and events priced by them."""
from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.api import assert_client_error, record, uid
from tests.support.openapi import assert_documented

TOKENS = {'input_tokens': 10_000, 'cache_read_tokens': 4_000, 'cache_write_tokens': 1_000, 'output_tokens': 2_000}


def listed(api: httpx.Client, provider: str, model: str) -> list[dict[str, Any]]:
    response = api.get('/prices')
    assert response.status_code == 200, response.text
    body = response.json()
    assert body['count'] == len(body['items'])
    return [i for i in body['items'] if (i['provider'], i['model']) == (provider, model)]


def test_override_prices_events_until_deleted(api: httpx.Client) -> None:
    provider, model = uid('acme'), uid('custom-model')
    response = api.put('/prices', json={'provider': provider.upper(), 'model': model, 'input_usd_per_mtok': '3',
                                        'output_usd_per_mtok': 15, 'cache_read_usd_per_mtok': '0.3',
                                        'cache_write_usd_per_mtok': '3.75'})
    assert response.status_code == 200, response.text
    stored = response.json()
    assert (stored['provider'], stored['model']) == (provider, model)  # the provider is kept in lower case
    assert (stored['input_micros_per_mtok'], stored['output_micros_per_mtok'], stored['cache_read_micros_per_mtok'],
            stored['cache_write_micros_per_mtok']) == (3_000_000, 15_000_000, 300_000, 3_750_000)
    assert (stored['input_usd_per_mtok'], stored['cache_write_usd_per_mtok']) == ('3.000000', '3.750000')
    assert stored.pop('repriced_events') == 0  # nothing of this model was stored as unpriced before
    assert listed(api, provider, model) == [stored]

    # 5,000 uncached * $3 + 4,000 cache reads * $0.30 + 1,000 cache writes * $3.75 + 2,000 output * $15, per
    # million tokens = 15,000 + 1,200 + 3,750 + 30,000 micro-USD
    priced = record(api, model, provider=provider.capitalize(), **TOKENS)
    assert (priced['provider'], priced['cost_source'], priced['cost_micros'], priced['cost_usd']) == \
        (provider, 'priced', 49_950, '0.049950')

    # replacing the override; cache rates left out default to the input rate
    response = api.put('/prices', json={'provider': provider, 'model': model, 'input_usd_per_mtok': '1',
                                        'output_usd_per_mtok': '2'})
    assert response.status_code == 200, response.text
    [again] = listed(api, provider, model)
    assert (again['input_micros_per_mtok'], again['cache_read_micros_per_mtok'], again['cache_write_usd_per_mtok']) \
        == (1_000_000, None, None)
    assert record(api, model, provider=provider, **TOKENS)['cost_micros'] == 10_000 + 4_000

    response = api.delete('/prices', params={'provider': provider, 'model': model})
    assert response.status_code == 200, response.text
    assert response.json() == {'deleted': True, 'provider': provider, 'model': model}
    assert listed(api, provider, model) == []
    after = record(api, model, provider=provider, **TOKENS)
    assert (after['cost_source'], after['cost_micros']) == ('unpriced', 0)

    assert_client_error(api.delete('/prices', params={'provider': provider, 'model': model}), 404, mentions=model)


def test_override_beats_genai_prices_for_a_known_model(api: httpx.Client) -> None:
    tokens = {'input_tokens': 1_000, 'output_tokens': 1_000}
    known = record(api, 'gpt-4-turbo', provider='openai', **tokens)
    assert known['cost_source'] == 'priced' and known['cost_micros'] > 0
    response = api.put('/prices', json={'provider': 'openai', 'model': 'gpt-4-turbo', 'input_usd_per_mtok': '0.1',
                                        'output_usd_per_mtok': '0.2'})
    assert response.status_code == 200, response.text
    try:
        assert record(api, 'gpt-4-turbo', provider='openai', **tokens)['cost_micros'] == 100 + 200
    finally:
        assert api.delete('/prices', params={'provider': 'openai', 'model': 'gpt-4-turbo'}).status_code == 200
    assert record(api, 'gpt-4-turbo', provider='openai', **tokens)['cost_micros'] == known['cost_micros']


def test_reported_cost_beats_an_override(api: httpx.Client) -> None:
    provider, model = uid('acme'), uid('custom-model')
    api.put('/prices', json={'provider': provider, 'model': model, 'input_usd_per_mtok': '1',
                             'output_usd_per_mtok': '1'})
    try:
        stored = record(api, model, provider=provider, input_tokens=10, cost_usd='0.75')
        assert (stored['cost_source'], stored['cost_micros']) == ('reported', 750_000)
    finally:
        api.delete('/prices', params={'provider': provider, 'model': model})


BAD_OVERRIDES = {
    'negative input': ({'input_usd_per_mtok': '-1'}, 'input_usd_per_mtok'),
    'negative cache read': ({'cache_read_usd_per_mtok': '-0.1'}, 'cache_read_usd_per_mtok'),
    'missing output': ({'output_usd_per_mtok': None}, 'output_usd_per_mtok'),
    'blank provider': ({'provider': '  '}, 'provider'),
    'missing model': ({'model': None}, 'model'),
    'not a number': ({'input_usd_per_mtok': 'cheap'}, 'input_usd_per_mtok'),
}


@pytest.mark.parametrize(('change', 'field'), BAD_OVERRIDES.values(), ids=BAD_OVERRIDES.keys())
def test_bad_override_is_422(api: httpx.Client, change: dict[str, Any], field: str) -> None:
    body = {'provider': uid('acme'), 'model': uid('m'), 'input_usd_per_mtok': '1', 'output_usd_per_mtok': '1'}
    body = {k: v for k, v in {**body, **change}.items() if v is not None}
    assert_client_error(api.put('/prices', json=body), 422, mentions=field)
    assert listed(api, str(body.get('provider', '')).strip(), str(body.get('model'))) == []


@pytest.mark.parametrize('params', [{}, {'provider': 'openai'}, {'provider': '', 'model': 'x'}],
                         ids=['none', 'no model', 'empty provider'])
def test_delete_without_provider_and_model_is_422(api: httpx.Client, params: dict[str, str]) -> None:
    assert_client_error(api.delete('/prices', params=params), 422)


def test_adding_a_price_prices_the_calls_already_stored_as_unpriced(api: httpx.Client) -> None:
    provider, model, agent = uid('acme'), uid('house-model'), uid('agent')
    first = record(api, model, provider=provider, agent_id=agent, input_tokens=2_000_000, output_tokens=1_000_000)
    assert (first['cost_source'], first['cost_micros']) == ('unpriced', 0)
    unpriced = api.get('/prices/unpriced').json()['items']
    assert [(i['provider'], i['model'], i['requests']) for i in unpriced if i['model'] == model] == \
        [(provider, model, 1)]

    response = api.put('/prices', json={'provider': provider, 'model': model, 'input_usd_per_mtok': '0.5',
                                        'output_usd_per_mtok': '2'})
    assert response.status_code == 200 and response.json()['repriced_events'] == 1
    assert [i for i in api.get('/prices/unpriced').json()['items'] if i['model'] == model] == []
    stored = api.get('/usage', params={'agent_id': agent}).json()['items']
    assert [(e['cost_source'], e['cost_micros']) for e in stored] == [('priced', 1_000_000 + 2_000_000)]
    agents = {a['id']: a for a in api.get('/agents').json()['items']}
    assert agents[agent]['total_cost_micros'] == 3_000_000


def test_deleting_a_missing_override_is_a_documented_404(api: httpx.Client) -> None:
    """Found by schemathesis: DELETE /prices answers 404 for a provider/model without an override."""
    response = api.delete('/prices', params={'provider': 'openai', 'model': uid('no-override')})
    assert_client_error(response, 404)
    assert_documented(api, response, 'DELETE', '/prices')
