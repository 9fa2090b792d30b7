"""Sessions and agents against a real server."""
from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.support.api import assert_client_error, assert_money, at, event, own_day, record_batch, uid
from tests.support.openapi import assert_documented

# --- sessions ---------------------------------------------------------------------------------------------------

@pytest.fixture
def session(api: httpx.Client) -> dict[str, Any]:
    """A session on a day of its own: agent A makes two calls, agent B one."""
    sid, a, b, day = uid('session'), uid('agent-a'), uid('agent-b'), own_day()
    events = [
        event(session_id=sid, agent_id=a, ts=at(day, 9, 0), input_tokens=100, output_tokens=10, cost_usd='0.12'),
        event(session_id=sid, agent_id=b, ts=at(day, 9, 5), input_tokens=300, output_tokens=30, cost_usd='0.5'),
        event(session_id=sid, agent_id=a, ts=at(day, 9, 30), input_tokens=200, output_tokens=20, cost_usd='0.08'),
    ]
    assert record_batch(api, events)['stored'] == 3
    return {'id': sid, 'a': a, 'b': b, 'day': day}


def find_session(api: httpx.Client, sid: str) -> dict[str, Any]:
    response = api.get('/sessions', params={'limit': 1000})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body['count'] == len(body['items'])
    found = [s for s in body['items'] if s['id'] == sid]
    assert len(found) == 1, f'{sid} listed {len(found)} times'
    return found[0]


def test_session_in_list(api: httpx.Client, session: dict[str, Any]) -> None:
    s = find_session(api, session['id'])
    day = session['day']
    assert datetime.fromisoformat(s['started_at']) == at(day, 9, 0)
    assert datetime.fromisoformat(s['last_event_at']) == at(day, 9, 30)
    assert s['ended_at'] is None and s['active'] is True
    assert (s['input_tokens'], s['output_tokens'], s['tokens'], s['requests']) == (600, 60, 660, 3)
    assert_money(s, 'cost', 700_000)
    assert s['agents'] == sorted([session['a'], session['b']])


def test_sessions_are_listed_newest_first(api: httpx.Client) -> None:
    day = own_day()
    older, newer = uid('session'), uid('session')
    record_batch(api, [event(session_id=older, ts=at(day, 1)), event(session_id=newer, ts=at(day, 2))])
    listed = [s['id'] for s in api.get('/sessions', params={'limit': 1000}).json()['items']]
    assert listed.index(newer) < listed.index(older)
    starts = [s['started_at'] for s in api.get('/sessions', params={'limit': 1000}).json()['items']]
    assert [datetime.fromisoformat(t) for t in starts] == sorted((datetime.fromisoformat(t) for t in starts),
                                                                 reverse=True)
    assert api.get('/sessions', params={'limit': 1}).json()['count'] == 1


def test_session_detail_by_agent_sums_to_the_session(api: httpx.Client, session: dict[str, Any]) -> None:
    response = api.get(f'/sessions/{session["id"]}')
    assert response.status_code == 200, response.text
    s = response.json()
    assert s['id'] == session['id']
    by_agent = s['by_agent']
    assert [(a['agent_id'], a['cost_micros'], a['requests']) for a in by_agent] == [
        (session['b'], 500_000, 1), (session['a'], 200_000, 2)]  # largest first
    assert sum(a['cost_micros'] for a in by_agent) == s['cost_micros'] == 700_000
    assert sum(a['tokens'] for a in by_agent) == s['tokens'] == 660
    a = by_agent[1]
    assert (a['input_tokens'], a['output_tokens'], a['tokens']) == (300, 30, 330)
    assert datetime.fromisoformat(a['first_request_at']) == at(session['day'], 9, 0)
    assert datetime.fromisoformat(a['last_request_at']) == at(session['day'], 9, 30)
    for agent in by_agent:
        assert_money(agent, 'cost')


def test_session_by_agent_includes_calls_without_agent(api: httpx.Client) -> None:
    sid, agent = uid('session'), uid('agent')
    record_batch(api, [event(session_id=sid, agent_id=agent, cost_usd='0.2'), event(session_id=sid, cost_usd='0.3')])
    s = api.get(f'/sessions/{sid}').json()
    assert s['cost_micros'] == 500_000
    assert sum(a['cost_micros'] for a in s['by_agent']) == s['cost_micros']


def test_end_session(api: httpx.Client, session: dict[str, Any]) -> None:
    before = datetime.now(UTC)
    response = api.post(f'/sessions/{session["id"]}/end')
    assert response.status_code == 200, response.text
    ended = response.json()
    assert ended['active'] is False
    assert before - timedelta(seconds=5) <= datetime.fromisoformat(ended['ended_at']) <= datetime.now(UTC)
    assert ended['cost_micros'] == 700_000 and len(ended['by_agent']) == 2
    assert api.get(f'/sessions/{session["id"]}').json()['ended_at'] == ended['ended_at']
    assert find_session(api, session['id'])['ended_at'] == ended['ended_at']


@pytest.mark.parametrize(('method', 'path'), [('GET', '/sessions/{}'), ('POST', '/sessions/{}/end')])
def test_unknown_session_is_404(api: httpx.Client, method: str, path: str) -> None:
    sid = uid('no-session')
    assert_client_error(api.request(method, path.format(sid)), 404, mentions=sid)


def test_sessions_csv(api: httpx.Client, session: dict[str, Any]) -> None:
    api.post(f'/sessions/{session["id"]}/end')
    response = api.get('/sessions.csv')
    assert response.status_code == 200, response.text
    assert response.headers['content-type'].startswith('text/csv')
    assert 'attachment' in response.headers['content-disposition']
    reader = csv.DictReader(io.StringIO(response.text))
    assert reader.fieldnames == ['session_id', 'start', 'end', 'last_event', 'input_tokens', 'output_tokens',
                                 'tokens', 'requests', 'cost_usd', 'agents']
    found = [r for r in reader if r['session_id'] == session['id']]
    assert len(found) == 1
    row = found[0]
    assert (row['input_tokens'], row['output_tokens'], row['tokens'], row['requests'], row['cost_usd']) == \
        ('600', '60', '660', '3', '0.700000')
    assert row['agents'].split() == sorted([session['a'], session['b']])
    assert datetime.fromisoformat(row['start']) == at(session['day'], 9, 0)
    assert row['end']


# --- agents -----------------------------------------------------------------------------------------------------

def agents_by_id(api: httpx.Client) -> dict[str, dict[str, Any]]:
    response = api.get('/agents')
    assert response.status_code == 200, response.text
    body = response.json()
    assert body['count'] == len(body['items'])
    return {a['id']: a for a in body['items']}


def record_costs(api: httpx.Client, agent: str, costs: list[str], session: str | None = None) -> list[datetime]:
    """One call per cost, a minute apart on a day of their own, oldest first."""
    start = at(own_day(), 8)
    stamps = [start + timedelta(minutes=n) for n in range(len(costs))]
    events = [event(agent_id=agent, session_id=session, ts=ts, cost_usd=cost, input_tokens=10, output_tokens=n)
              for n, (ts, cost) in enumerate(zip(stamps, costs, strict=True))]
    assert record_batch(api, events)['stored'] == len(costs)
    return stamps


@pytest.mark.parametrize(('costs', 'trend'), [
    ([f'0.0{n}' for n in range(1, 10)] + ['0.10'], 'up'),
    (['0.10'] + [f'0.0{n}' for n in range(9, 0, -1)], 'down'),
    (['0.05'] * 10, 'flat'),
], ids=['rising', 'falling', 'equal'])
def test_agent_trend_and_average_cost(api: httpx.Client, costs: list[str], trend: str) -> None:
    agent = uid('agent')
    stamps = record_costs(api, agent, costs)
    a = agents_by_id(api)[agent]
    micros = [round(float(c) * 1_000_000) for c in costs]
    assert a['trend'] == trend
    assert a['recent_requests'] == 10
    assert_money(a, 'avg_cost_per_request', sum(micros) // 10)
    assert_money(a, 'total_cost', sum(micros))
    assert a['total_requests'] == 10
    assert datetime.fromisoformat(a['last_request_at']) == stamps[-1]
    assert datetime.fromisoformat(a['first_seen_at']) == stamps[0]


def test_agent_average_covers_only_the_last_10_requests(api: httpx.Client) -> None:
    agent = uid('agent')
    record_costs(api, agent, ['3', '2'] + ['0.04'] * 10)
    a = agents_by_id(api)[agent]
    assert a['avg_cost_per_request_micros'] == 40_000
    assert a['trend'] == 'flat'
    assert (a['total_cost_micros'], a['total_requests'], a['recent_requests']) == (5_400_000, 12, 10)


def test_agent_session_tokens_and_cost(api: httpx.Client) -> None:
    agent, old, current = uid('agent'), uid('session'), uid('session')
    day = own_day()
    record_batch(api, [
        event(agent_id=agent, session_id=old, ts=at(day, 1), input_tokens=1000, output_tokens=100, cost_usd='1'),
        event(agent_id=agent, session_id=current, ts=at(day, 2), input_tokens=50, output_tokens=5, cost_usd='0.1'),
        event(agent_id=agent, session_id=current, ts=at(day, 3), input_tokens=70, output_tokens=7, cost_usd='0.2'),
    ])
    a = agents_by_id(api)[agent]
    assert a['session_id'] == current
    assert (a['session_input_tokens'], a['session_output_tokens'], a['session_tokens'], a['session_requests']) == \
        (120, 12, 132, 2)
    assert_money(a, 'session_cost', 300_000)
    assert_money(a, 'total_cost', 1_300_000)
    assert a['total_tokens'] == 1232
    assert datetime.fromisoformat(a['last_request_at']) == at(day, 3)
    assert a['paused'] is False


def test_agents_are_listed_most_recent_first(api: httpx.Client) -> None:
    earlier, later, day = uid('agent'), uid('agent'), own_day()
    record_batch(api, [event(agent_id=later, ts=at(day, 5)), event(agent_id=earlier, ts=at(day, 4))])
    items = api.get('/agents').json()['items']
    ids = [a['id'] for a in items]
    assert ids.index(later) < ids.index(earlier)
    stamps = [datetime.fromisoformat(a['last_request_at']) for a in items]
    assert stamps == sorted(stamps, reverse=True)


@pytest.mark.parametrize(('method', 'template'), [('GET', '/sessions/{session_id}'),
                                                  ('POST', '/sessions/{session_id}/end')])
def test_unknown_session_404_is_documented(api: httpx.Client, method: str, template: str) -> None:
    """Found by schemathesis: the 404 was not in /openapi.json."""
    response = api.request(method, template.format(session_id=uid('no-session')))
    assert_client_error(response, 404)
    assert_documented(api, response, method, template)
