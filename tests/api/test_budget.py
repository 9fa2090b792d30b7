"""The budget endpoints against a real server: today's gauge, limits, breakdowns and the daily history."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.api import (
    assert_client_error,
    assert_money,
    at,
    check,
    event,
    own_day,
    record,
    record_batch,
    same_period,
    summary,
    uid,
)
from tests.support.servers import Server, start_server
from tests.support.wait import eventually

# --- summary ----------------------------------------------------------------------------------------------------

def test_summary_shape_without_a_limit(api: httpx.Client) -> None:
    """The shared server has no daily limit (SPENDGAUGE_DAILY_LIMIT_USD=none; the default $5 is in
    test_set_daily_limit)."""
    s = summary(api)
    now = datetime.now(UTC)
    midnight = datetime.combine(now.date(), datetime.min.time(), tzinfo=UTC)
    assert (s['period'], s['timezone']) == ('day', 'UTC')
    assert datetime.fromisoformat(s['start']) == midnight
    assert datetime.fromisoformat(s['end']) == midnight + timedelta(days=1)
    assert s['resets_at'] == s['end']
    assert abs(s['resets_in_s'] - (midnight + timedelta(days=1) - now).total_seconds()) < 10
    assert isinstance(s['resets_in'], str) and s['resets_in']
    spent = assert_money(s, 'spent')
    assert (s['limit_micros'], s['limit_usd'], s['remaining_micros'], s['remaining_usd'], s['percent']) == \
        (None, None, None, None, None)
    assert set(s['by_channel']) == {'litellm', 'direct'}
    channels = [assert_money(s['by_channel'][c], 'spent') for c in ('litellm', 'direct')]
    assert sum(channels) == spent


def test_summary_counts_new_spend_by_channel(api: httpx.Client) -> None:
    agent = uid('agent')
    before = summary(api)
    record(api, agent_id=agent, channel='litellm', cost_usd='0.3')
    record(api, agent_id=agent, channel='direct', cost_usd='0.2')
    record(api, agent_id=agent, cost_usd='0.05')  # direct is the default channel
    after = summary(api)
    same_period(before, after)
    assert after['spent_micros'] - before['spent_micros'] == 550_000
    assert after['requests'] - before['requests'] == 3
    assert after['by_channel']['litellm']['spent_micros'] - before['by_channel']['litellm']['spent_micros'] == 300_000
    assert after['by_channel']['direct']['spent_micros'] - before['by_channel']['direct']['spent_micros'] == 250_000


def test_events_on_other_days_do_not_count_today(api: httpx.Client) -> None:
    before = summary(api)
    record(api, agent_id=uid('agent'), ts=datetime.now(UTC) - timedelta(days=2), cost_usd='1')
    record(api, agent_id=uid('agent'), ts=datetime.now(UTC) + timedelta(days=2), cost_usd='1')
    after = summary(api)
    same_period(before, after)
    assert after['spent_micros'] == before['spent_micros']


@pytest.mark.parametrize('period', ['week', 'month'])
def test_week_and_month_have_no_limit_by_default(api: httpx.Client, period: str) -> None:
    s = summary(api, period)
    start = datetime.fromisoformat(s['start'])
    assert s['period'] == period
    if period == 'week':
        assert start.weekday() == 0  # weeks start on Monday
    else:
        assert start.day == 1
    assert (s['limit_micros'], s['remaining_micros'], s['percent']) == (None, None, None)
    assert s['spent_micros'] >= summary(api)['spent_micros']


def test_summary_bad_period_is_422(api: httpx.Client) -> None:
    assert_client_error(api.get('/budget/summary', params={'period': 'year'}), 422, mentions='period')


# --- limits (on a server of our own, so the shared one keeps its $5) -------------------------------------------------

def limit(micros: int, action: str = 'block', origin: str = 'limit') -> dict[str, Any]:
    """A limit as GET /budget/limits shows it (the policy id left out)."""
    return {'limit_micros': micros, 'limit_usd': f'{micros / 1e6:.6f}', 'action': action, 'soft_percent': 80,
            'critical_percent': 95, 'origin': origin}


def without_id(item: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if item is None else {k: v for k, v in item.items() if k != 'policy_id'}


def test_set_daily_limit(tmp_path: Path) -> None:
    srv = start_server(tmp_path)
    try:
        with srv.client() as api:
            limits = api.get('/budget/limits').json()
            assert {p: without_id(v) for p, v in limits.items()} == {
                'day': limit(5_000_000, origin='env'), 'week': None, 'month': None}
            response = api.put('/budget/limits/day', json={'limit_usd': '12.5'})
            assert response.status_code == 200, response.text
            assert response.json() == {'period': 'day', 'limit_micros': 12_500_000, 'limit_usd': '12.500000',
                                       'action': 'block', 'soft_percent': 80, 'critical_percent': 95,
                                       'policy_id': limits['day']['policy_id']}, 'the same policy, now set here'
            assert without_id(api.get('/budget/limits').json()['day']) == limit(12_500_000)

            record(api, cost_usd='2.5')
            s = summary(api)
            assert (s['limit_micros'], s['spent_micros'], s['remaining_micros'], s['percent']) == \
                (12_500_000, 2_500_000, 10_000_000, 20.0)
            assert api.get('/budget/history', params={'days': 3}).json()['daily_limit_micros'] == 12_500_000

            assert_client_error(api.put('/budget/limits/day', json={'limit_usd': '-1'}), 422, mentions='limit_usd')
            assert_client_error(api.put('/budget/limits/day', json={'limit_usd': 'lots'}), 422, mentions='limit_usd')
            assert_client_error(api.put('/budget/limits/day', json={}), 422, mentions='limit_usd')
            assert_client_error(api.put('/budget/limits/year', json={'limit_usd': '1'}), 422, mentions='period')
            assert_client_error(api.put('/budget/limits/day', json={'limit_usd': '1', 'action': 'ignore'}), 422,
                                mentions='action')
            assert_client_error(api.put('/budget/limits/day', json={'limit_usd': '1', 'soft_percent': 0}), 422,
                                mentions='soft_percent')
            assert_client_error(api.put('/budget/limits/day', json={'limit_usd': '1', 'soft_percent': 99}), 422,
                                mentions='soft_percent')
            assert api.get('/budget/limits').json()['day']['limit_micros'] == 12_500_000

            assert api.put('/budget/limits/week', json={'limit_usd': 50, 'action': 'warn'}).status_code == 200
            assert without_id(api.get('/budget/limits').json()['week']) == limit(50_000_000, 'warn')
            week = summary(api, 'week')
            assert (week['limit_micros'], week['remaining_micros'], week['percent']) == (50_000_000, 47_500_000, 5.0)
            removed = api.delete('/budget/limits/week')
            assert (removed.status_code, removed.json()['limit_micros']) == (200, None)
            assert api.get('/budget/limits').json()['week'] is None and summary(api, 'week')['limit_micros'] is None

            # a fresh database: 29 zero days, then today's spend
            points = api.get('/budget/history', params={'days': 30}).json()['points']
            assert [p['cost_micros'] for p in points] == [0] * 29 + [2_500_000]
            assert [p['requests'] for p in points] == [0] * 29 + [1]
    finally:
        srv.stop()


def test_the_daily_limit_is_enforced_with_no_other_policy(tmp_path: Path) -> None:
    """The issue's case: `set-limit day 1`, then $0.85 spent is a warning and $1.05 a block, with alerts, the policy
    listed, the gauge and the pipeline check on the same figure."""
    srv = start_server(tmp_path)
    try:
        with srv.client() as api:
            assert api.put('/budget/limits/day', json={'limit_usd': '1'}).status_code == 200
            listed = api.get('/policies').json()['items']
            assert [(p['name'], p['scope'], p['period'], p['limit_micros'], p['action'], p['origin'])
                    for p in listed] == [('Daily budget', 'global', 'day', 1_000_000, 'block', 'limit')]
            assert check(api)['decision'] == 'allow'
            record(api, cost_usd='0.85')
            warned = check(api)
            assert (warned['decision'], warned['allowed']) == ('warn', True), warned
            assert 'Daily budget' in warned['reasons'][0] and 'soft threshold 80%' in warned['reasons'][0]
            record(api, cost_usd='0.20')
            blocked = check(api)
            assert (blocked['decision'], blocked['allowed']) == ('block', False), blocked
            gauge = summary(api)
            assert (gauge['spent_micros'], gauge['limit_micros'], gauge['percent']) == (1_050_000, 1_000_000, 105.0)
            assert blocked['policies'][0]['spent_micros'] == gauge['spent_micros']
            assert blocked['policies'][0]['percent'] == gauge['percent']
            eventually(lambda: {'threshold_warning', 'limit_exceeded', 'policy_violation'}
                       <= {a['type'] for a in api.get('/alerts').json()['items']})
            exceeded = next(a for a in api.get('/alerts').json()['items'] if a['type'] == 'limit_exceeded')
            assert exceeded['message'] == 'Daily budget: $1.05 of $1.00 (105.0%) this day'
            forecast = api.get('/budget/forecast').json()['day']
            assert (forecast['state'], forecast['limit_micros']) == ('exceeded', 1_000_000)
    finally:
        srv.stop()


# --- breakdowns -------------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def one_day(server: Server) -> dict[str, Any]:
    """Spend on a day of its own: agent A on two OpenAI models, agent B on Anthropic, one call without an agent."""
    day, a, b = own_day(), uid('agent-a'), uid('agent-b')
    events = [
        event('gpt-4o', provider='openai', agent_id=a, ts=at(day, 0, 0), cost_usd='0.3', input_tokens=100),
        event('gpt-4o-mini', provider='openai', agent_id=a, ts=at(day, 10, 15), cost_usd='0.2', output_tokens=7),
        event('claude-3-5-sonnet', provider='anthropic', agent_id=b, ts=at(day, 10, 45), cost_usd='0.1'),
        event('claude-3-5-sonnet', provider='anthropic', ts=at(day, 23, 59, 59), cost_usd='0.05'),
    ]
    with server.client() as client:
        assert record_batch(client, events)['stored'] == 4
    return {'day': day, 'a': a, 'b': b}


def breakdown(api: httpx.Client, by: str, **params: Any) -> dict[str, Any]:
    response = api.get(f'/budget/by-{by}', params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    costs = [item['cost_micros'] for item in body['items']]
    assert costs == sorted(costs, reverse=True)
    assert_money(body, 'total', sum(costs))
    for item in body['items']:
        assert_money(item, 'cost')
        expected_share = round(100 * item['cost_micros'] / body['total_micros'], 2) if body['total_micros'] else 0
        assert item['share_percent'] == pytest.approx(expected_share)
    return body


def rows(body: dict[str, Any], key: str) -> list[tuple[Any, int, float]]:
    return [(item[key], item['cost_micros'], item['share_percent']) for item in body['items']]


def test_breakdowns_for_a_whole_day(api: httpx.Client, one_day: dict[str, Any]) -> None:
    day = str(one_day['day'])
    by_agent = breakdown(api, 'agent', **{'from': day, 'to': day})
    assert by_agent['period'] == 'custom'
    assert (by_agent['start'], by_agent['end']) == (f'{day}T00:00:00+00:00', f'{one_day["day"] + timedelta(1)}'
                                                    'T00:00:00+00:00')
    assert rows(by_agent, 'agent_id') == [(one_day['a'], 500_000, 76.92), (one_day['b'], 100_000, 15.38),
                                          (None, 50_000, 7.69)]
    assert by_agent['total_micros'] == 650_000
    a = by_agent['items'][0]
    assert (a['requests'], a['input_tokens'], a['output_tokens']) == (2, 100, 7)
    assert rows(breakdown(api, 'provider', **{'from': day, 'to': day}), 'provider') == [
        ('openai', 500_000, 76.92), ('anthropic', 150_000, 23.08)]
    assert rows(breakdown(api, 'model', **{'from': day, 'to': day}), 'model') == [
        ('gpt-4o', 300_000, 46.15), ('gpt-4o-mini', 200_000, 30.77), ('claude-3-5-sonnet', 150_000, 23.08)]
    assert rows(breakdown(api, 'channel', **{'from': day, 'to': day}), 'channel') == [('direct', 650_000, 100.0)]


def test_breakdown_with_datetimes_inside_an_hour(api: httpx.Client, one_day: dict[str, Any]) -> None:
    day = one_day['day']
    body = breakdown(api, 'agent', **{'from': f'{day}T10:30:00Z', 'to': f'{day}T11:00:00Z'})
    assert rows(body, 'agent_id') == [(one_day['b'], 100_000, 100.0)]
    body = breakdown(api, 'model', **{'from': f'{day}T10:00:00', 'to': f'{day}T10:30:00'})  # naive = server zone
    assert rows(body, 'model') == [('gpt-4o-mini', 200_000, 100.0)]
    body = breakdown(api, 'agent', **{'from': f'{day}T00:00:00.000001Z', 'to': f'{day}T10:15:00Z'})
    assert body['items'] == []  # from inclusive, to exclusive


def test_breakdown_of_an_empty_range(api: httpx.Client) -> None:
    body = breakdown(api, 'agent', **{'from': '2000-06-01', 'to': '2000-06-30'})  # before every own_day()
    assert body['items'] == [] and body['total_micros'] == 0


def test_a_range_before_2000_is_refused(api: httpx.Client) -> None:
    response = api.get('/budget/by-agent', params={'from': '1999-01-01', 'to': '1999-01-31'})
    assert response.status_code == 422 and 'from' in response.json()['detail']


@pytest.mark.parametrize('period', ['day', 'week', 'month'])
def test_breakdowns_for_the_current_period(api: httpx.Client, period: str) -> None:
    a, b, model = uid('agent-a'), uid('agent-b'), uid('model')
    record(api, model, provider='acme', agent_id=a, cost_usd='0.02')
    record(api, model, provider='acme', agent_id=a, cost_usd='0.01')
    record(api, model, provider='acme', agent_id=b, cost_usd='0.04')
    by_agent = breakdown(api, 'agent', period=period)
    assert by_agent['period'] == period
    mine = {item['agent_id']: item for item in by_agent['items'] if item['agent_id'] in (a, b)}
    assert {k: (v['cost_micros'], v['requests']) for k, v in mine.items()} == {a: (30_000, 2), b: (40_000, 1)}
    assert summary(api, period)['start'] == by_agent['start']
    models = {item['model']: item['cost_micros'] for item in breakdown(api, 'model', period=period)['items']}
    assert models[model] == 70_000
    providers = {item['provider']: item['cost_micros'] for item in breakdown(api, 'provider', period=period)['items']}
    assert providers['acme'] >= 70_000


def test_breakdown_default_period_is_today(api: httpx.Client) -> None:
    assert breakdown(api, 'agent')['start'] == summary(api)['start']


@pytest.mark.parametrize(('params', 'mentions'), [
    ({'from': 'bad', 'to': '2024-01-01'}, 'from'),
    ({'from': '2024-01-01', 'to': '2024-13-01'}, 'to'),
    ({'from': '2024-02-30', 'to': '2024-03-01'}, 'from'),
    ({'from': '2024-01-01'}, 'to'),
    ({'to': '2024-01-01'}, 'from'),
    ({'from': '2024-01-02', 'to': '2024-01-01'}, 'after'),
    ({'from': '2024-01-01T10:00:00Z', 'to': '2024-01-01T10:00:00Z'}, 'after'),
    ({'period': 'year'}, 'period'),
], ids=lambda v: str(v))
@pytest.mark.parametrize('by', ['agent', 'provider', 'model'])
def test_bad_range_is_422(api: httpx.Client, by: str, params: dict[str, str], mentions: str) -> None:
    assert_client_error(api.get(f'/budget/by-{by}', params=params), 422, mentions=mentions)


@pytest.mark.parametrize('params', [{'from': '2024-01-01', 'to': '9999-12-31'},
                                    {'from': '0001-01-01T00:00:00+05:00', 'to': '2024-01-01'}],
                         ids=['to 9999-12-31', 'from year 1 east of UTC'])
def test_extreme_range_is_not_a_500(api: httpx.Client, params: dict[str, str]) -> None:
    response = api.get('/budget/by-agent', params=params)
    assert response.status_code in (200, 422), f'{response.status_code}: {response.text}'


def test_event_in_the_last_representable_hour(api: httpx.Client) -> None:
    response = api.post('/usage', json=event(agent_id=uid('agent'), ts='9999-12-31T23:30:00Z', cost_usd='0.01'))
    if response.status_code == 422:  # refusing such a timestamp is a fix too
        return
    assert response.status_code == 201, response.text
    body = breakdown(api, 'agent', **{'from': '9999-12-31T00:00:00Z', 'to': '9999-12-31T23:59:59Z'})
    assert body['total_micros'] == 10_000


# --- history ----------------------------------------------------------------------------------------------------

def test_history_has_one_point_per_day_ending_today(api: httpx.Client) -> None:
    before = api.get('/budget/history', params={'days': 30}).json()
    stored = record(api, agent_id=uid('agent'), cost_usd='0.015', input_tokens=40, output_tokens=2)
    after = api.get('/budget/history', params={'days': 30}).json()
    today = datetime.now(UTC).date()
    if after['points'][-1]['date'] != before['points'][-1]['date']:
        pytest.skip('the day rolled over during the test')
    assert (after['days'], after['timezone']) == (30, 'UTC')
    assert (after['daily_limit_micros'], after['daily_limit_usd']) == (None, None)
    points = after['points']
    assert len(points) == 30
    assert [date.fromisoformat(p['date']) for p in points] == [today - timedelta(days=n) for n in range(29, -1, -1)]
    for point in points:
        assert_money(point, 'cost')
        assert point['requests'] >= 0
    last, was = points[-1], before['points'][-1]
    assert last['cost_micros'] - was['cost_micros'] == stored['cost_micros'] == 15_000
    assert (last['requests'] - was['requests'], last['input_tokens'] - was['input_tokens'],
            last['output_tokens'] - was['output_tokens']) == (1, 40, 2)
    assert last['cost_micros'] == summary(api)['spent_micros']
    assert points[:-1] == before['points'][:-1]


def test_history_of_one_day(api: httpx.Client) -> None:
    points = api.get('/budget/history', params={'days': 1}).json()['points']
    assert [p['date'] for p in points] == [datetime.now(UTC).date().isoformat()]


@pytest.mark.parametrize('days', [0, -1, 367, 1000, 'month'])
def test_history_bad_days_is_422(api: httpx.Client, days: Any) -> None:
    assert_client_error(api.get('/budget/history', params={'days': days}), 422, mentions='days')


def test_token_efficiency_per_agent_and_model(api: httpx.Client) -> None:
    day, agent = own_day(), uid('agent')
    record_batch(api, [event('gpt-4o', agent_id=agent, ts=at(day, 10), input_tokens=1000, output_tokens=250,
                             cache_read_tokens=500, cost_usd='0.010000'),
                       event('gpt-4o', agent_id=agent, ts=at(day, 11), input_tokens=1000, output_tokens=250,
                             cost_usd='0.010000')])
    response = api.get('/budget/efficiency', params={'from': day.isoformat(), 'to': day.isoformat()})
    assert response.status_code == 200, response.text
    [mine] = [item for item in response.json()['items'] if item['name'] == agent]
    assert (mine['requests'], mine['output_per_input'], mine['cache_read_percent']) == (2, 0.25, 25.0)
    assert mine['cost_per_1k_output_micros'] == 40_000 and [d['day'] for d in mine['trend']] == [day.isoformat()]
    by_model = api.get('/budget/efficiency', params={'by': 'model', 'from': day.isoformat(), 'to': day.isoformat()})
    assert 'gpt-4o' in {item['name'] for item in by_model.json()['items']}
    mine_by_model = api.get('/budget/efficiency', params={'by': 'model', 'agent_id': agent, 'from': day.isoformat(),
                                                          'to': day.isoformat()}).json()
    assert [(m['name'], m['requests'], m['cost_micros']) for m in mine_by_model['items']] == [('gpt-4o', 2, 20_000)]
    assert_client_error(api.get('/budget/efficiency', params={'by': 'planet'}))
    assert_client_error(api.get('/budget/efficiency', params={'agent_id': 'x' * 201}))
