"""Every kind of call over REST against real servers, one on SQLite and one on PostgreSQL: the units in the usage
schema, price overrides per image, per minute of audio and per call, and the budget check counting what was stored.
Expected costs come from published prices written here with their source."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.api import assert_client_error, check, record, uid, usage
from tests.support.openapi import assert_documented
from tests.support.servers import Server, start_server

# DALL-E 3 per image (openai.com/api/pricing); genai-prices has no per-image prices, so an override holds them
DALL_E_3_PRICES = [{'size': '1024x1024', 'quality': 'standard', 'usd': '0.04'},
                   {'size': '1024x1024', 'quality': 'hd', 'usd': '0.08'},
                   {'size': '1792x1024', 'quality': 'hd', 'usd': '0.12'},
                   {'size': '1024x1792', 'quality': 'hd', 'usd': '0.12'}]


@pytest.fixture
def kinds_server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    server = start_server(tmp_path, database_url, SPENDGAUGE_DAILY_LIMIT_USD='none')
    yield server
    server.stop()


def put_dall_e_3(api: httpx.Client, provider: str = 'openai') -> dict[str, Any]:
    response = api.put('/prices', json={'provider': provider, 'model': 'dall-e-3', 'input_usd_per_mtok': '0',
                                        'output_usd_per_mtok': '0', 'image_prices': DALL_E_3_PRICES})
    assert response.status_code == 200, response.text
    assert_documented(api, response, 'PUT', '/prices')
    return response.json()


def test_every_kind_is_priced_stored_and_counted(kinds_server: Server) -> None:
    agent = uid('agent')
    with kinds_server.client() as api:
        put_dall_e_3(api)
        # a house speech-to-text model: $0.0043 a minute of audio and $0.0001 a call
        listener = api.put('/prices', json={'provider': 'acme', 'model': 'listener', 'input_usd_per_mtok': '0',
                                            'output_usd_per_mtok': '0', 'audio_usd_per_minute': '0.0043',
                                            'request_usd': '0.0001'})
        assert listener.status_code == 200, listener.text
        calls: list[tuple[dict[str, Any], int]] = [
            # text-embedding-3-small: $0.02 per million input tokens (platform.openai.com/docs/pricing)
            ({'model': 'text-embedding-3-small', 'kind': 'embedding', 'input_tokens': 1_234_567}, 24_691),  # 24,691.34
            # gpt-image-1: $5 text input, $40 output per million tokens; 4,160 tokens for a 1024x1024 image
            ({'model': 'gpt-image-1', 'kind': 'image', 'input_tokens': 50, 'output_tokens': 4160,
              'image_output_tokens': 4160, 'images': {'count': 1, 'size': '1024x1024', 'quality': 'high'}}, 166_650),
            ({'model': 'dall-e-3', 'kind': 'image', 'images': {'count': 3, 'size': '1792x1024', 'quality': 'HD'}},
             360_000),
            # whisper-1: $0.006 a minute; 61.234 s
            ({'model': 'whisper-1', 'kind': 'audio_transcription', 'audio_seconds': '61.234'}, 6_123),  # 6,123.4
            ({'provider': 'acme', 'model': 'listener', 'kind': 'audio_transcription', 'audio_seconds': 95.5},
             6_944),  # 95.5 / 60 x 4,300 + 100 = 6,944.17
            # perplexity sonar (genai-prices' data): $1 in, $1 out per million tokens, $12 per thousand requests
            ({'provider': 'perplexity', 'model': 'sonar', 'input_tokens': 1_500, 'output_tokens': 700}, 14_200),
        ]
        events = [{'provider': 'openai', 'agent_id': agent, 'event_id': uid('ev'), **fields} for fields, _ in calls]
        bad = {'provider': 'openai', 'model': 'whisper-1', 'agent_id': agent, 'event_id': uid('bad'),
               'audio_seconds': -3}
        response = api.post('/usage/batch', json={'events': [*events[:3], bad, *events[3:]]})
        assert response.status_code == 200, response.text
        answer = response.json()
        assert (answer['stored'], answer['rejected']) == (len(calls), 1)
        rejected = answer['results'][3]
        assert (rejected['status'], rejected['event_id']) == ('rejected', bad['event_id'])
        assert 'audio_seconds' in rejected['reason']
        priced = [r for r in answer['results'] if r['status'] == 'stored']
        assert [(r['cost_source'], r['cost_micros']) for r in priced] == [('priced', cost) for _, cost in calls]

        stored = {e['event_id']: e for e in usage(api, agent_id=agent)}
        dall_e = stored[events[2]['event_id']]
        assert (dall_e['kind'], dall_e['units'], dall_e['cost_usd']) == \
            ('image', {'images': {'count': 3, 'size': '1792x1024', 'quality': 'hd'}}, '0.360000')
        assert stored[events[3]['event_id']]['units'] == {'audio_seconds': 61.234}
        assert stored[events[5]['event_id']]['kind'] is None

        total = sum(cost for _, cost in calls)
        assert api.post('/policies', json={'name': uid('cap'), 'scope': 'agent', 'scope_value': agent,
                                           'limit_usd': '1', 'action': 'block'}).status_code == 201
        assert check(api, agent_id=agent)['policies'][0]['spent_micros'] == total == 578_608


def test_image_prices_are_listed_and_price_the_unpriced_calls(api: httpx.Client) -> None:
    provider, agent = uid('studio'), uid('agent')
    first = record(api, 'dall-e-3', provider=provider, agent_id=agent, kind='image',
                   images={'count': 2, 'size': '1024x1024', 'quality': 'standard'})
    assert (first['cost_source'], first['cost_micros']) == ('unpriced', 0)
    stored = put_dall_e_3(api, provider)
    try:
        assert stored['repriced_events'] == 1
        assert stored['image_prices'][0] == {'size': '1024x1024', 'quality': 'hd', 'micros': 80_000,
                                             'usd': '0.080000'}
        assert {(p['size'], p['quality'], p['micros']) for p in stored['image_prices']} == {
            ('1024x1024', 'standard', 40_000), ('1024x1024', 'hd', 80_000), ('1792x1024', 'hd', 120_000),
            ('1024x1792', 'hd', 120_000)}
        assert (stored['request_micros'], stored['audio_usd_per_minute']) == (None, None)
        [listed] = [i for i in api.get('/prices').json()['items'] if i['provider'] == provider]
        assert listed['image_prices'] == stored['image_prices']
        [event] = usage(api, agent_id=agent)
        assert (event['cost_source'], event['cost_micros']) == ('priced', 80_000)  # two at $0.04
        missing = record(api, 'dall-e-3', provider=provider, images={'count': 1, 'size': '256x256'})
        assert (missing['cost_source'], missing['cost_micros']) == ('unpriced', 0)
    finally:
        assert api.delete('/prices', params={'provider': provider, 'model': 'dall-e-3'}).status_code == 200


BAD_OVERRIDES = {
    'negative image price': ({'image_prices': [{'size': '1024x1024', 'usd': '-0.01'}]}, 'image_prices.0.usd'),
    'image price without usd': ({'image_prices': [{'size': '1024x1024'}]}, 'image_prices.0.usd'),
    'odd image size': ({'image_prices': [{'size': '1024/1024', 'usd': '0.1'}]}, 'image_prices.0.size'),
    'the same image priced twice': ({'image_prices': [{'size': '1024x1024', 'usd': '0.1'},
                                                      {'size': '1024X1024', 'quality': '*', 'usd': '0.2'}]},
                                    'priced twice'),
    'too many image prices': ({'image_prices': [{'size': f'{i}x{i}', 'usd': '0.1'} for i in range(101)]},
                              'image_prices'),
    'negative audio price': ({'audio_usd_per_minute': '-1'}, 'audio_usd_per_minute'),
    'request fee too high': ({'request_usd': '1000.01'}, 'request_usd'),
}


@pytest.mark.parametrize(('change', 'field'), BAD_OVERRIDES.values(), ids=BAD_OVERRIDES.keys())
def test_bad_unit_prices_are_422(api: httpx.Client, change: dict[str, Any], field: str) -> None:
    body = {'provider': uid('acme'), 'model': uid('m'), 'input_usd_per_mtok': '1', 'output_usd_per_mtok': '1',
            **change}
    assert_client_error(api.put('/prices', json=body), 422, mentions=field)
    assert not [i for i in api.get('/prices').json()['items'] if i['provider'] == body['provider']]


@pytest.mark.parametrize(('fields', 'field'), [
    ({'audio_seconds': 'NaN'}, 'audio_seconds'),
    ({'images': {'count': 1, 'size': 'x' * 33}}, 'images.size'),
    ({'images': [1, 2]}, 'images'),
    ({'input_tokens': 5, 'image_input_tokens': 6}, 'image_input_tokens'),
    ({'kind': 'rerank'}, 'kind'),
], ids=['NaN seconds', 'long size', 'images not an object', 'image tokens above input', 'unknown kind'])
def test_a_bad_unit_is_a_4xx_naming_the_field(api: httpx.Client, fields: dict[str, Any], field: str) -> None:
    agent = uid('agent')
    assert_client_error(api.post('/usage', json={'model': 'whisper-1', 'agent_id': agent, **fields}), 422,
                        mentions=field)
    assert usage(api, agent_id=agent) == []
