"""Tasks: the service on SQLite and PostgreSQL with real ledger spend, and the REST API against real servers."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app import runtime
from app.api import install
from services.live.hub import hub
from services.live.topics import LiveEvent, TaskChanged
from services.spend import tasks
from services.usage.ledger import Ledger
from tests.support.api import assert_client_error, assert_money, record, uid
from tests.support.servers import Server, start_server

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def spend(ledger: Ledger, task_id: str, cost_usd: str, expect: str = 'stored', **fields: Any) -> None:
    status, _ = ledger.record({'model': 'gpt-4o', 'provider': 'openai', 'task_id': task_id, 'cost_usd': cost_usd,
                               'input_tokens': 100, 'output_tokens': 10, 'ts': T0, **fields})
    assert status == expect


# --- service -----------------------------------------------------------------------------------------------------

def test_actual_cost_comes_from_the_ledger(ledger: Ledger) -> None:
    with ledger.engine.begin() as conn:
        tasks.create_task(conn, 'Over', 'over', estimated_cost_micros=500_000, now=T0)
        tasks.create_task(conn, 'Exact', 'exact', estimated_cost_micros=550_000, now=T0)
        tasks.create_task(conn, 'Under', 'under', estimated_cost_micros=1_000_000, now=T0)
        tasks.create_task(conn, 'No estimate', 'unestimated', now=T0)
        tasks.create_task(conn, 'Idle', 'idle', estimated_cost_micros=0, now=T0)
    spend(ledger, 'over', '0.30')
    spend(ledger, 'over', '0.25', input_tokens=1000, output_tokens=200)
    spend(ledger, 'exact', '0.55')
    spend(ledger, 'under', '0.40')
    spend(ledger, 'unestimated', '0.000001')
    spend(ledger, 'not-registered', '9')
    spend(ledger, 'over', '0.25', event_id='dup')
    spend(ledger, 'over', '0.25', 'duplicate', event_id='dup')  # counted once
    with ledger.engine.connect() as conn:
        by_id = {t['id']: t for t in tasks.list_tasks(conn)}
    assert set(by_id) == {'over', 'exact', 'under', 'unestimated', 'idle'}
    over = by_id['over']
    assert (over['actual_cost_micros'], over['actual_cost_usd'], over['over_estimate']) == (800_000, '0.800000', True)
    assert (over['requests'], over['input_tokens'], over['output_tokens'], over['tokens']) == (3, 1200, 220, 1420)
    assert (over['estimated_cost_micros'], over['estimated_cost_usd']) == (500_000, '0.500000')
    assert (by_id['exact']['actual_cost_micros'], by_id['exact']['over_estimate']) == (550_000, False)
    assert (by_id['under']['actual_cost_micros'], by_id['under']['over_estimate']) == (400_000, False)
    unestimated = by_id['unestimated']
    assert (unestimated['actual_cost_usd'], unestimated['estimated_cost_micros'], unestimated['estimated_cost_usd'],
            unestimated['over_estimate']) == ('0.000001', None, None, None)
    idle = by_id['idle']
    assert (idle['actual_cost_micros'], idle['actual_cost_usd'], idle['requests'], idle['tokens'],
            idle['over_estimate'], idle['last_request_at']) == (0, '0.000000', 0, 0, False, None)
    assert over['last_request_at'] == T0.isoformat()


def test_spend_recorded_before_the_task_is_registered_counts(ledger: Ledger) -> None:
    spend(ledger, 'early', '0.12')
    with ledger.engine.begin() as conn:
        task = tasks.create_task(conn, 'Registered late', 'early', estimated_cost_micros=100_000)
    assert (task['actual_cost_micros'], task['over_estimate']) == (120_000, True)


def test_create_defaults_and_duplicates(engine: Engine) -> None:
    with engine.begin() as conn:
        task = tasks.create_task(conn, 'Write the report')
        assert task['id'].startswith('task-')
        assert (task['status'], task['priority'], task['agent_id'], task['estimated_cost_micros']) == \
            ('pending', 0, None, None)
        created = datetime.fromisoformat(task['created_at'])
        assert created.utcoffset() == timedelta(0)
        assert abs(created - datetime.now(UTC)) < timedelta(minutes=1)
        assert task['updated_at'] == task['created_at']
        with pytest.raises(tasks.TaskExists, match=task['id']):
            tasks.create_task(conn, 'Again', task['id'])
    with engine.connect() as conn:
        assert [t['title'] for t in tasks.list_tasks(conn)] == ['Write the report']


@pytest.mark.parametrize(('fields', 'field'), [
    ({'status': 'finished'}, 'status'),
    ({'estimated_cost_micros': -1}, 'estimated_cost'),
    ({'estimated_cost_micros': tasks.MAX_ESTIMATE_MICROS + 1}, 'estimated_cost'),
    ({'priority': tasks.MAX_PRIORITY + 1}, 'priority'),
    ({'title': '  '}, 'title'),
])
def test_create_refuses_bad_values(engine: Engine, fields: dict[str, Any], field: str) -> None:
    with engine.begin() as conn:
        with pytest.raises(ValueError, match=field):
            tasks.create_task(conn, **{'title': 'Task', **fields})
        assert tasks.list_tasks(conn) == []


def test_list_orders_by_last_update_and_filters(engine: Engine) -> None:
    with engine.begin() as conn:
        for i, (status, agent) in enumerate([('pending', 'a'), ('running', 'a'), ('pending', 'b'), ('done', None)]):
            tasks.create_task(conn, f'Task {i}', f't{i}', agent, status, now=T0 + timedelta(minutes=i))
        tasks.update_task(conn, 't0', {'priority': 5}, now=T0 + timedelta(hours=1))
    with engine.connect() as conn:
        assert [t['id'] for t in tasks.list_tasks(conn)] == ['t0', 't3', 't2', 't1']
        assert [t['id'] for t in tasks.list_tasks(conn, limit=2)] == ['t0', 't3']
        assert [t['id'] for t in tasks.list_tasks(conn, status='pending')] == ['t0', 't2']
        assert [t['id'] for t in tasks.list_tasks(conn, agent_id='a')] == ['t0', 't1']
        assert [t['id'] for t in tasks.list_tasks(conn, status='running', agent_id='b')] == []
        with pytest.raises(ValueError, match='status'):
            tasks.list_tasks(conn, status='bogus')


def test_update_changes_clears_and_only_moves_updated_at_on_a_change(engine: Engine) -> None:
    later = T0 + timedelta(minutes=5)
    with engine.begin() as conn:
        tasks.create_task(conn, 'Crawl', 'crawl', 'agent-1', priority=1, estimated_cost_micros=2_000_000, now=T0)
        task, changed = tasks.update_task(conn, 'crawl', {'title': 'Crawl', 'priority': 1}, now=later)
        assert not changed and task['updated_at'] == T0.isoformat()
        task, changed = tasks.update_task(conn, 'crawl', {'status': 'running', 'agent_id': None,
                                                          'estimated_cost_micros': None}, now=later)
        assert changed
        assert (task['status'], task['agent_id'], task['estimated_cost_micros'], task['over_estimate'],
                task['priority'], task['title']) == ('running', None, None, None, 1, 'Crawl')
        assert (task['created_at'], task['updated_at']) == (T0.isoformat(), later.isoformat())
        with pytest.raises(ValueError, match='status'):
            tasks.update_task(conn, 'crawl', {'status': 'paused'})
        with pytest.raises(ValueError, match='id'):
            tasks.update_task(conn, 'crawl', {'id': 'other'})
        with pytest.raises(tasks.TaskNotFound, match='nope'):
            tasks.update_task(conn, 'nope', {'status': 'done'})
        with pytest.raises(tasks.TaskNotFound):
            tasks.get_task(conn, 'nope')
        assert tasks.get_task(conn, 'crawl')['status'] == 'running'


# --- REST API ----------------------------------------------------------------------------------------------------

def create(api: httpx.Client, **body: Any) -> dict[str, Any]:
    response = api.post('/tasks', json={'title': 'A task', **body})
    assert response.status_code == 201, response.text
    return response.json()


def test_create_get_list_and_patch(api: httpx.Client) -> None:
    agent = uid('agent')
    task = create(api, id=uid('task'), title='Summarise the docs', agent_id=agent, status='running', priority=3,
                  estimated_cost_usd='0.25')
    assert (task['title'], task['agent_id'], task['status'], task['priority']) == \
        ('Summarise the docs', agent, 'running', 3)
    assert_money(task, 'estimated_cost', 250_000)
    assert_money(task, 'actual_cost', 0)
    assert (task['requests'], task['tokens'], task['over_estimate']) == (0, 0, False)
    assert datetime.fromisoformat(task['created_at']).utcoffset() == timedelta(0)

    generated = create(api, title='  No id  ', agent_id=agent)
    assert generated['id'] and generated['title'] == 'No id'
    assert (generated['status'], generated['priority'], generated['estimated_cost_micros'],
            generated['estimated_cost_usd'], generated['over_estimate']) == ('pending', 0, None, None, None)

    assert api.get(f'/tasks/{task["id"]}').json() == task
    listed = api.get('/tasks', params={'agent_id': agent}).json()
    assert listed['count'] == 2 and [t['id'] for t in listed['items']] == [generated['id'], task['id']]
    assert [t['id'] for t in api.get('/tasks', params={'agent_id': agent, 'status': 'running'}).json()['items']] \
        == [task['id']]
    assert [t['id'] for t in api.get('/tasks', params={'agent_id': agent, 'limit': 1}).json()['items']] \
        == [generated['id']]

    response = api.patch(f'/tasks/{task["id"]}', json={'status': 'done', 'estimated_cost_usd': 1, 'priority': 7})
    assert response.status_code == 200, response.text
    patched = response.json()
    assert (patched['status'], patched['priority'], patched['estimated_cost_usd'], patched['title']) == \
        ('done', 7, '1.000000', 'Summarise the docs')
    assert patched['created_at'] == task['created_at'] and patched['updated_at'] > task['updated_at']
    assert [t['id'] for t in api.get('/tasks', params={'agent_id': agent}).json()['items']] == \
        [task['id'], generated['id']], 'the task updated last comes first'

    cleared = api.patch(f'/tasks/{task["id"]}', json={'agent_id': None, 'estimated_cost_usd': None}).json()
    assert (cleared['agent_id'], cleared['estimated_cost_micros'], cleared['estimated_cost_usd'],
            cleared['over_estimate'], cleared['status']) == (None, None, None, None, 'done')
    assert api.patch(f'/tasks/{task["id"]}', json={}).json() == cleared
    assert api.get(f'/tasks/{task["id"]}').json() == cleared


def test_an_id_with_a_slash(api: httpx.Client) -> None:
    task_id = uid('team') + '/' + uid('task')
    create(api, id=task_id)
    assert api.get(f'/tasks/{task_id}').json()['id'] == task_id
    assert api.patch(f'/tasks/{task_id}', json={'status': 'failed'}).json()['status'] == 'failed'


def test_actual_cost_and_over_estimate_follow_usage_events(api: httpx.Client) -> None:
    task_id = uid('task')
    task = create(api, id=task_id, estimated_cost_usd='0.10')
    record(api, task_id=task_id, cost_usd='0.06', input_tokens=1000, output_tokens=100)
    record(api, task_id=uid('other-task'), cost_usd='5')
    after = api.get(f'/tasks/{task_id}').json()
    assert_money(after, 'actual_cost', 60_000)
    assert (after['requests'], after['input_tokens'], after['output_tokens'], after['over_estimate']) == \
        (1, 1000, 100, False)
    assert after['updated_at'] == task['updated_at'], 'spend is not an edit of the task'

    record(api, task_id=task_id, cost_usd='0.04', input_tokens=10)  # $0.10: at the estimate is not over it
    at_estimate = api.get(f'/tasks/{task_id}').json()
    assert (at_estimate['actual_cost_usd'], at_estimate['requests'], at_estimate['over_estimate']) == \
        ('0.100000', 2, False)

    record(api, task_id=task_id, cost_usd='0.000001')
    over = api.get(f'/tasks/{task_id}').json()
    assert (over['actual_cost_micros'], over['actual_cost_usd'], over['over_estimate']) == (100_001, '0.100001', True)
    [listed] = [t for t in api.get('/tasks', params={'limit': 1000}).json()['items'] if t['id'] == task_id]
    assert listed == over

    raised = api.patch(f'/tasks/{task_id}', json={'estimated_cost_usd': '0.100001'}).json()
    assert (raised['estimated_cost_micros'], raised['over_estimate']) == (100_001, False)


def test_a_duplicate_id_is_409(api: httpx.Client) -> None:
    task_id = uid('task')
    create(api, id=task_id, title='First')
    assert_client_error(api.post('/tasks', json={'id': task_id, 'title': 'Second'}), 409, mentions=task_id)
    assert api.get(f'/tasks/{task_id}').json()['title'] == 'First'


def test_an_unknown_task_is_404(api: httpx.Client) -> None:
    task_id = uid('missing')
    assert_client_error(api.get(f'/tasks/{task_id}'), 404, mentions=task_id)
    assert_client_error(api.patch(f'/tasks/{task_id}', json={'status': 'done'}), 404, mentions=task_id)


BAD_TASKS = {
    'bad status': ({'status': 'finished'}, 'status'),
    'negative estimate': ({'estimated_cost_usd': '-0.01'}, 'estimated_cost_usd'),
    'huge estimate': ({'estimated_cost_usd': '1000000000.01'}, 'estimated_cost_usd'),
    'estimate not a number': ({'estimated_cost_usd': 'cheap'}, 'estimated_cost_usd'),
    'estimate a list': ({'estimated_cost_usd': [1]}, 'estimated_cost_usd'),
    'infinite estimate': ({'estimated_cost_usd': 'Infinity'}, 'estimated_cost_usd'),
    'missing title': ({'title': None}, 'title'),
    'blank title': ({'title': '   '}, 'title'),
    'title a number': ({'title': 42}, 'title'),
    'priority a string': ({'priority': 'high'}, 'priority'),
    'priority a float': ({'priority': 1.5}, 'priority'),
    'priority a bool': ({'priority': True}, 'priority'),
    'priority too large': ({'priority': 10**12}, 'priority'),
    'agent_id an object': ({'agent_id': {'name': 'x'}}, 'agent_id'),
    'id blank': ({'id': ' '}, 'id'),
    'id with NUL': ({'id': 'a\x00b'}, 'id'),
    'unknown field': ({'cost': 3}, 'cost'),
}


@pytest.mark.parametrize(('change', 'field'), BAD_TASKS.values(), ids=BAD_TASKS.keys())
def test_a_bad_task_is_422(api: httpx.Client, change: dict[str, Any], field: str) -> None:
    agent = uid('agent')
    body = {k: v for k, v in {'title': 'Task', 'agent_id': agent, **change}.items() if v is not None}
    assert_client_error(api.post('/tasks', json=body), 422, mentions=field)
    if 'agent_id' in body and isinstance(body['agent_id'], str):
        assert api.get('/tasks', params={'agent_id': agent}).json()['items'] == []


BAD_PATCHES = {
    'bad status': ({'status': 'paused'}, 'status'),
    'null status': ({'status': None}, 'status'),
    'null title': ({'title': None}, 'title'),
    'null priority': ({'priority': None}, 'priority'),
    'negative estimate': ({'estimated_cost_usd': -1}, 'estimated_cost_usd'),
    'priority a string': ({'priority': '2'}, 'priority'),
    'id is not editable': ({'id': 'other'}, 'id'),
    'not an object': ([1, 2], ''),
}


@pytest.mark.parametrize(('body', 'field'), BAD_PATCHES.values(), ids=BAD_PATCHES.keys())
def test_a_bad_patch_is_422_and_changes_nothing(api: httpx.Client, body: Any, field: str) -> None:
    task = create(api, id=uid('task'), estimated_cost_usd='2')
    assert_client_error(api.patch(f'/tasks/{task["id"]}', json=body), 422, mentions=field)
    assert api.get(f'/tasks/{task["id"]}').json() == task


@pytest.mark.parametrize(('params', 'field'), [({'status': 'bogus'}, 'status'), ({'limit': 0}, 'limit'),
                                               ({'limit': 'all'}, 'limit')])
def test_bad_list_parameters_are_422(api: httpx.Client, params: dict[str, Any], field: str) -> None:
    assert_client_error(api.get('/tasks', params=params), 422, mentions=field)


def test_a_body_that_is_not_json_is_422(api: httpx.Client) -> None:
    response = api.post('/tasks', content=b'{"title": ', headers={'Content-Type': 'application/json'})
    assert_client_error(response, 422, mentions='JSON')


def test_writes_publish_a_live_event_after_the_commit() -> None:
    app = FastAPI()
    install(app)
    seen: list[tuple[str, str]] = []

    def listener(event: LiveEvent) -> None:
        if isinstance(event, TaskChanged):  # read on another connection, as a page would: it must be committed
            with runtime.current().engine.connect() as conn:
                seen.append((event.task_id, tasks.get_task(conn, event.task_id)['status']))

    unsubscribe = hub.subscribe(listener)
    try:
        with TestClient(app) as client:
            assert client.post('/api/v1/tasks', json={'id': 'live', 'title': 'Live'}).status_code == 201
            assert client.patch('/api/v1/tasks/live', json={'status': 'done'}).status_code == 200
            assert client.patch('/api/v1/tasks/live', json={'status': 'done'}).status_code == 200  # no change
            assert client.post('/api/v1/tasks', json={'id': 'live', 'title': 'Again'}).status_code == 409
    finally:
        unsubscribe()
    assert seen == [('live', 'pending'), ('live', 'done')]


# --- write tokens ------------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp('tasks-secured'), token='t')
    yield srv
    srv.stop()


def test_writes_need_the_token(secured: Server) -> None:
    with secured.client() as authorized, httpx.Client(base_url=secured.api, timeout=30) as anonymous:
        task = create(authorized, id='guarded', estimated_cost_usd='1')
        response = anonymous.post('/tasks', json={'id': 'sneaky', 'title': 'No token'})
        assert_client_error(response, 401)
        assert response.headers['www-authenticate'] == 'Bearer'
        assert_client_error(anonymous.post('/tasks', json={'title': 42}), 401)  # auth comes before validation
        assert_client_error(anonymous.patch('/tasks/guarded', json={'status': 'done'}), 401)
        assert_client_error(anonymous.patch('/tasks/guarded', json={'status': 'done'},
                                            headers={'Authorization': 'Bearer wrong'}), 401)
        assert_client_error(anonymous.get('/tasks'), 401)  # reads need a token too once tokens exist
        assert authorized.get('/tasks').json()['items'] == [task]
        assert authorized.get('/tasks/guarded').json() == task
        assert_client_error(authorized.get('/tasks/sneaky'), 404)
        patched = authorized.patch('/tasks/guarded', json={'status': 'done'})
        assert patched.status_code == 200 and patched.json()['status'] == 'done'
