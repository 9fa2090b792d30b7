"""GET /api/v1/usage against a real server: filters, time range and cursor pagination."""
from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.support.api import assert_client_error, at, event, iso, own_day, record_batch, uid, usage
from tests.support.servers import Server


@pytest.fixture(scope='module')
def recorded(server: Server) -> dict[str, Any]:
    """Six events of one agent on a day of their own, across two sessions, providers, models and tasks."""
    agent, s1, s2, t1, t2 = uid('agent'), uid('session'), uid('session'), uid('task'), uid('task')
    day = own_day()
    specs = [  # (hour, session, task, provider, model, channel)
        (1, s1, t1, 'openai', 'gpt-4o', 'direct'),
        (2, s1, t1, 'openai', 'gpt-4o-mini', 'litellm'),
        (3, s1, t2, 'anthropic', 'claude-3-5-sonnet', 'direct'),
        (4, s2, t2, 'openai', 'gpt-4o', 'direct'),
        (5, s2, None, 'anthropic', 'claude-3-5-sonnet', 'litellm'),
        (6, s2, None, 'openai', 'gpt-4o', 'direct'),
    ]
    events = [event(model, agent_id=agent, session_id=session, task_id=task, provider=provider, channel=channel,
                    ts=at(day, hour), cost_usd='0.01', input_tokens=10)
              for hour, session, task, provider, model, channel in specs]
    with server.client() as client:
        result = record_batch(client, events)
    assert result['stored'] == 6, result
    ids = {e['event_id']: r['id'] for e, r in zip(events, result['results'], strict=True)}
    return {'agent': agent, 's1': s1, 's2': s2, 't1': t1, 't2': t2, 'day': day, 'events': events, 'ids': ids}


def hours(items: list[dict[str, Any]]) -> list[int]:
    """The hour of each listed event: the order and the selection in one comparable value."""
    return [int(item['ts'][11:13]) for item in items]


@pytest.mark.parametrize(('filters', 'expected'), [
    ({}, [6, 5, 4, 3, 2, 1]),
    ({'session_id': 's1'}, [3, 2, 1]),
    ({'session_id': 's2'}, [6, 5, 4]),
    ({'provider': 'anthropic'}, [5, 3]),
    ({'model': 'gpt-4o'}, [6, 4, 1]),
    ({'model': 'gpt-4o-mini'}, [2]),
    ({'task_id': 't1'}, [2, 1]),
    ({'task_id': 't2'}, [4, 3]),
    ({'channel': 'litellm'}, [5, 2]),
    ({'provider': 'openai', 'session_id': 's2'}, [6, 4]),
    ({'model': 'no-such-model'}, []),
], ids=lambda v: str(v))
def test_filters(api: httpx.Client, recorded: dict[str, Any], filters: dict[str, str], expected: list[int]) -> None:
    params = {k: recorded.get(v, v) for k, v in filters.items()}  # 's1' -> that session's id
    response = api.get('/usage', params={'agent_id': recorded['agent'], **params})
    assert response.status_code == 200, response.text
    body = response.json()
    assert hours(body['items']) == expected
    assert body['count'] == len(expected)
    assert body['next_cursor'] is None
    for item in body['items']:
        assert item['agent_id'] == recorded['agent']
        assert all(item[k] == v for k, v in params.items())
        assert (item['cost_micros'], item['cost_usd'], item['cost_source']) == (10_000, '0.010000', 'reported')


def test_from_is_inclusive_and_to_exclusive(api: httpx.Client, recorded: dict[str, Any]) -> None:
    day = recorded['day']
    params = {'agent_id': recorded['agent'], 'from': iso(at(day, 2)), 'to': iso(at(day, 5))}
    assert hours(usage(api, **params)) == [4, 3, 2]
    shifted = {**params, 'from': iso(at(day, 2) + timedelta(microseconds=1))}
    assert hours(usage(api, **shifted)) == [4, 3]


def test_from_and_to_in_another_time_zone(api: httpx.Client, recorded: dict[str, Any]) -> None:
    day = recorded['day']
    params = {'agent_id': recorded['agent'], 'from': f'{day}T07:30:00+05:00', 'to': f'{day}T06:00:00+02:00'}
    assert hours(usage(api, **params)) == [3]  # 02:30 to 04:00 UTC


def test_bad_from_is_422(api: httpx.Client) -> None:
    assert_client_error(api.get('/usage', params={'from': 'last tuesday'}), 422, mentions='from')


def test_pages_of_two_give_every_event_once_newest_first(api: httpx.Client) -> None:
    agent, day = uid('agent'), own_day()
    # three events share one ts: the order among them is by id, and no page boundary may lose or repeat one
    stamps = [at(day, 9), at(day, 10), at(day, 10), at(day, 10), at(day, 11)]
    result = record_batch(api, [event(agent_id=agent, ts=ts, cost_usd='0.001') for ts in stamps])
    ids = [r['id'] for r in result['results']]
    expected = [pk for _, pk in sorted(zip(stamps, ids, strict=True), reverse=True)]  # ts, then id, descending
    seen: list[int] = []
    pages: list[int] = []
    cursor = None
    for _ in range(10):
        params: dict[str, str | int] = {'agent_id': agent, 'limit': 2, **({'cursor': cursor} if cursor else {})}
        response = api.get('/usage', params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert page['count'] == len(page['items'])
        pages.append(page['count'])
        seen += [item['id'] for item in page['items']]
        cursor = page['next_cursor']
        if cursor is None:
            break
    assert seen == expected
    assert pages == [2, 2, 1]


def test_exactly_full_last_page_has_no_cursor(api: httpx.Client) -> None:
    agent, day = uid('agent'), own_day()
    record_batch(api, [event(agent_id=agent, ts=at(day, h)) for h in (1, 2, 3, 4)])
    first = api.get('/usage', params={'agent_id': agent, 'limit': 2}).json()
    second = api.get('/usage', params={'agent_id': agent, 'limit': 2, 'cursor': first['next_cursor']}).json()
    assert hours(first['items']) + hours(second['items']) == [4, 3, 2, 1]
    assert second['next_cursor'] is None


@pytest.mark.parametrize('cursor', ['garbage!!', 'Zm9v', base64.urlsafe_b64encode(b'yesterday|7').decode(),
                                    base64.urlsafe_b64encode(b'2024-01-01T00:00:00|seven').decode()],
                         ids=['not base64', 'no separator', 'bad ts', 'bad id'])
def test_garbage_cursor_is_422(api: httpx.Client, cursor: str) -> None:
    assert_client_error(api.get('/usage', params={'cursor': cursor}), 422, mentions='cursor')


@pytest.mark.parametrize('limit', [0, 1001, 'ten'])
def test_bad_limit_is_422(api: httpx.Client, limit: Any) -> None:
    assert_client_error(api.get('/usage', params={'limit': limit}), 422, mentions='limit')


def test_cursor_with_huge_id_is_422(api: httpx.Client) -> None:
    cursor = base64.urlsafe_b64encode(b'2024-01-01T00:00:00+00:00|99999999999999999999999999').decode().rstrip('=')
    assert_client_error(api.get('/usage', params={'cursor': cursor}), 422, mentions='cursor')


@pytest.mark.parametrize('params', [{'from': '0001-01-01T00:00:00+05:00'}, {'to': '9999-12-31T23:59:59-05:00'}],
                         ids=['from', 'to'])
def test_extreme_from_to_is_not_a_500(api: httpx.Client, params: dict[str, str]) -> None:
    response = api.get('/usage', params={**params, 'agent_id': uid('agent')})
    assert response.status_code in (200, 422), f'{response.status_code}: {response.text}'


@pytest.fixture(scope='module')
def tagged(server: Server) -> dict[str, Any]:
    """Five events of one agent: tags eval, prod, both, none, eval; the second and fourth with a reported cost."""
    agent, day = uid('agent'), own_day()
    tags = [['eval'], ['prod'], ['eval', 'prod'], [], ['eval']]
    events = [event('gpt-4o', agent_id=agent, ts=at(day, hour + 1), tags=tag, input_tokens=10,
                    **({'cost_usd': '0.25'} if hour in (1, 3) else {}))
              for hour, tag in enumerate(tags)]
    with server.client() as client:
        assert record_batch(client, events)['stored'] == 5
    return {'agent': agent}


@pytest.mark.parametrize(('filters', 'expected'), [
    ({'tag': 'eval'}, [5, 3, 1]),
    ({'tag': 'prod', 'cost_source': 'reported'}, [2]),
    ({'cost_source': 'priced'}, [5, 3, 1]),
], ids=str)
def test_tag_and_cost_source_filters(api: httpx.Client, tagged: dict[str, Any], filters: dict[str, str],
                                     expected: list[int]) -> None:
    response = api.get('/usage', params={'agent_id': tagged['agent'], **filters})
    assert response.status_code == 200, response.text
    assert hours(response.json()['items']) == expected


def test_export_streams_the_filtered_set(api: httpx.Client, tagged: dict[str, Any]) -> None:
    response = api.get('/usage/export', params={'agent_id': tagged['agent'], 'tag': 'eval'})
    assert response.status_code == 200, response.text
    assert response.headers['content-type'].startswith('text/csv')
    assert 'filename="usage.csv"' in response.headers['content-disposition']
    lines = response.text.splitlines()
    assert lines[0].startswith('id,event_id,ts,') and len(lines) == 4
    jsonl = api.get('/usage/export', params={'agent_id': tagged['agent'], 'format': 'jsonl', 'limit': '2'})
    assert jsonl.status_code == 200 and jsonl.headers['content-type'].startswith('application/x-ndjson')
    assert [int(json.loads(line)['ts'][11:13]) for line in jsonl.text.splitlines()] == [5, 4]


@pytest.mark.parametrize('params', [{'format': 'xlsx'}, {'cost_source': 'free'}, {'channel': 'pigeon'},
                                    {'limit': '0'}], ids=str)
def test_a_bad_export_is_a_clear_4xx(api: httpx.Client, params: dict[str, str]) -> None:
    assert_client_error(api.get('/usage/export', params=params), (400, 422))


def test_a_period_is_the_one_containing_now(api: httpx.Client) -> None:
    agent = uid('agent')
    now = datetime.now(UTC)
    long_ago = (now - timedelta(days=40)).isoformat()
    with_period = record_batch(api, [event('gpt-4o', agent_id=agent, cost_usd='0.01', ts=now.isoformat()),
                                     event('gpt-4o', agent_id=agent, cost_usd='0.01', ts=long_ago)])
    assert with_period['stored'] == 2
    for period in ('day', 'week', 'month'):
        listed = api.get('/usage', params={'agent_id': agent, 'period': period}).json()['items']
        assert [item['ts'][:19] for item in listed] == [now.isoformat()[:19]], period
    assert len(api.get('/usage', params={'agent_id': agent}).json()['items']) == 2


@pytest.mark.parametrize('params', [{'period': 'fortnight'}, {'period': 'day', 'from': '2026-01-01T00:00:00Z'}],
                         ids=str)
def test_a_bad_period_is_422(api: httpx.Client, params: dict[str, str]) -> None:
    assert_client_error(api.get('/usage', params=params), 422, mentions='period')


def test_sorted_by_cost_the_dearest_come_first_in_the_listing_and_the_export(api: httpx.Client) -> None:
    agent = uid('agent')
    costs = ['0.03', '0.50', '0.01', '0.50', '0.20']
    result = record_batch(api, [event('gpt-4o', agent_id=agent, cost_usd=cost) for cost in costs])
    ids = [r['id'] for r in result['results']]
    first = api.get('/usage', params={'agent_id': agent, 'sort': 'cost', 'limit': 3}).json()
    rest = api.get('/usage', params={'agent_id': agent, 'sort': 'cost', 'cursor': first['next_cursor']}).json()
    listed = [(item['id'], item['cost_usd']) for item in first['items'] + rest['items']]
    # dearest first, ties by id (a batch's ids need not follow its order)
    assert listed == sorted(((i, f'{Decimal(cost):.6f}') for i, cost in zip(ids, costs, strict=True)),
                            key=lambda pair: (Decimal(pair[1]), pair[0]), reverse=True)
    assert [cost for _, cost in listed] == ['0.500000', '0.500000', '0.200000', '0.030000', '0.010000']
    exported = api.get('/usage/export', params={'agent_id': agent, 'sort': 'cost', 'format': 'jsonl'})
    assert [json.loads(line)['id'] for line in exported.text.splitlines()] == [i for i, _ in listed]
    assert_client_error(api.get('/usage', params={'sort': 'price'}), 422, mentions='sort')
    assert_client_error(api.get('/usage', params={'agent_id': agent, 'cursor': first['next_cursor']}), 422,
                        mentions='sorted by cost')
